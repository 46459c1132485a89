"""Rprop, ASGD, Adafactor and SparseAdam beyond the parity table.

Adafactor and SparseAdam cannot use the common harness of ``test_parity.py``:
torch's Adafactor divides by zero on the harness's empty parameter, and
SparseAdam takes only sparse gradients. Their parity tests live here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numba import njit

import numopt
from numopt.functional import rprop
from numopt.kernels.adafactor import adafactor_step_serial
from numopt.kernels.asgd import asgd_step
from numopt.kernels.rprop import rprop_step

from .compiled import signatures
from .optim_db import reference_for, reference_name
from .reference import Pair, _check, compare
from .test_parity import MAX_REL_ERR

torch.set_num_threads(1)

F32 = {"rtol": 1e-5, "atol": 1e-6}
F64 = {"rtol": 1e-12, "atol": 1e-14}


def _tol(dtype) -> dict[str, float]:
    return F64 if np.dtype(dtype) == np.float64 else F32


def _pair(name: str, shapes, dtype, kwargs, group2=None, split=None, seed=0) -> Pair:
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    params = [numopt.Parameter(a.copy()) for a in init]
    ref_params = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    split = len(shapes) if split is None else split

    def groups(ps):
        out = [{"params": ps[:split]}]
        if split < len(ps):
            out.append({"params": ps[split:], **(group2 or {})})
        return out

    reference = reference_for(name)
    return Pair(
        getattr(numopt, name)(groups(params), **kwargs),
        params,
        reference(groups(ref_params), **kwargs),
        ref_params,
        np.dtype(dtype),
        reference_name(reference),
    )


# -- Adafactor parity --------------------------------------------------------------

#: every kind of parameter Adafactor treats differently: matrices (factored), 3-D (batched factors),
#: a column and a row matrix, vectors and a 0-d parameter (full variance)
ADA_SHAPES = [(5, 3), (7,), (2, 3, 4), (), (4, 1), (1, 6), (6,), (3, 2)]


def _ada_grad_is_none(i: int, t: int) -> bool:
    return (i == 1 and t % 5 == 3) or (i == 4 and t < 4) or i == 6


ADAFACTOR_ROWS = [
    # torch's optim_inputs_func_adafactor, then eps1, groups and float64
    ({}, "default", {}, np.float32),
    ({"weight_decay": 0.1, "lr": 0.01}, "nonzero weight_decay", {"lr": 0.1}, np.float32),
    ({"weight_decay": 0.1, "maximize": True}, "maximize", {"maximize": False}, np.float32),
    ({"beta2_decay": -1.0}, "non-default beta2_decay", {"beta2_decay": -0.5}, np.float32),
    ({"d": 1.5}, "non-default clipping threshold d", {"d": 1.0, "eps": (1e-3, 0.1)}, np.float32),
    ({"eps": (1e-4, 1e-2), "lr": 0.05}, "eps1 given", {"weight_decay": 0.3}, np.float32),
    ({"lr": np.float32(0.02), "beta2_decay": 0.0}, "numpy scalar lr, constant beta2", {}, np.float32),
    ({}, "default", {"lr": 0.05, "d": 2.0}, np.float64),
    ({"weight_decay": 0.1, "maximize": True, "eps": (1e-20, 1e-3)}, "all", {"beta2_decay": -0.6}, np.float64),
]


@pytest.mark.parametrize(
    "kwargs, desc, group2, dtype",
    ADAFACTOR_ROWS,
    ids=[f"Adafactor-{r[1]}-{np.dtype(r[3]).name}".replace(" ", "_") for r in ADAFACTOR_ROWS],
)
def test_adafactor_matches_torch_every_step(kwargs, desc, group2, dtype) -> None:
    pair = _pair("Adafactor", ADA_SHAPES, dtype, kwargs, group2, split=4)
    rng = np.random.default_rng(1)
    worst = 0.0
    for t in range(100):
        grads = [
            None if _ada_grad_is_none(i, t) else rng.standard_normal(s).astype(dtype) for i, s in enumerate(ADA_SHAPES)
        ]
        pair.set_grads(grads)
        pair.step()
        worst = max(worst, compare(pair, t, **_tol(dtype)))
    MAX_REL_ERR[f"Adafactor-{desc}-{np.dtype(dtype).name}".replace(" ", "_")] = worst


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adafactor_large_parameters_take_the_parallel_kernel_and_match_torch(dtype) -> None:
    from numopt.kernels.adafactor import adafactor_step

    shapes = [(300, 100), (20_000,), (3, 80, 70)]  # each run above CHUNK elements
    pair = _pair("Adafactor", shapes, dtype, {"weight_decay": 0.1, "d": 1.2}, {"maximize": True}, split=2)
    rng = np.random.default_rng(9)
    for t in range(8):
        pair.set_grads([rng.standard_normal(s).astype(dtype) for s in shapes])
        pair.step()
        compare(pair, t, **_tol(dtype))
    assert any(str(sig[0].dtype) == np.dtype(dtype).name for sig in adafactor_step.signatures)


def test_adafactor_state_has_torch_shapes_and_no_full_size_second_moment() -> None:
    pair = _pair("Adafactor", ADA_SHAPES, np.float32, {})
    pair.set_grads([np.ones(s, np.float32) for s in ADA_SHAPES])
    pair.step()
    for p, tp in zip(pair.params, pair.ref_params):
        ours, ref = pair.ours.state[p], pair.ref.state[tp]
        assert list(ours) == list(ref)
        assert {k: np.shape(v) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in ref.items()}
    flat = pair.params[0]._flat
    # factors take rows + cols per matrix; only vectors and scalars keep a full variance
    assert flat.state["row_var"].size == 5 + 6 + 4 + 1 + 3
    assert flat.state["col_var"].size == 3 + 8 + 1 + 6 + 2
    assert flat.state["variance"].size == 7 + 1 + 6


def test_adafactor_leaves_empty_parameters_alone() -> None:
    # torch raises ZeroDivisionError here; numopt counts the step and changes nothing
    shapes = [(0, 3), (4, 3), (0,), (5,)]
    rng = np.random.default_rng(2)
    params = [numopt.Parameter(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    ref = [torch.tensor(p.data.copy(), requires_grad=True) for p in params[1::2]]
    opt, ref_opt = numopt.Adafactor(params, weight_decay=0.1), reference_for("Adafactor")(ref, weight_decay=0.1)
    for _ in range(5):
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        for p, g in zip(params, grads):
            p.grad = g
        for tp, g in zip(ref, grads[1::2]):
            tp.grad = torch.from_numpy(g)
        opt.step()
        ref_opt.step()
    for p, tp in zip(params[1::2], ref):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), **F32)
    assert opt.state[params[0]]["step"] == 5.0 and opt.state[params[2]]["step"] == 5.0
    assert opt.state[params[0]]["row_var"].shape == (0, 1)
    np.testing.assert_array_equal(opt.state[params[0]]["col_var"], np.zeros((1, 3), np.float32))


def test_adafactor_state_dict_round_trips_through_torch() -> None:
    pair = _pair("Adafactor", ADA_SHAPES[:4], np.float32, {"weight_decay": 0.1})
    rng = np.random.default_rng(3)

    def grads():
        return [rng.standard_normal(s).astype(np.float32) for s in ADA_SHAPES[:4]]

    for _ in range(5):
        pair.set_grads(grads())
        pair.step()
    # torch's state dict, as NumPy, loads into a fresh numopt optimizer (and ours into torch)
    ref_sd = pair.ref.state_dict()
    as_numpy = {
        "state": {
            k: {n: float(v) if n == "step" else v.numpy().copy() for n, v in e.items()}
            for k, e in ref_sd["state"].items()
        },
        "param_groups": ref_sd["param_groups"],
    }
    params = [numopt.Parameter(tp.detach().numpy().copy()) for tp in pair.ref_params]
    opt = numopt.Adafactor(params)
    opt.load_state_dict(as_numpy)
    assert opt.param_groups[0]["weight_decay"] == 0.1
    resumed = Pair(opt, params, pair.ref, pair.ref_params, np.dtype(np.float32))
    for t in range(5):
        resumed.set_grads(grads())
        resumed.step()
        compare(resumed, t, **F32)


def test_adafactor_load_state_dict_checks_factor_shapes() -> None:
    params = [numopt.Parameter((4, 3)), numopt.Parameter((5,))]
    opt = numopt.Adafactor(params)
    for p in params:
        p.grad = np.ones(p.shape, np.float32)
    opt.step()
    sd = opt.state_dict()
    before = opt.state_dict()
    bad = {**sd, "state": {**sd["state"], 0: {**sd["state"][0], "row_var": np.zeros((4, 3), np.float32)}}}
    with pytest.raises(ValueError, match=r"state\[0\]\['row_var'\] has shape \(4, 3\).*expected \(4, 1\)"):
        opt.load_state_dict(bad)
    bad = {**sd, "state": {**sd["state"], 0: {**sd["state"][0], "variance": np.zeros((4, 3), np.float32)}}}
    with pytest.raises(ValueError, match="Adafactor keeps no 'variance' for a parameter of shape"):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    for k in before["state"]:
        for name in before["state"][k]:
            np.testing.assert_array_equal(after["state"][k][name], before["state"][k][name])


# -- Rprop, ASGD, Adafactor: hyperparameters edited between steps, staggered gradients ------------

SCHEDULES = [
    ("Rprop", {"etas": (0.4, 1.3)}, {"lr": [0.01, 0.2], "step_sizes": [(1e-6, 50), (1e-3, 0.1)]}, rprop_step),
    (
        "ASGD",
        {"t0": 2.0, "lambd": 0.01},
        {"lr": [0.05, 0.01], "alpha": [0.75, 0.5], "maximize": [False, True]},
        asgd_step,
    ),
    (
        "Adafactor",
        {"weight_decay": 0.1},
        {"lr": [0.01, 0.3], "d": [1.0, 1.3], "eps": [(None, 1e-3), (1e-5, 1e-2)]},
        adafactor_step_serial,  # the variant small parameters use
    ),
]


@pytest.mark.parametrize("name, kwargs, schedule, kernel", SCHEDULES, ids=[s[0] for s in SCHEDULES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_schedules_and_late_parameters_match_torch_without_recompiling(name, kwargs, schedule, kernel, dtype) -> None:
    """lr etc. change every step while parameters skip steps: initial step sizes / etas use the lr of the
    parameter's first step (as in torch), and parameters with equal step counts but different eta share a run."""
    shapes = [(3, 2), (4,), (), (2, 2, 2)]
    pair = _pair(name, shapes, dtype, kwargs)
    rng = np.random.default_rng(6)
    before = set(signatures(kernel))  # other tests may have compiled other variants already
    compiled = None
    for t in range(14):
        if t == 2:
            compiled = set(signatures(kernel))
        for key, values in schedule.items():
            for g, tg in zip(pair.ours.param_groups, pair.ref.param_groups):
                g[key] = tg[key] = values[t % len(values)] if key != "lr" else values[t % 2] * (1 + t / 10)
        skip = {0: (1, 2), 1: (0,), 2: (2, 3), 3: (3,)}.get(t, ()) if t < 4 else ((t % 3,) if t % 4 == 0 else ())
        pair.set_grads([None if i in skip else rng.standard_normal(s).astype(dtype) for i, s in enumerate(shapes)])
        pair.step()
        compare(pair, t, **_tol(dtype))
    assert set(signatures(kernel)) == compiled
    dt = np.dtype(dtype).name
    for sig in compiled - before:  # what this test compiled (nothing, if an earlier test did it)
        assert str(sig[0].dtype) == dt, sig
        floats = {str(getattr(a, "dtype", a)) for a in sig if "float" in str(getattr(a, "dtype", a))}
        assert floats <= {dt, "float64"}  # arrays of the parameters' dtype, scalars float64 (cast in the kernel)


def test_asgd_splits_a_run_whose_parameters_have_different_etas() -> None:
    # a and b reach step 2 at different times, with different lrs: same step count, different eta
    pair = _pair("ASGD", [(3,), (4,)], np.float32, {"lr": 0.1, "lambd": 0.5, "t0": 1.0})
    rng = np.random.default_rng(7)
    for t, (has_a, has_b) in enumerate([(1, 1), (1, 0), (0, 1), (1, 1), (1, 1)]):
        for g, tg in zip(pair.ours.param_groups, pair.ref.param_groups):
            g["lr"] = tg["lr"] = 0.1 * (t + 1)
        grads = [rng.standard_normal(3).astype(np.float32), rng.standard_normal(4).astype(np.float32)]
        pair.set_grads([grads[0] if has_a else None, grads[1] if has_b else None])
        pair.step()
        compare(pair, t, **F32)
        a, b = (pair.ours.state[p] for p in pair.params)
        if t == 2:
            assert a["step"] == b["step"] and a["eta"] != b["eta"]
    assert a["step"] == b["step"] == 4.0


def test_asgd_eta_and_mu_are_numbers_in_the_state_dict() -> None:
    p = numopt.Parameter(np.ones(3))
    opt = numopt.ASGD([p], lr=0.1, t0=0.0)
    p.grad = np.ones(3)
    opt.step()
    entry = opt.state_dict()["state"][0]
    assert sorted(entry) == ["ax", "eta", "mu", "step"]
    assert all(isinstance(entry[k], float) for k in ("eta", "mu", "step"))
    assert entry["eta"] == float(np.float32(0.1 / (1 + 1e-4 * 0.1) ** 0.75))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rprop_nan_and_inf_gradients_behave_like_torch(dtype) -> None:
    # torch's sign(NaN) is 0: a NaN gradient moves nothing, keeps the step size, and lands in 'prev'
    nan, inf = np.nan, np.inf
    pair = _pair("Rprop", [(4,)], dtype, {"lr": 0.1})
    for t, g in enumerate([[1, 1, 1, 1], [nan, inf, -inf, 1], [1, 1, 1, nan], [1, -1, 1, 1], [-1, 1, -1, 1]]):
        pair.set_grads([np.array(g, dtype)])
        pair.step()
        with np.errstate(invalid="ignore"):
            compare(pair, t, **_tol(dtype))
    assert np.isfinite(pair.params[0].data).all()


def test_rprop_functional_runs_inside_njit() -> None:
    @njit
    def descend(x, steps):
        prev = np.zeros_like(x)
        size = np.zeros_like(x)
        g = np.empty_like(x)
        for k in range(steps):
            g[:] = 2 * x
            rprop(x, g, prev, size, 0.1, 0.5, 1.2, 1e-6, 50.0, False, k == 0)
        return x

    x = descend(np.linspace(-1, 1, 9).astype(np.float32), 200)
    assert np.abs(x).max() < 1e-3


# -- SparseAdam ------------------------------------------------------------------------


def _sparse_pair(shapes, dtype, kwargs, group2=None, seed=0):
    return _pair("SparseAdam", shapes, dtype, kwargs, group2, split=1, seed=seed)


def _touch(rng, n_rows: int, k: int) -> np.ndarray:
    """k row indices, the last quarter repeating earlier ones (duplicates, in random order)."""
    fresh = rng.integers(0, n_rows, k - k // 4)
    idx = np.concatenate([fresh, rng.choice(fresh, k // 4)])
    return rng.permutation(idx)


def _set_sparse_grads(pair: Pair, grads) -> None:
    for p, tp, g in zip(pair.params, pair.ref_params, grads):
        if g is None:
            p.grad = tp.grad = None
            continue
        idx, vals = g
        p.grad = numopt.SparseGrad(idx.copy(), vals.copy())
        tp.grad = torch.sparse_coo_tensor(
            torch.from_numpy(idx[None].copy()), torch.from_numpy(vals.copy()), tuple(p.shape), check_invariants=True
        )


SPARSE_ROWS = [
    ({}, "default", {}, np.float32),
    ({"lr": 0.01, "maximize": True}, "maximize", {"betas": (0.5, 0.9)}, np.float64),
]


@pytest.mark.parametrize(
    "kwargs, desc, group2, dtype",
    SPARSE_ROWS,
    ids=[f"SparseAdam-{r[1]}-{np.dtype(r[3]).name}" for r in SPARSE_ROWS],
)
def test_sparse_adam_embedding_table_matches_torch(kwargs, desc, group2, dtype) -> None:
    """A 10_000 x 64 table, 32 rows per step (with duplicates), 100 steps; rows not touched stay bit-identical.

    Every step compares the touched rows of the table (values and moments) and the small parameters
    in full, and checks that no other row of ours changed at all (torch's sparse update changes none
    either); the whole table is compared against torch every 20 steps.
    """
    n_rows, width = 10_000, 64
    shapes = [(n_rows, width), (50,), (20, 2, 3)]
    pair = _sparse_pair(shapes, dtype, kwargs, group2)
    table, ref_table = pair.params[0], pair.ref_params[0]
    init = table.data.copy()
    rng = np.random.default_rng(1)
    ever = np.zeros(n_rows, bool)
    worst = 0.0
    for t in range(100):
        grads = []
        for i, s in enumerate(shapes):
            k = 32 if i == 0 else 6
            idx = _touch(rng, s[0], k)
            grads.append(None if (i == 2 and t % 4 == 1) else (idx, rng.standard_normal((k, *s[1:])).astype(dtype)))
        _set_sparse_grads(pair, grads)
        before = {"data": table.data.copy()}
        if t:
            before.update({k: pair.ours.state[table][k].copy() for k in ("exp_avg", "exp_avg_sq")})
        small_before = [p.data.copy() for p in pair.params[1:]]
        pair.step()
        touched = np.unique(grads[0][0])
        if t % 20 == 0 or t == 99:
            worst = max(worst, compare(pair, t, **_tol(dtype)))
        else:
            ours_state, ref_state = pair.ours.state[table], pair.ref.state[ref_table]
            for what, ours, ref in [
                ("table", table.data, ref_table.detach().numpy()),
                ("exp_avg", ours_state["exp_avg"], ref_state["exp_avg"].numpy()),
                ("exp_avg_sq", ours_state["exp_avg_sq"], ref_state["exp_avg_sq"].numpy()),
            ]:
                worst = max(worst, _check(f"step {t}: {what}", ours[touched], ref[touched], **_tol(dtype)))
            for i, (p, tp) in enumerate(zip(pair.params[1:], pair.ref_params[1:]), 1):
                worst = max(worst, _check(f"step {t}: param {i}", p.data, tp.detach().numpy(), **_tol(dtype)))
        for key, old in before.items():
            new = table.data if key == "data" else pair.ours.state[table][key]
            changed = np.flatnonzero((new != old).any(axis=1))
            assert np.isin(changed, touched).all(), f"step {t}: untouched rows of {key} changed"
        for p, old, g in zip(pair.params[1:], small_before, grads[1:]):
            untouched = np.ones(p.shape[0], bool)
            if g is not None:
                untouched[g[0]] = False
            np.testing.assert_array_equal(p.data[untouched], old[untouched])
        ever[touched] = True
    assert 2000 < (~ever).sum() < 9000
    np.testing.assert_array_equal(table.data[~ever], init[~ever])
    assert not pair.ours.state[table]["exp_avg"][~ever].any()
    MAX_REL_ERR[f"SparseAdam-{desc}-{np.dtype(dtype).name}"] = worst


@pytest.mark.parametrize(
    "kwargs, group2",
    [
        ({"lr": 0.01}, {}),
        ({"lr": np.float32(0.001), "betas": (0.0, 0.5)}, {"maximize": True}),
        ({"eps": 1e-3}, {"lr": 0.1}),
    ],
)
def test_sparse_adam_options_match_torch(kwargs, group2) -> None:
    shapes = [(30, 4), (40,), (8, 3)]
    pair = _sparse_pair(shapes, np.float32, kwargs, group2, seed=3)
    rng = np.random.default_rng(4)
    for t in range(30):
        grads = [(_touch(rng, s[0], 8), rng.standard_normal((8, *s[1:])).astype(np.float32)) for s in shapes]
        if t % 7 == 2:
            grads[1] = None
        _set_sparse_grads(pair, grads)
        pair.step()
        compare(pair, t, **F32)


def test_sparse_adam_many_rows_take_the_parallel_kernel_and_match_torch() -> None:
    from numopt.kernels.sparse_adam import sparse_adam_step

    pair = _sparse_pair([(5_000, 64)], np.float32, {"lr": 0.01})
    rng = np.random.default_rng(10)
    for t in range(6):
        idx = _touch(rng, 5_000, 400)  # 400 x 64 values: above CHUNK
        _set_sparse_grads(pair, [(idx, rng.standard_normal((400, 64)).astype(np.float32))])
        pair.step()
        compare(pair, t, **F32)
    assert any(str(sig[0].dtype) == "float32" for sig in sparse_adam_step.signatures)


def test_sparse_adam_empty_and_zeroed_gradients_count_the_step_like_torch() -> None:
    pair = _sparse_pair([(6, 2)], np.float32, {"lr": 0.1})
    rng = np.random.default_rng(5)
    _set_sparse_grads(pair, [(np.array([1, 4, 1]), rng.standard_normal((3, 2)).astype(np.float32))])
    pair.step()
    _set_sparse_grads(pair, [(np.zeros(0, np.int64), np.zeros((0, 2), np.float32))])
    data = pair.params[0].data.copy()
    pair.step()
    np.testing.assert_array_equal(pair.params[0].data, data)
    compare(pair, 1, **F32)
    # zero_grad(set_to_none=False) keeps a sparse gradient with no rows, in both libraries
    pair.ours.zero_grad(set_to_none=False)
    pair.ref.zero_grad(set_to_none=False)
    assert isinstance(pair.params[0].grad, numopt.SparseGrad) and pair.params[0].grad.indices.size == 0
    pair.step()
    np.testing.assert_array_equal(pair.params[0].data, data)
    compare(pair, 2, **F32)
    assert pair.ours.state[pair.params[0]]["step"] == 3.0
    _set_sparse_grads(pair, [(np.array([5]), np.ones((1, 2), np.float32))])
    pair.step()
    compare(pair, 3, **F32)


def test_sparse_adam_refuses_dense_gradients_before_changing_anything() -> None:
    a, b = numopt.Parameter(np.ones((4, 2), np.float32)), numopt.Parameter(np.ones((3, 2), np.float32))
    opt = numopt.SparseAdam([a, b])
    a.grad = numopt.SparseGrad([0], np.ones((1, 2), np.float32))
    b.grad = np.ones((3, 2), np.float32)
    with pytest.raises(RuntimeError, match="SparseAdam does not support dense gradients, please consider Adam"):
        opt.step()
    np.testing.assert_array_equal(a.data, 1.0)
    assert not opt.state
    b.grad = None
    opt.step()
    assert opt.state[a]["step"] == 1.0 and b not in opt.state


def test_sparse_adam_gradient_is_read_without_densifying() -> None:
    p = numopt.Parameter(np.zeros((100, 3), np.float32))
    opt = numopt.SparseAdam([p], lr=0.5)
    g = numopt.SparseGrad([7, 7], np.ones((2, 3), np.float32))
    p.grad = g
    opt.step()
    assert p.grad is g  # kept as given, as torch keeps the sparse tensor
    assert not p._flat.grad.any()  # the dense gradient buffer was never written
    np.testing.assert_allclose(p.data[7], -0.5, rtol=1e-6)
    assert not np.delete(p.data, 7, axis=0).any()


def test_sparse_adam_state_dict_resume_is_exact() -> None:
    rng = np.random.default_rng(8)
    shapes = [(20, 3), (9,)]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [
        [(_touch(rng, s[0], 4), rng.standard_normal((4, *s[1:])).astype(np.float32)) for s in shapes] for _ in range(10)
    ]

    def run(split):
        params = [numopt.Parameter(a.copy()) for a in init]
        opt = numopt.SparseAdam(params, lr=0.05)
        for t in range(10):
            if t == split:
                sd = opt.state_dict()
                params = [numopt.Parameter(p.data.copy()) for p in params]
                opt = numopt.SparseAdam(params, lr=0.05)
                opt.load_state_dict(sd)
            for p, (idx, vals) in zip(params, grads[t]):
                p.grad = numopt.SparseGrad(idx, vals)
            opt.step()
        return [p.data.copy() for p in params]

    for x, y in zip(run(None), run(5)):
        np.testing.assert_array_equal(x, y)


def test_scalar_state_bookkeeping_rounds_like_torch_and_reports_uniformity() -> None:
    from numopt._scalar_state import all_equal, scale_as_float32

    values = np.array([1.0, 1.0, 0.9], np.float64)
    mu = 0.8999999761581421 * (1 - 0.5 * 0.96**0.004)
    assert not scale_as_float32(values, mu)
    expected = np.array([1.0, 1.0, 0.9]).astype(np.float32) * np.float32(mu)
    np.testing.assert_array_equal(values, expected.astype(np.float64))
    same = np.full(4, 0.5)
    assert scale_as_float32(same, mu) and (same == same[0]).all()
    assert not scale_as_float32(np.array([np.nan, np.nan]), 0.5)  # NaN != NaN: split, as before
    assert all_equal(np.ones(3), np.zeros(3))
    assert not all_equal(np.ones(3), np.array([0.0, 0.0, 1.0]))
    assert not all_equal(np.array([1.0, 2.0]), np.zeros(2))
    assert all_equal(np.ones(1), np.zeros(1))
