"""numopt.interop.torch: optimizer state moves between torch.optim and numopt and the run goes on.

These tests are about torch itself: they run on the rows whose reference is ``torch.optim``'s
class of the same name (``torch_rows()``); an optimizer torch lacks has no torch state to convert.
"""

from __future__ import annotations

import copy
import inspect
import subprocess
import sys

import numpy as np
import pytest
import torch

import numopt
from numopt.interop.torch import from_torch_state_dict, to_torch_state_dict

from .optim_db import OPTIM_DB, OptimCase, torch_rows
from .reference import SPLIT, Pair, make_pair, random_grads
from .test_bad_input import MATRIX_ONLY, ROWS, _grad, _torch_grad

WARMUP, CONTINUE = 6, 6


def _ours(case: OptimCase, values: list[np.ndarray]) -> tuple[numopt.Optimizer, list[numopt.Parameter]]:
    params = [numopt.Parameter(v.copy()) for v in values]
    opt = getattr(numopt, case.name)(
        [{"params": params[:SPLIT]}, {"params": params[SPLIT:], **case.group2}], **case.kwargs
    )
    return opt, params


def _ref(case: OptimCase, values: list[np.ndarray]) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
    params = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    opt = case.reference([{"params": params[:SPLIT]}, {"params": params[SPLIT:], **case.group2}], **case.kwargs)
    return opt, params


def _drive(pair: Pair, rng_seed: int, steps: range) -> None:
    rng = np.random.default_rng(rng_seed)
    all_grads = [random_grads(rng, t, pair.dtype, pair.shapes) for t in range(steps.stop)]
    for t in steps:
        pair.set_grads(all_grads[t])
        pair.step()


def _same_value(v, w, where) -> None:
    if (
        isinstance(v, (int, float, torch.Tensor))
        and isinstance(w, (int, float, torch.Tensor))
        and not (isinstance(v, torch.Tensor) and isinstance(w, torch.Tensor))
    ):  # a number on one side (LBFGS's t: 1 or 1.0; its scratch 'al': 0-d tensors or floats)
        assert np.ndim(v) == np.ndim(w) == 0 and float(v) == float(w), where
    elif isinstance(v, (list, tuple)):
        assert type(v) is type(w) and len(v) == len(w), where
        for i, (x, y) in enumerate(zip(v, w)):
            _same_value(x, y, (*where, i))
    elif isinstance(v, torch.Tensor):
        assert isinstance(w, torch.Tensor), where
        assert v.dtype == w.dtype and v.shape == w.shape, (where, v.dtype, w.dtype)
        torch.testing.assert_close(v, w, rtol=0, atol=0, equal_nan=True)
    else:
        assert type(v) is type(w) and v == w, where


def _assert_torch_states_equal(a: torch.optim.Optimizer, b: torch.optim.Optimizer) -> None:
    """``b`` holds exactly ``a``'s state (its groups may carry numopt-only hyperparameters too)."""
    sa, sb = a.state_dict(), b.state_dict()
    assert len(sa["param_groups"]) == len(sb["param_groups"])
    numopt_args = inspect.signature(getattr(numopt, type(a).__name__)).parameters
    for ga, gb in zip(sa["param_groups"], sb["param_groups"]):
        assert ga == {k: v for k, v in gb.items() if k in ga}
        assert set(gb) - set(ga) <= set(numopt_args)
    assert sa["state"].keys() == sb["state"].keys()
    for k, entry in sa["state"].items():
        assert entry.keys() == sb["state"][k].keys(), k
        for name, v in entry.items():
            _same_value(v, sb["state"][k][name], (k, name))


@pytest.mark.parametrize("case", torch_rows(), ids=lambda c: c.id)
def test_torch_to_numopt_to_torch_continues_the_trajectory(case: OptimCase) -> None:
    """torch runs, hands its state to numopt, numopt hands it back untouched, torch goes on exactly."""
    pair = make_pair(case)
    _drive(pair, 0, range(WARMUP))
    values = [tp.detach().numpy().copy() for tp in pair.ref_params]

    ours, params = _ours(case, values)
    ours.load_state_dict(from_torch_state_dict(pair.ref.state_dict()))
    back = to_torch_state_dict(ours.state_dict())
    ref2, ref2_params = _ref(case, values)
    ref2.load_state_dict(back)
    # Through numopt and back equals torch's own save and load: keys, dtypes and values. (torch's
    # load_state_dict casts state tensors other than 'step' to the parameter's dtype, e.g. NAdam's
    # float32 'mu_product' to float64 for a float64 parameter, in both cases.)
    own, own_params = _ref(case, values)
    own.load_state_dict(copy.deepcopy(pair.ref.state_dict()))  # (torch's state_dict shares live tensors)
    _assert_torch_states_equal(own, ref2)

    # Go on: torch uninterrupted, torch after its own save/load, torch after the trip through
    # numopt, and numopt from torch's state.
    resumed = Pair(ours, params, ref2, ref2_params, pair.dtype)
    rng = np.random.default_rng(1)
    for t in range(WARMUP, WARMUP + CONTINUE):
        grads = random_grads(rng, t, pair.dtype, pair.shapes)
        pair.set_grads(grads)
        resumed.set_grads(grads)
        Pair(ours, params, own, own_params, pair.dtype).set_grads(grads)
        pair.ref.step()
        resumed.step()
        own.step()
    for i, (tp, tq, to, q) in enumerate(zip(pair.ref_params, ref2_params, own_params, params)):
        expected = tp.detach().numpy()
        np.testing.assert_array_equal(tq.detach().numpy(), to.detach().numpy(), err_msg=f"torch param {i}")
        np.testing.assert_allclose(tq.detach().numpy(), expected, rtol=1e-6, atol=0, err_msg=f"torch param {i}")
        np.testing.assert_allclose(q.data, expected, **case.tolerances, err_msg=f"numopt param {i}")


@pytest.mark.parametrize("case", torch_rows(), ids=lambda c: c.id)
def test_numopt_to_torch_continues_the_trajectory(case: OptimCase) -> None:
    """numopt runs, torch takes over from its state, and follows numopt's own continuation."""
    pair = make_pair(case)
    _drive(pair, 0, range(WARMUP))
    values = [p.data.copy() for p in pair.params]
    ref2, ref2_params = _ref(case, values)
    ref2.load_state_dict(to_torch_state_dict(pair.ours.state_dict()))
    sd = ref2.state_dict()
    for k, entry in sd["state"].items():
        if "step" in entry:
            assert entry["step"].dtype == torch.float32 and entry["step"].ndim == 0, k
    ours2, params2 = _ours(case, values)
    ours2.load_state_dict(from_torch_state_dict(sd))  # and straight back: numopt goes on exactly
    resumed = Pair(ours2, params2, ref2, ref2_params, pair.dtype)
    rng = np.random.default_rng(1)
    for t in range(WARMUP, WARMUP + CONTINUE):
        grads = random_grads(rng, t, pair.dtype, pair.shapes)
        pair.set_grads(grads)
        resumed.set_grads(grads)
        pair.ours.step()
        resumed.step()
    tol = case.tolerances
    if pair.dtype == np.float64 and any("mu_product" in e for e in sd["state"].values()):
        # torch keeps NAdam's mu_product in float32 until a load_state_dict casts it to the parameter's
        # float64 (its own save/load does the same): from then on torch's product is more precise than
        # the float32 one numopt reproduces, by ~1e-10 relative.
        tol = {"rtol": 1e-9, "atol": 1e-12}
    for i, (p, p2, tq) in enumerate(zip(pair.params, params2, ref2_params)):
        np.testing.assert_array_equal(p2.data, p.data, err_msg=f"numopt param {i}")
        np.testing.assert_allclose(tq.detach().numpy(), p.data, **tol, err_msg=f"torch param {i}")


def test_sgd_momentum_by_hand() -> None:
    """The SGD momentum case, spelled out: a run switches library twice and matches a torch-only run."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((4, 3)).astype(np.float32)
    grads = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(9)]

    tw = torch.tensor(w0.copy(), requires_grad=True)
    topt = torch.optim.SGD([tw], lr=0.05, momentum=0.9, nesterov=True)
    for g in grads:
        tw.grad = torch.from_numpy(g.copy())
        topt.step()

    t1 = torch.tensor(w0.copy(), requires_grad=True)
    o1 = torch.optim.SGD([t1], lr=0.05, momentum=0.9, nesterov=True)
    for g in grads[:3]:
        t1.grad = torch.from_numpy(g.copy())
        o1.step()
    w = numopt.Parameter(t1.detach().numpy().copy())
    opt = numopt.SGD([w], lr=0.05, momentum=0.9, nesterov=True)
    opt.load_state_dict(from_torch_state_dict(o1.state_dict()))
    assert isinstance(opt.state_dict()["state"][0]["momentum_buffer"], np.ndarray)
    for g in grads[3:6]:
        w.grad = g.copy()
        opt.step()
    t2 = torch.tensor(w.data.copy(), requires_grad=True)
    o2 = torch.optim.SGD([t2], lr=0.05, momentum=0.9, nesterov=True)
    o2.load_state_dict(to_torch_state_dict(opt.state_dict()))
    for g in grads[6:]:
        t2.grad = torch.from_numpy(g.copy())
        o2.step()
    np.testing.assert_allclose(t2.detach().numpy(), tw.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_conversion_details() -> None:
    sd = {
        "state": {
            0: {
                "step": torch.tensor(3.0),
                "exp_avg": torch.ones(2, dtype=torch.float64),
                "mu_product": torch.tensor(0.5),
            },
            1: {"momentum_buffer": None},
            2: {"exp_avg": torch.ones((), dtype=torch.bfloat16)},
        },
        "param_groups": [{"lr": torch.tensor(0.01), "betas": (torch.tensor(0.9), 0.999), "params": [0, 1, 2]}],
    }
    out = from_torch_state_dict(sd)
    assert out["state"][0]["step"] == 3.0 and type(out["state"][0]["step"]) is float
    assert type(out["state"][0]["mu_product"]) is float
    assert out["state"][0]["exp_avg"].dtype == np.float64
    assert out["state"][1] == {}
    assert out["state"][2]["exp_avg"].shape == () and out["state"][2]["exp_avg"].dtype == np.float32
    assert out["param_groups"][0]["lr"] == pytest.approx(0.01) and out["param_groups"][0]["betas"][1] == 0.999
    out["state"][0]["exp_avg"][0] = 7  # a copy, not a view of torch's memory
    assert sd["state"][0]["exp_avg"][0] == 1

    back = to_torch_state_dict(
        {
            "state": {0: {"step": 4.0, "eta": 0.1, "mu": 1.0, "ax": np.zeros(2, np.float32)}},
            "param_groups": [{"lr": np.float32(0.5), "params": [0], "param_names": ["w"]}],
        }
    )
    for key, dtype in (("step", torch.float32), ("eta", torch.float64), ("mu", torch.float64)):
        v = back["state"][0][key]
        assert isinstance(v, torch.Tensor) and v.dtype == dtype and v.ndim == 0, key
    assert back["state"][0]["ax"].dtype == torch.float32
    assert type(back["param_groups"][0]["lr"]) is float and back["param_groups"][0]["param_names"] == ["w"]
    with pytest.raises(ValueError, match="optimizer state dict"):
        from_torch_state_dict({"state": []})
    with pytest.raises(ValueError, match="optimizer state dict"):
        to_torch_state_dict([])


def test_import_numopt_never_imports_torch() -> None:
    code = "import sys, numopt, numopt.interop.torch; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- optimizers with dedicated parity tests (not in OPTIM_DB): the same round trip ------------------

EXTRA = sorted(n for n in ROWS if n not in {c.name for c in OPTIM_DB} and ROWS[n].reference_is_torch)
F32_TOL = {"rtol": 1e-5, "atol": 1e-6}


def _extra_run(name: str, opt, params, values_of, set_grad, grads_per_step) -> None:
    """Steps with the loss 0.5*|x|^2 + g.x through a closure (LBFGS needs one; the others accept it)."""
    for grads in grads_per_step:

        def closure(grads=grads):
            loss = 0.0
            for p, g in zip(params, grads):
                x = values_of(p)
                set_grad(p, x + g)
                loss += float(np.sum(0.5 * x.astype(np.float64) ** 2 + x * g.astype(np.float64)))
            return loss

        opt.step(closure)


@pytest.mark.parametrize("name", EXTRA)
def test_round_trip_for_optimizers_outside_the_table(name: str) -> None:
    shapes = [(5, 3), (4, 6)] if name in MATRIX_ONLY else [(5, 3), (7,), (2, 3, 4)]
    # LBFGS's stopping tests (tolerance_change) flip on float32 rounding after a few steps, in numopt
    # as in torch with another summation order: compare its trajectories in float64
    dtype, tol = (np.float64, {"rtol": 1e-10, "atol": 1e-12}) if name == "LBFGS" else (np.float32, F32_TOL)
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(8)]

    def torch_opt(values):
        ps = [torch.tensor(v.copy(), requires_grad=True) for v in values]
        return ROWS[name].reference(ps), ps

    def torch_steps(opt, ps, gs):
        _extra_run(
            name,
            opt,
            ps,
            lambda p: p.detach().numpy().copy(),
            lambda p, g: setattr(p, "grad", _torch_grad(name, g)),
            gs,
        )

    ref, ref_params = torch_opt(init)
    torch_steps(ref, ref_params, grads[:4])
    values = [p.detach().numpy().copy() for p in ref_params]

    params = [numopt.Parameter(v.copy()) for v in values]
    ours = getattr(numopt, name)(params)
    ours.load_state_dict(from_torch_state_dict(ref.state_dict()))
    ref2, ref2_params = torch_opt(values)
    ref2.load_state_dict(to_torch_state_dict(ours.state_dict(), optimizer=ref2))
    own, own_params = torch_opt(values)
    own.load_state_dict(copy.deepcopy(ref.state_dict()))
    _assert_torch_states_equal(own, ref2)

    torch_steps(ref, ref_params, grads[4:])
    torch_steps(ref2, ref2_params, grads[4:])
    torch_steps(own, own_params, grads[4:])
    _extra_run(
        name, ours, params, lambda p: p.data.copy(), lambda p, g: setattr(p, "grad", _grad(name, p, g)), grads[4:]
    )
    for i, (tp, tq, to, q) in enumerate(zip(ref_params, ref2_params, own_params, params)):
        expected = tp.detach().numpy()
        np.testing.assert_array_equal(tq.detach().numpy(), to.detach().numpy(), err_msg=f"torch param {i}")
        np.testing.assert_allclose(tq.detach().numpy(), expected, rtol=1e-6, atol=0, err_msg=f"torch param {i}")
        np.testing.assert_allclose(q.data, expected, **tol, err_msg=f"numopt param {i}")
