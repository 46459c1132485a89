"""Adam, AdamW, Adamax, NAdam and RAdam beyond the parity table: compilation, functional use, edge cases."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from numba import njit, types

import numopt
from numopt.functional import adam, adamax, nadam, radam
from numopt.kernels.adam import adam_step
from numopt.kernels.adamax import adamax_step
from numopt.kernels.nadam import nadam_step
from numopt.kernels.radam import radam_step

from .compiled import signatures
from .optim_db import reference_for

torch.set_num_threads(1)

FAMILY = ["Adam", "AdamW", "Adamax", "NAdam", "RAdam"]
SHAPES = [(3, 2), (4,), ()]


def _pair(name: str, dtype=np.float32, seed: int = 0, **kwargs):
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    ours = [numopt.Parameter(a.copy()) for a in init]
    ref = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    return getattr(numopt, name)(ours, **kwargs), ours, reference_for(name)(ref, **kwargs), ref


def _set_grads(rng, ours, ref, skip=()) -> None:
    for i, (p, tp) in enumerate(zip(ours, ref)):
        if i in skip:
            p.grad, tp.grad = None, None
            continue
        g = rng.standard_normal(p.shape).astype(p.dtype)
        p.grad = g.copy()
        tp.grad = torch.from_numpy(g)


def _assert_close(ours, ref, dtype, opt=None, ref_opt=None) -> None:
    tol = {"rtol": 1e-12, "atol": 1e-14} if np.dtype(dtype) == np.float64 else {"rtol": 1e-5, "atol": 1e-6}
    for p, tp in zip(ours, ref):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), **tol)
        if opt is not None:
            for key, tv in ref_opt.state[tp].items():
                tv = tv.numpy()
                ov = np.asarray(opt.state[p][key], dtype=tv.dtype)  # torch's scalar state is float32
                np.testing.assert_allclose(ov, tv, **tol, err_msg=key)


# -- compilation ---------------------------------------------------------------------

_ARR = {np.float32: types.Array(types.float32, 1, "C"), np.float64: types.Array(types.float64, 1, "C")}

#: kernel, number of array arguments, float scalars and flags of the call the class makes
_KERNELS = {
    "Adam": (adam_step, 5, 7, 3),
    "Adamax": (adamax_step, 4, 6, 1),
    "NAdam": (nadam_step, 4, 8, 2),
    "RAdam": (radam_step, 4, 8, 2),
}

#: hyperparameter edits between steps: values and flags change, types must not
_VARIANTS = {
    "Adam": [
        {"lr": 0.01},
        {"lr": 1},
        {"lr": np.float32(0.003), "amsgrad": True},
        {"maximize": True, "weight_decay": 0.1},
        {"decoupled_weight_decay": True, "betas": (0.2, 0.5)},
        {"eps": 0, "weight_decay": 0},
    ],
    "Adamax": [{"lr": 0.01}, {"lr": 1}, {"maximize": True, "weight_decay": 0.1}, {"betas": (0, 0.5), "eps": 1e-3}],
    "NAdam": [
        {"lr": 0.01},
        {"lr": 1},
        {"momentum_decay": 0},
        {"decoupled_weight_decay": True, "weight_decay": 0.1},
        {"maximize": True, "betas": (0.3, 0.9)},
    ],
    "RAdam": [
        {"lr": 0.01},
        {"lr": 1},
        {"decoupled_weight_decay": True, "weight_decay": 0.1},
        {"maximize": True},
        {"betas": (0.9, 0.5)},  # never rectified
    ],
}


#: the types of the optional trailing arguments left out: ``grad_scale`` (clipping not pending), ``ema`` and
#: ``ema_weight`` (no average updated inside the step)
_NOT_GIVEN = (types.Omitted(1.0), types.Omitted(None), types.Omitted(1.0))


@pytest.mark.parametrize("name", list(_KERNELS))
def test_kernel_compiles_once_per_dtype(name: str) -> None:
    kernel, n_arrays, n_scalars, n_flags = _KERNELS[name]
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        params = [numopt.Parameter(rng.standard_normal(s).astype(dtype)) for s in SHAPES]
        opt = getattr(numopt, name)(params, lr=1e-3)
        for p in params:
            p.grad = rng.standard_normal(p.shape).astype(dtype)
        opt.step()
        # the class leaves the optional grad_scale, ema and ema_weight out when no clipping nor average is pending
        expected = (_ARR[dtype],) * n_arrays + (types.float64,) * n_scalars + (types.boolean,) * n_flags + _NOT_GIVEN
        assert expected in signatures(kernel), signatures(kernel)
        count = len(signatures(kernel))
        for variant in _VARIANTS[name]:
            opt.param_groups[0].update(variant)
            params[1].grad = None  # runs of different lengths and step counts
            opt.step()
            params[1].grad = rng.standard_normal(params[1].shape).astype(dtype)
            opt.step()
        assert len(signatures(kernel)) == count, signatures(kernel)
    for dispatcher in (kernel, kernel.serial):  # at most one class-call variant per dtype in each
        class_calls = [
            s for s in dispatcher.signatures if len(s) == n_arrays + n_scalars + n_flags + 3 and s[-3:] == _NOT_GIVEN
        ]
        for dtype in (np.float32, np.float64):
            assert sum(s[0] == _ARR[dtype] and s[n_arrays] == types.float64 for s in class_calls) <= 1


# -- numopt.functional from a user's @njit code ----------------------------------------


@njit
def _adam_loop(x, target, steps, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled):
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    vmax = np.zeros_like(x) if amsgrad else np.zeros(0, x.dtype)
    g = np.empty_like(x)
    for t in range(1, steps + 1):
        for i in range(x.size):
            g[i] = x[i] - target[i]  # gradient of 0.5 * |x - target|^2
        step = float(t)
        adam(
            x,
            g,
            m,
            v,
            vmax,
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            1 - beta1**step,
            (1 - beta2**step) ** 0.5,
            amsgrad,
            maximize,
            decoupled,
        )
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("amsgrad, decoupled", [(False, False), (True, True)])
def test_functional_adam_from_njit_equals_the_class(dtype, amsgrad: bool, decoupled: bool) -> None:
    rng = np.random.default_rng(5)
    x0 = rng.standard_normal(50).astype(dtype)
    target = rng.standard_normal(50).astype(dtype)
    hp = {"lr": 0.05, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.01}
    ours = _adam_loop(x0.copy(), target, 30, 0.05, 0.9, 0.99, 1e-8, 0.01, amsgrad, False, decoupled)

    w = numopt.Parameter(x0.copy())
    opt = numopt.Adam([w], amsgrad=amsgrad, decoupled_weight_decay=decoupled, **hp)
    for _ in range(30):
        w.grad = w.data - target
        opt.step()
    np.testing.assert_array_equal(ours, w.data)
    assert np.abs(ours - target).mean() < np.abs(x0 - target).mean()


def test_functional_kernels_take_the_design_signature_and_dtype_scalars() -> None:
    # DESIGN's 14-argument call (coupled weight decay by default) and float32 scalars both work
    x = np.ones(4, np.float32)
    g = np.ones(4, np.float32)
    m, v = np.zeros(4, np.float32), np.zeros(4, np.float32)
    f = np.float32
    empty = np.zeros(0, np.float32)
    adam(x, g, m, v, empty, f(0.1), f(0.9), f(0.999), f(1e-8), f(0), f(0.1), f(0.001**0.5), False, False)
    np.testing.assert_allclose(x, 0.9, rtol=1e-6)
    y = np.ones(4, np.float32)
    adamax(y, g, np.zeros(4, np.float32), np.zeros(4, np.float32), 0.1, 0.9, 0.999, 1e-8, 0.0, 0.1, False)
    np.testing.assert_allclose(y, 0.9, rtol=1e-6)
    z = np.ones(4, np.float64)
    gz = np.ones(4, np.float64)
    radam(z, gz, np.zeros(4), np.zeros(4), 0.1, 0.9, 0.999, 1e-8, 0.0, 0.1, 0.001**0.5, 0.0, False, False)
    np.testing.assert_allclose(z, 0.9, rtol=1e-12)
    u = np.ones(4, np.float64)
    nadam(u, gz, np.zeros(4), np.zeros(4), 0.1, 0.9, 0.999, 1e-8, 0.0, 0.001, 0.05, 0.05, False, False)
    assert np.all(u < 1)


# -- behaviours the table does not reach ----------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", FAMILY)
def test_group_edits_between_steps_match_torch(name: str, dtype) -> None:
    opt, ours, ref_opt, ref = _pair(name, dtype, lr=0.02)
    rng = np.random.default_rng(3)
    edits = {4: {"lr": 0.05}, 8: {"betas": (0.5, 0.9)}, 12: {"weight_decay": 0.2, "maximize": True}}
    for t in range(16):
        for key, value in edits.get(t, {}).items():
            opt.param_groups[0][key] = value
            ref_opt.param_groups[0][key] = value
        _set_grads(rng, ours, ref, skip=(1,) if t % 3 == 1 else ())
        opt.step()
        ref_opt.step()
        _assert_close(ours, ref, dtype, opt, ref_opt)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nadam_params_with_equal_steps_but_different_mu_products_match_torch(dtype) -> None:
    # Two parameters take their first step at different times under different beta1: same step
    # count, different mu_product, so one run of the flat buffer is updated in two stretches.
    opt, ours, ref_opt, ref = _pair("NAdam", dtype, lr=0.05)
    rng = np.random.default_rng(4)
    _set_grads(rng, ours, ref, skip=(1, 2))
    opt.step()
    ref_opt.step()
    for o in (opt, ref_opt):
        o.param_groups[0]["betas"] = (0.7, 0.99)
    _set_grads(rng, ours, ref, skip=(0,))
    opt.step()
    ref_opt.step()
    assert opt.state[ours[0]]["step"] == opt.state[ours[1]]["step"] == 1.0
    assert float(opt.state[ours[0]]["mu_product"]) != float(opt.state[ours[1]]["mu_product"])
    for _ in range(5):
        _set_grads(rng, ours, ref)
        opt.step()
        ref_opt.step()
        _assert_close(ours, ref, dtype, opt, ref_opt)


@pytest.mark.parametrize("name, kwargs", [("Adam", {"amsgrad": True}), ("AdamW", {"amsgrad": True}), ("Adamax", {})])
def test_nan_gradients_propagate_through_the_running_max_like_torch(name: str, kwargs) -> None:
    opt, ours, ref_opt, ref = _pair(name, lr=0.1, **kwargs)
    rng = np.random.default_rng(6)
    for t in range(4):
        _set_grads(rng, ours, ref)
        if t == 2:
            ours[0].grad[0, 1] = np.nan
            ref[0].grad[0, 1] = float("nan")
        opt.step()
        ref_opt.step()
        _assert_close(ours, ref, np.float32, opt, ref_opt)  # NaNs must sit in the same places
    assert np.isnan(ours[0].data[0, 1]) and not np.isnan(ours[0].data[0, 0])


@pytest.mark.parametrize("name", FAMILY)
def test_maximize_on_g_equals_minimize_on_minus_g(name: str) -> None:
    rng = np.random.default_rng(7)
    x0 = rng.standard_normal(20).astype(np.float32)
    grads = [rng.standard_normal(20).astype(np.float32) for _ in range(12)]
    results = []
    for maximize, sign in ((True, 1), (False, -1)):
        w = numopt.Parameter(x0.copy())
        opt = getattr(numopt, name)([w], lr=0.05, weight_decay=0.0, maximize=maximize)
        for g in grads:
            w.grad = sign * g
            opt.step()
        results.append(w.data.copy())
    np.testing.assert_array_equal(*results)


def test_adam_with_decoupled_weight_decay_is_adamw() -> None:
    rng = np.random.default_rng(8)
    x0 = rng.standard_normal(30)
    a, b = numopt.Parameter(x0.copy()), numopt.Parameter(x0.copy())
    opt_a = numopt.Adam([a], lr=0.01, weight_decay=0.3, amsgrad=True, decoupled_weight_decay=True)
    opt_b = numopt.AdamW([b], lr=0.01, weight_decay=0.3, amsgrad=True)
    for _ in range(10):
        g = rng.standard_normal(30)
        a.grad, b.grad = g.copy(), g.copy()
        opt_a.step()
        opt_b.step()
    np.testing.assert_array_equal(a.data, b.data)
    assert opt_b.defaults["decoupled_weight_decay"] is True


def test_adamw_load_state_dict_keeps_every_group_decoupled_like_torch() -> None:
    w = numopt.Parameter(np.ones(3, np.float32))
    opt = numopt.AdamW([w])
    sd = opt.state_dict()
    sd["param_groups"][0]["decoupled_weight_decay"] = False
    del sd["param_groups"][0]["amsgrad"]  # an older state dict: the flag comes from the group
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["decoupled_weight_decay"] is True
    assert opt.param_groups[0]["amsgrad"] is False
    tw = torch.zeros(3, requires_grad=True)
    ref = reference_for("AdamW")([tw])
    tsd = ref.state_dict()
    tsd["param_groups"][0]["decoupled_weight_decay"] = False
    ref.load_state_dict(tsd)
    assert ref.param_groups[0]["decoupled_weight_decay"] is True


def test_defaults_and_state_keys_match_torch() -> None:
    for name in FAMILY:
        opt, ours, ref_opt, ref = _pair(name)
        assert opt.defaults.keys() == ref_opt.defaults.keys(), name
        for key, value in ref_opt.defaults.items():
            assert opt.defaults[key] == value, (name, key)
        rng = np.random.default_rng(9)
        _set_grads(rng, ours, ref)
        opt.step()
        ref_opt.step()
        assert list(opt.state[ours[0]]) == list(ref_opt.state[ref[0]]), name
    opt, ours, ref_opt, ref = _pair("Adam", amsgrad=True)
    _set_grads(np.random.default_rng(9), ours, ref)
    opt.step()
    ref_opt.step()
    assert list(opt.state[ours[0]]) == list(ref_opt.state[ref[0]])


def test_nadam_state_dict_holds_mu_product_as_a_float_and_resumes() -> None:
    opt, ours, _, _ = _pair("NAdam")
    rng = np.random.default_rng(10)
    for _ in range(3):
        for p in ours:
            p.grad = rng.standard_normal(p.shape).astype(np.float32)
        opt.step()
    sd = opt.state_dict()
    assert isinstance(sd["state"][0]["mu_product"], float)
    assert sd["state"][0]["mu_product"] == float(np.float32(sd["state"][0]["mu_product"]))  # torch keeps float32
    fresh = [numopt.Parameter(p.data.copy()) for p in ours]
    opt2 = numopt.NAdam(fresh)
    opt2.load_state_dict(sd)
    assert float(opt2.state[fresh[0]]["mu_product"]) == sd["state"][0]["mu_product"]
    with pytest.raises(ValueError, match="mu_product"):
        bad = opt.state_dict()
        bad["state"][0]["mu_product"] = float("nan")
        opt2.load_state_dict(bad)


@pytest.mark.parametrize(
    "module",
    ["numopt.optim.adam", "numopt.optim.adamw", "numopt.optim.adamax", "numopt.optim.nadam", "numopt.optim.radam"],
)
def test_docstring_examples_run(module: str) -> None:
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
