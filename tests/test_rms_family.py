"""Adagrad, Adadelta and RMSprop beyond the parity table: eager state, schedules, sparse grads, compilation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numba import njit

import numopt
from numopt.functional import adadelta, adagrad, rmsprop
from numopt.kernels.adadelta import adadelta_step
from numopt.kernels.adagrad import adagrad_step
from numopt.kernels.rmsprop import rmsprop_step

from .compiled import signatures
from .optim_db import reference_for, reference_signature

torch.set_num_threads(1)

SHAPES = [(3, 2), (4,), ()]


def _pair(name: str, dtype=np.float32, seed: int = 0, **kwargs):
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    ours = [numopt.Parameter(a.copy()) for a in init]
    ref = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    return (
        getattr(numopt, name)([{"params": ours[:2]}, {"params": ours[2:], "lr": 0.02}], **kwargs),
        ours,
        reference_for(name)([{"params": ref[:2]}, {"params": ref[2:], "lr": 0.02}], **kwargs),
        ref,
    )


def _set_grads(rng, ours, ref, dtype=np.float32) -> None:
    for p, tp in zip(ours, ref):
        g = rng.standard_normal(p.shape).astype(dtype)
        p.grad = g.copy()
        tp.grad = torch.from_numpy(g)


def _assert_state_dicts_equal(ours: dict, ref: dict, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    assert set(ours["state"]) == set(ref["state"])
    for k, entry in ref["state"].items():
        assert set(ours["state"][k]) == set(entry), k
        for name, v in entry.items():
            tv = v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            ov = ours["state"][k][name]
            if name == "step":
                assert isinstance(ov, float) and ov == float(tv), (k, ov, tv)
            else:
                assert ov.dtype == tv.dtype and ov.shape == tv.shape
                np.testing.assert_allclose(ov, tv, rtol=rtol, atol=atol, err_msg=f"{k} {name}")


# -- Adagrad's eager state ---------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adagrad_state_exists_right_after_construction_like_torch(dtype) -> None:
    # the group's own initial_accumulator_value is ignored by torch: the constructor's value fills every 'sum'
    opt, ours, ref_opt, ref = _pair("Adagrad", dtype, initial_accumulator_value=0.25)
    opt.param_groups[1]["initial_accumulator_value"] = 3.0
    sd, ref_sd = opt.state_dict(), ref_opt.state_dict()
    _assert_state_dicts_equal(sd, ref_sd, rtol=0, atol=0)
    assert [sorted(e) for e in sd["state"].values()] == [["step", "sum"]] * len(SHAPES)
    for p in ours:
        assert opt.state[p]["step"] == 0.0
        np.testing.assert_array_equal(opt.state[p]["sum"], np.full(p.shape, 0.25, dtype))
        assert opt.state[p]["sum"].dtype == dtype


def test_adagrad_state_is_a_live_view_of_the_flat_buffer() -> None:
    opt, ours, _, _ = _pair("Adagrad", initial_accumulator_value=0.1)
    view = opt.state[ours[0]]["sum"]
    ours[0].grad = np.ones(ours[0].shape, np.float32)
    opt.step()
    assert opt.state[ours[0]]["sum"] is view
    np.testing.assert_allclose(view, 1.1, rtol=1e-6)
    assert opt.state[ours[0]]["step"] == 1.0 and opt.state[ours[1]]["step"] == 0.0


def test_adagrad_param_group_added_later_gets_state_at_its_first_step_like_torch() -> None:
    opt, ours, ref_opt, ref = _pair("Adagrad", initial_accumulator_value=0.5)
    late, tlate = numopt.Parameter(np.ones(5, np.float32)), torch.ones(5, requires_grad=True)
    opt.add_param_group({"params": [late], "initial_accumulator_value": 9.0, "lr_decay": 0.1})
    ref_opt.add_param_group({"params": [tlate], "initial_accumulator_value": 9.0, "lr_decay": 0.1})
    assert late not in opt.state and tlate not in ref_opt.state
    _assert_state_dicts_equal(opt.state_dict(), ref_opt.state_dict())
    rng = np.random.default_rng(4)
    for _ in range(5):
        _set_grads(rng, [*ours, late], [*ref, tlate])
        opt.step()
        ref_opt.step()
        _assert_state_dicts_equal(opt.state_dict(), ref_opt.state_dict())
    np.testing.assert_allclose(late.data, tlate.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_adagrad_load_of_a_partial_state_restarts_the_missing_sums_like_torch() -> None:
    opt, ours, ref_opt, ref = _pair("Adagrad", initial_accumulator_value=0.3)
    rng = np.random.default_rng(5)
    for _ in range(3):
        _set_grads(rng, ours, ref)
        opt.step()
        ref_opt.step()
    sd, ref_sd = opt.state_dict(), ref_opt.state_dict()
    del sd["state"][1], ref_sd["state"][1]
    opt.load_state_dict(sd)
    ref_opt.load_state_dict(ref_sd)
    assert ours[1] not in opt.state and ref[1] not in ref_opt.state
    for _ in range(3):
        _set_grads(rng, ours, ref)
        opt.step()
        ref_opt.step()
        _assert_state_dicts_equal(opt.state_dict(), ref_opt.state_dict())
    for p, tp in zip(ours, ref):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-5, atol=1e-6)


# -- hyperparameters changed between steps, and compilation -----------------------

SCHEDULES = [
    ("Adagrad", {"lr_decay": 0.05, "weight_decay": 0.1}, {"lr": [0.1, 0.03], "lr_decay": [0.05, 0.5]}),
    ("Adadelta", {"weight_decay": 0.1}, {"lr": [1.0, 0.3], "rho": [0.9, 0.5], "maximize": [False, True]}),
    ("RMSprop", {"momentum": 0.5, "centered": True}, {"lr": [0.01, 0.003], "alpha": [0.99, 0.3], "eps": [1e-8, 1e-3]}),
]


@pytest.mark.parametrize("name, kwargs, schedule", SCHEDULES, ids=[s[0] for s in SCHEDULES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hyperparameters_edited_between_steps_match_torch_without_recompiling(name, kwargs, schedule, dtype) -> None:
    kernel = {"Adagrad": adagrad_step, "Adadelta": adadelta_step, "RMSprop": rmsprop_step}[name]
    before = set(signatures(kernel))  # other tests may have compiled other variants already
    opt, ours, ref_opt, ref = _pair(name, dtype, **kwargs)
    rng = np.random.default_rng(6)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-14}
    compiled = None
    for t in range(12):
        if t == 1:
            compiled = set(signatures(kernel))
        for key, values in schedule.items():
            for g, tg in zip(opt.param_groups, ref_opt.param_groups):
                value = values[t % len(values)]
                g[key] = tg[key] = value * (1 + t / 10) if key == "lr" else value
        _set_grads(rng, ours, ref, dtype)
        opt.step()
        ref_opt.step()
        for p, tp in zip(ours, ref):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), **tol, err_msg=f"step {t}")
    # no new specialization after the first step, whatever the values or flags were: arrays of the
    # parameters' dtype, scalars float64 (every kernel casts them once inside) and flags bool; the optional
    # grad_scale left out (no clipping pending)
    assert set(signatures(kernel)) == compiled
    name_ = np.dtype(dtype).name
    for sig in compiled - before:  # what this test compiled (nothing, if an earlier test did it)
        arrays = [a for a in sig if hasattr(a, "dtype")]
        scalars = {str(a) for a in sig if not hasattr(a, "dtype")}
        assert {str(a.dtype) for a in arrays} == {name_} and scalars <= {
            "float64",
            "bool",
            "omitted(default=1.0)",
            "omitted(default=None)",
            "omitted(default=0.0)",
        }, sig


# -- RMSprop state keys -----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, keys",
    [
        ({}, {"step", "square_avg"}),
        ({"momentum": 0.9}, {"step", "square_avg", "momentum_buffer"}),
        ({"centered": True}, {"step", "square_avg", "grad_avg"}),
        ({"momentum": 0.1, "centered": True}, {"step", "square_avg", "momentum_buffer", "grad_avg"}),
    ],
)
def test_rmsprop_creates_the_state_torch_creates(kwargs, keys) -> None:
    opt, ours, ref_opt, ref = _pair("RMSprop", **kwargs)
    assert not opt.state and not ref_opt.state
    _set_grads(np.random.default_rng(7), ours, ref)
    opt.step()
    ref_opt.step()
    assert all(set(opt.state[p]) == keys == set(ref_opt.state[tp]) for p, tp in zip(ours, ref))


def test_adadelta_state_is_created_at_the_first_step() -> None:
    opt, ours, _, _ = _pair("Adadelta")
    assert not opt.state
    ours[0].grad = np.ones(ours[0].shape, np.float32)
    opt.step()
    assert set(opt.state) == {ours[0]} and set(opt.state[ours[0]]) == {"step", "square_avg", "acc_delta"}


# -- sparse gradients ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("Adadelta", {}, "Adadelta does not support sparse gradients"),
        ("RMSprop", {}, "RMSprop does not support sparse gradients"),
        ("Adagrad", {"weight_decay": 0.1}, "weight_decay option is not compatible with sparse gradients"),
    ],
)
def test_sparse_gradients_are_refused_where_torch_refuses_them(name, kwargs, match) -> None:
    p = numopt.Parameter(np.ones((4, 2), np.float32))
    opt = getattr(numopt, name)([p], **kwargs)
    p.grad = numopt.SparseGrad([1], np.ones((1, 2), np.float32))
    for _ in range(2):  # and again at the next step: the gradient is still sparse
        with pytest.raises(RuntimeError, match=match):
            opt.step()
    np.testing.assert_array_equal(p.data, 1.0)


@pytest.mark.filterwarnings("ignore:Sparse invariant checks are implicitly disabled")
def test_adagrad_sparse_gradient_matches_torch() -> None:
    rng = np.random.default_rng(8)
    init = rng.standard_normal((6, 3)).astype(np.float32)
    p, tp = numopt.Parameter(init.copy()), torch.tensor(init.copy(), requires_grad=True)
    opt = numopt.Adagrad([p], lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1)
    ref_opt = reference_for("Adagrad")([tp], lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1)
    for _ in range(5):
        idx = rng.integers(0, 6, size=4)  # duplicates are summed, as torch's coalesce() does
        vals = rng.standard_normal((4, 3)).astype(np.float32)
        p.grad = numopt.SparseGrad(idx, vals)
        tp.grad = torch.sparse_coo_tensor(
            torch.from_numpy(idx)[None], torch.from_numpy(vals), (6, 3), check_invariants=True
        )
        opt.step()
        ref_opt.step()
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(opt.state[p]["sum"], ref_opt.state[tp]["sum"].numpy(), rtol=1e-5, atol=1e-6)


# -- functional kernels ---------------------------------------------------------------


# parallel=True: a cached, non-parallel caller of a parallel kernel segfaults when it is loaded from
# the cache before numba has started its thread pool (numba issue 8578); a parallel caller starts it.
@njit(cache=True, parallel=True)
def _descend(x, y, z, steps):
    """Minimize sum(v ** 2) with each functional rule, from compiled code."""
    g = np.empty_like(x)
    total = np.zeros_like(x)
    sq_y, acc_y = np.zeros_like(y), np.zeros_like(y)
    sq_z, avg_z, buf_z = np.zeros_like(z), np.zeros_like(z), np.zeros_like(z)
    for _ in range(steps):
        g[:] = 2 * x
        adagrad(x, g, total, -0.1, 1e-10, 0.0, False)
        g[:] = 2 * y
        adadelta(y, g, sq_y, acc_y, 1.0, 0.9, 1e-6, 0.0, False)
        g[:] = 2 * z
        rmsprop(z, g, sq_z, avg_z, buf_z, 0.01, 0.9, 1e-8, 0.0, 0.5, True, False)


def test_functional_kernels_run_inside_user_njit_code() -> None:
    x, y, z = (np.ones(8, np.float32) for _ in range(3))
    _descend(x, y, z, 300)
    for v in (x, y, z):
        assert v.dtype == np.float32 and np.all(np.abs(v) < 0.5), v


@pytest.mark.parametrize("name", ["Adagrad", "Adadelta", "RMSprop"])
def test_constructor_signature_and_defaults_match_torch(name) -> None:
    import inspect

    ours = inspect.signature(getattr(numopt, name))
    ref = reference_signature(reference_for(name))
    own = [k for k in ("state_dtype", "min_8bit_size", "rounding", "compensation", "seed") if k in ours.parameters]
    assert list(ours.parameters)[len(ours.parameters) - len(own) :] == own
    assert [k for k in ours.parameters if k not in own] == list(ref.parameters)
    for k, param in ref.parameters.items():
        assert ours.parameters[k].kind == param.kind, k
        if param.default is not inspect.Parameter.empty:
            assert ours.parameters[k].default == param.default, k
    p, tp = numopt.Parameter((2,)), torch.zeros(2, requires_grad=True)
    assert getattr(numopt, name)([p]).defaults == reference_for(name)([tp]).defaults
