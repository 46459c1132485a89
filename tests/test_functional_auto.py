"""numopt.functional.<rule>: size-aware (serial or parallel loop by size), one scalar convention for every rule."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from numba import njit

import numopt
from numopt import functional as F
from numopt._jit import PARALLEL_THRESHOLD
from numopt.kernels.adam import adam_step
from numopt.optimizer import registered

#: the rules' flags (bools): every other scalar is a float64 number
FLAGS = {
    "nesterov",
    "maximize",
    "first_step",
    "amsgrad",
    "decoupled_weight_decay",
    "centered",
    "weight_decouple",
    "fixed_decay",
}
RULES = {c.rule.rule.functional_name: c.rule for c in registered(elementwise=True)}


def test_every_rule_is_exported_size_aware_serial_and_parallel() -> None:
    for name, parallel in RULES.items():
        assert getattr(F, name) is parallel.auto, name
        assert getattr(F, f"{name}_serial") is parallel.serial
        assert getattr(F, f"{name}_parallel") is parallel
        assert {name, f"{name}_serial", f"{name}_parallel"} <= set(F.__all__)


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_casts_its_float64_scalars_once_to_the_arrays_dtype(name: str) -> None:
    """The constants of every rule, given float64 scalars and bool flags for float32 arrays, are float32
    numbers and bools only: no float64 scalar reaches the loop's arithmetic."""
    rule = RULES[name].rule
    args = [True if s in FLAGS else 0.5 + i / 64 for i, s in enumerate(rule.scalars)]
    for dt in (np.float32, np.float64):
        out = rule.constants(dt, *args)
        bad = [(i, type(v).__name__) for i, v in enumerate(out) if not isinstance(v, (dt, bool, np.bool_))]
        assert not bad, f"{name}: constants {bad} are neither {dt.__name__} nor bool"


def test_the_size_aware_kernel_picks_by_size() -> None:
    src = adam_step.rule.source()
    assert f"if param.size < {PARALLEL_THRESHOLD}:" in src and "def adam_step_auto(" in src


def _adam_args(n: int, dtype: Any, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    return x, g, np.zeros(n, dtype), np.zeros(n, dtype), np.empty(0, dtype)


@njit
def _loop(x: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, e: np.ndarray, steps: int) -> None:
    for t in range(1, steps + 1):
        bc1, bc2_sqrt = F.adam_scalars(0.9, 0.999, t)
        F.adam(x, g, m, v, e, 0.01, 0.9, 0.999, 1e-8, 0.0, bc1, bc2_sqrt, False, False)


@pytest.mark.parametrize("n", [10, PARALLEL_THRESHOLD - 1, PARALLEL_THRESHOLD, PARALLEL_THRESHOLD + 7])
def test_float32_loop_with_python_float_scalars_equals_the_class(n: int) -> None:
    """From an @njit loop, on either side of the threshold: the class's float32 result, bit for bit."""
    x, g, m, v, e = _adam_args(n, np.float32, n)
    p = numopt.Parameter(x.copy())
    opt = numopt.Adam([p], lr=0.01)
    for _ in range(5):
        p.grad = g.copy()
        opt.step()
    _loop(x, g, m, v, e, 5)
    np.testing.assert_array_equal(x, p.data)
    for kernel in (F.adam_serial, F.adam_parallel, F.adam):  # and from Python, each loop
        y, g2, m2, v2, e2 = _adam_args(n, np.float32, n)
        kernel(y, g2, m2, v2, e2, 0.01, 0.9, 0.999, 1e-8, 0.0, 0.1, 0.001**0.5, False, False)
        expected = _adam_args(n, np.float32, n)
        F.adam_serial(*expected, 0.01, 0.9, 0.999, 1e-8, 0.0, 0.1, 0.001**0.5, False, False)
        np.testing.assert_array_equal(y, expected[0])


def test_the_threshold_is_read_from_the_environment() -> None:
    code = "from numopt._jit import PARALLEL_THRESHOLD as T; print(T)"
    env = {**os.environ, "NUMOPT_PARALLEL_THRESHOLD": "123"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "123"
    env["NUMOPT_PARALLEL_THRESHOLD"] = "-4"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert "NUMOPT_PARALLEL_THRESHOLD must be a non-negative integer, got '-4'" in bad.stderr
