"""numopt.functional.init / step: one-call compiled state, bit for bit the optimizer classes."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
from numba import njit, prange
from numba.typed import List

import numopt
from numopt import functional as F
from numopt._jit import PARALLEL_THRESHOLD
from numopt.optimizer import registered
from tests.optim_db import OPTIM_DB

STEPS = 100
SUPPORTED = {
    "SGD",
    "ASGD",
    "Adam",
    "AdamW",
    "Adamax",
    "NAdam",
    "RAdam",
    "Adadelta",
    "Adagrad",
    "RMSprop",
    "Rprop",
    "Lion",
    "AdEMAMix",
    "ADOPT",
    "Adan",
}
UNSUPPORTED = {"SGDScheduleFree", "AdamWScheduleFree"}


def _refused(case: Any) -> bool:
    """Options whose per-step scalars need more than the state: ADOPT's custom clip_lambda, Adan's clipping."""
    return ("clip_lambda" in case.kwargs) or bool(case.kwargs.get("max_grad_norm"))


ROWS = [c for c in OPTIM_DB if c.name in SUPPORTED and not _refused(c)]
REFUSED = [c for c in OPTIM_DB if c.name in SUPPORTED and _refused(c)]


def _grads(n: int, dtype: Any, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((STEPS, n)).astype(dtype)


def _with_class(name: str, kwargs: dict[str, Any], x0: np.ndarray, grads: np.ndarray, lrs: Any = None) -> tuple:
    p = numopt.Parameter(x0.copy())
    opt = getattr(numopt, name)([p], **kwargs)
    for k, g in enumerate(grads):
        if lrs is not None:
            opt.param_groups[0]["lr"] = float(lrs[k])
        p.grad = g.copy()
        opt.step()
    return p.data, opt.state[p]


def test_every_elementwise_optimizer_is_covered() -> None:
    assert {c.__name__ for c in registered(elementwise=True)} == SUPPORTED | UNSUPPORTED


@pytest.mark.parametrize("case", ROWS, ids=[c.id for c in ROWS])
def test_step_is_bit_identical_to_the_class(case: Any) -> None:
    """Every OPTIM_DB row of a supported class: 100 steps from Python, parameters and state bit for bit."""
    n = 37
    x0 = np.random.default_rng(1).standard_normal(n).astype(case.dtype)
    grads = _grads(n, case.dtype)
    expected, state = _with_class(case.name, case.kwargs, x0, grads)
    x = x0.copy()
    st = F.init(case.name, x, **case.kwargs)
    for g in grads:
        F.step(st, x, g)
    np.testing.assert_array_equal(x, expected)
    assert int(st.step[0]) == STEPS
    for name in numopt.__dict__[case.name].rule.rule.state:
        arr = getattr(st, name)
        if arr.size:
            np.testing.assert_array_equal(arr, state[name].reshape(-1), err_msg=name)


@njit
def _jitted_loop(st: Any, x: np.ndarray, grads: np.ndarray) -> None:
    for k in range(grads.shape[0]):
        F.step(st, x, grads[k])


@njit
def _jitted_loop_lr(st: Any, x: np.ndarray, grads: np.ndarray, lrs: np.ndarray) -> None:
    for k in range(grads.shape[0]):
        F.step(st, x, grads[k], lrs[k])


REQUIRED = [
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.01}),
    ("SGD", {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    ("SGD", {"lr": 0.01, "momentum": 0.9, "dampening": 0.1}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5, "centered": True}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1}),
    ("NAdam", {"lr": 0.01, "momentum_decay": 0.01}),
    ("ASGD", {"lr": 0.01, "t0": 10.0, "lambd": 0.01}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "kwargs"), REQUIRED, ids=[f"{n}-{i}" for i, (n, _) in enumerate(REQUIRED)])
def test_step_in_njit_is_bit_identical_to_the_class(name: str, kwargs: dict, dtype: Any) -> None:
    """From compiled code, the default lr and a per-step lr (the class with its group's lr set each step)."""
    n = 53
    x0 = np.random.default_rng(2).standard_normal(n).astype(dtype)
    grads = _grads(n, dtype, 3)
    expected, _ = _with_class(name, kwargs, x0, grads)
    x = x0.copy()
    _jitted_loop(F.init(name, x, **kwargs), x, grads)
    np.testing.assert_array_equal(x, expected)

    lrs = np.array([F.cosine_annealing_lr(kwargs["lr"], t, STEPS) for t in range(STEPS)])
    expected, _ = _with_class(name, kwargs, x0, grads, lrs)
    x = x0.copy()
    _jitted_loop_lr(F.init(name, x, **kwargs), x, grads, lrs)
    np.testing.assert_array_equal(x, expected)


def test_large_arrays_take_the_parallel_loop_and_stay_identical() -> None:
    n = PARALLEL_THRESHOLD + 1000
    x0 = np.random.default_rng(4).standard_normal(n).astype(np.float32)
    grads = _grads(n, np.float32, 5)[:20]
    expected, _ = _with_class("Adam", {"lr": 0.01}, x0, grads)
    x = x0.copy()
    _jitted_loop(F.init("adam", x, lr=0.01), x, grads)
    np.testing.assert_array_equal(x, expected)


@njit(parallel=True)
def _batch(states: Any, xs: np.ndarray, grads: np.ndarray) -> None:
    for b in prange(xs.shape[0]):
        st = states[np.int64(b)]  # a typed List takes a signed index (prange gives an unsigned one)
        for k in range(grads.shape[1]):
            F.step(st, xs[b], grads[b, k])


def test_step_inside_prange_one_state_per_problem() -> None:
    """A typed List of states (Numba cannot index a tuple of them with a prange variable)."""
    xs0 = np.random.default_rng(6).standard_normal((4, 29))
    grads = np.stack([_grads(29, np.float64, 10 + b) for b in range(4)])
    xs = xs0.copy()
    states = List([F.init("adam", xs[b], lr=0.05) for b in range(4)])
    _batch(states, xs, grads)
    for b in range(4):
        expected, _ = _with_class("Adam", {"lr": 0.05}, xs0[b], grads[b])
        np.testing.assert_array_equal(xs[b], expected)


def test_init_takes_the_class_defaults_and_checks() -> None:
    st = F.init("AdamW", np.zeros(4, np.float32))
    assert (st.lr, st.betas, st.weight_decay, st.decoupled_weight_decay) == (1e-3, (0.9, 0.999), 1e-2, True)
    assert st.exp_avg.dtype == np.float32 and st.max_exp_avg_sq.size == 0 and st.step.tolist() == [0]
    assert F.init("adam", np.zeros(4), amsgrad=True).max_exp_avg_sq.size == 4
    assert F.init("adagrad", np.zeros(3), initial_accumulator_value=0.5).sum.tolist() == [0.5] * 3
    with pytest.raises(ValueError, match="Invalid learning rate"):
        F.init("adam", np.zeros(3), lr=-1.0)
    with pytest.raises(TypeError, match="momentum_decay"):
        F.init("adam", np.zeros(3), momentum_decay=0.1)
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'"):
        F.init("adamm", np.zeros(3))
    with pytest.raises(ValueError, match="SGDScheduleFree's step needs per-step scalars"):
        F.init("sgdschedulefree", np.zeros(3))
    with pytest.raises(TypeError, match="float32 or float64"):
        F.init("adam", np.zeros(3, np.int64))


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
def test_init_refuses_options_its_state_cannot_express(case: Any) -> None:
    with pytest.raises(ValueError, match=rf"init: {case.name}'s functional state .*; use numopt.{case.name}"):
        F.init(case.name, np.zeros(3, case.dtype), **case.kwargs)


def test_step_refuses_mismatched_arrays() -> None:
    st = F.init("adam", np.zeros(3))
    with pytest.raises(TypeError, match="state's dtype float64"):
        F.step(st, np.zeros(3, np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="one size"):
        F.step(st, np.zeros(4), np.zeros(4))
    with pytest.raises(TypeError, match="must come from numopt.functional.init"):
        F.step((np.zeros(3),), np.zeros(3), np.zeros(3))


def test_a_state_pickles() -> None:
    x = np.ones(5)
    st = F.init("rmsprop", x, momentum=0.9)
    F.step(st, x, np.ones(5))
    again = pickle.loads(pickle.dumps(st))
    assert type(again) is type(st) and again.step.tolist() == [1]
    y = x.copy()
    F.step(st, x, np.ones(5))
    F.step(again, y, np.ones(5))
    np.testing.assert_array_equal(x, y)
