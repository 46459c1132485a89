"""The compiled schedules of numopt.functional against the scheduler classes, t = 0..10,000."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from numba import njit

import numopt
from numopt import functional as F
from numopt import lr_scheduler

T = 10_000

#: (class name, function, base_lr, class kwargs, function arguments after t) -- three argument sets each
CASES: list[tuple[str, Any, float, dict[str, Any], tuple]] = [
    ("StepLR", F.step_lr, 0.1, {"step_size": 30}, (30,)),
    ("StepLR", F.step_lr, 0.5, {"step_size": 7, "gamma": 0.97}, (7, 0.97)),
    ("StepLR", F.step_lr, 2.0, {"step_size": 1, "gamma": 0.999}, (1, 0.999)),
    ("MultiStepLR", F.multi_step_lr, 0.1, {"milestones": [30, 80]}, (np.array([30, 80]),)),
    (
        "MultiStepLR",
        F.multi_step_lr,
        0.3,
        {"milestones": [500, 10, 500], "gamma": 0.5},
        (np.array([500, 10, 500]), 0.5),
    ),
    (
        "MultiStepLR",
        F.multi_step_lr,
        1.0,
        {"milestones": list(range(0, T, 100)), "gamma": 0.9},
        (np.arange(0, T, 100), 0.9),
    ),
    ("ConstantLR", F.constant_lr, 0.1, {}, ()),
    ("ConstantLR", F.constant_lr, 0.7, {"factor": 0.25, "total_iters": 100}, (0.25, 100)),
    ("ConstantLR", F.constant_lr, 0.01, {"factor": 0.9, "total_iters": 9999}, (0.9, 9999)),
    ("LinearLR", F.linear_lr, 0.1, {}, ()),
    ("LinearLR", F.linear_lr, 0.5, {"start_factor": 0.01, "end_factor": 1.0, "total_iters": 1000}, (0.01, 1.0, 1000)),
    ("LinearLR", F.linear_lr, 1.0, {"start_factor": 1.0, "end_factor": 0.05, "total_iters": 7000}, (1.0, 0.05, 7000)),
    ("ExponentialLR", F.exponential_lr, 0.1, {"gamma": 0.999}, (0.999,)),
    ("ExponentialLR", F.exponential_lr, 1.0, {"gamma": 0.99}, (0.99,)),
    ("ExponentialLR", F.exponential_lr, 0.03, {"gamma": 1.0001}, (1.0001,)),
    ("PolynomialLR", F.polynomial_lr, 0.1, {}, ()),
    ("PolynomialLR", F.polynomial_lr, 0.5, {"total_iters": 5000, "power": 2.0}, (5000, 2.0)),
    ("PolynomialLR", F.polynomial_lr, 1.0, {"total_iters": 9000, "power": 0.5}, (9000, 0.5)),
    ("CosineAnnealingLR", F.cosine_annealing_lr, 0.1, {"T_max": 10_000}, (10_000,)),
    ("CosineAnnealingLR", F.cosine_annealing_lr, 0.5, {"T_max": 300, "eta_min": 1e-3}, (300, 1e-3)),
    ("CosineAnnealingLR", F.cosine_annealing_lr, 1.0, {"T_max": 4000, "eta_min": 0.1}, (4000, 0.1)),
    ("CosineAnnealingWarmRestarts", F.cosine_annealing_warm_restarts, 0.1, {"T_0": 100}, (100,)),
    (
        "CosineAnnealingWarmRestarts",
        F.cosine_annealing_warm_restarts,
        0.5,
        {"T_0": 10, "T_mult": 2, "eta_min": 1e-3},
        (10, 2, 1e-3),
    ),
    ("CosineAnnealingWarmRestarts", F.cosine_annealing_warm_restarts, 1.0, {"T_0": 1, "T_mult": 3}, (1, 3)),
    ("OneCycleLR", F.one_cycle_lr, 0.1, {"total_steps": T}, (T,)),
    (
        "OneCycleLR",
        F.one_cycle_lr,
        1.0,
        {
            "total_steps": T,
            "pct_start": 0.25,
            "anneal_strategy": "linear",
            "div_factor": 10.0,
            "final_div_factor": 100.0,
        },
        (T, 0.25, "linear", 10.0, 100.0),
    ),
    (
        "OneCycleLR",
        F.one_cycle_lr,
        0.5,
        {"total_steps": T, "pct_start": 0.4, "three_phase": True},
        (T, 0.4, "cos", 25.0, 1e4, True),
    ),
    ("CyclicLR", F.cyclic_lr, 0.01, {"max_lr": 0.1}, (0.1,)),
    (
        "CyclicLR",
        F.cyclic_lr,
        0.001,
        {"max_lr": 0.5, "step_size_up": 300, "step_size_down": 700, "mode": "triangular2"},
        (0.5, 300, 700, "triangular2"),
    ),
    (
        "CyclicLR",
        F.cyclic_lr,
        0.05,
        {"max_lr": 1.0, "step_size_up": 250, "mode": "exp_range", "gamma": 0.9995},
        (1.0, 250, None, "exp_range", 0.9995),
    ),
]


def _class_lrs(name: str, base_lr: float, kwargs: dict[str, Any]) -> np.ndarray:
    """``get_last_lr()`` after t = 0..T calls of ``step()`` (OneCycleLR: up to its ``total_steps``)."""
    opt = numopt.SGD([numopt.Parameter(np.zeros(1))], lr=base_lr)
    cls = getattr(lr_scheduler, name)
    if name in ("OneCycleLR", "CyclicLR"):
        kwargs = {**kwargs, "cycle_momentum": False}
    first = {"OneCycleLR": "max_lr", "CyclicLR": "base_lr"}.get(name)
    sched = cls(opt, base_lr, **kwargs) if first else cls(opt, **kwargs)
    out = [sched.get_last_lr()[0]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stepping the scheduler without optimizer steps
        for _ in range(T):
            sched.step()
            out.append(sched.get_last_lr()[0])
    return np.array(out)


@njit
def _compiled_lrs(fn: Any, base_lr: float, args: tuple) -> np.ndarray:
    out = np.empty(T + 1)
    for t in range(T + 1):
        out[t] = fn(base_lr, t, *args)
    return out


@pytest.mark.parametrize(
    ("name", "fn", "base_lr", "kwargs", "args"), CASES, ids=[f"{c[0]}-{i % 3}" for i, c in enumerate(CASES)]
)
def test_compiled_schedule_equals_the_class(name: str, fn: Any, base_lr: float, kwargs: dict, args: tuple) -> None:
    expected = _class_lrs(name, base_lr, kwargs)
    got = _compiled_lrs(fn, base_lr, args)  # called from compiled code, as in a simulation
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=0)
    for t in (0, 1, 17, T):  # and from Python
        assert fn(base_lr, t, *args) == got[t]


def test_every_closed_form_scheduler_has_a_compiled_schedule() -> None:
    names = {c[0] for c in CASES}
    assert len(names) == 10
    for name in names:
        snake = "".join("_" + ch.lower() if ch.isupper() else ch for ch in name).lstrip("_").replace("l_r", "lr")
        assert getattr(F, snake) is next(c[1] for c in CASES if c[0] == name)
        assert snake in F.__all__


def test_defaults_are_the_classes() -> None:
    assert F.linear_lr(1.0, 0) == pytest.approx(1.0 / 3)
    assert F.constant_lr(1.0, 4) == pytest.approx(1.0 / 3) and F.constant_lr(1.0, 5) == 1.0
    assert F.cyclic_lr(0.0, 2000, 1.0) == pytest.approx(1.0)
    assert F.one_cycle_lr(1.0, 0, 100) == pytest.approx(1.0 / 25)
