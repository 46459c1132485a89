"""The behaviours people learn torch.optim from, checked on numopt."""

from __future__ import annotations

import numpy as np
import pytest

import numopt


def test_sgd_lr_one_subtracts_exactly_one() -> None:
    w0 = np.random.default_rng(0).standard_normal((2, 2)).astype(np.float32)
    w = numopt.Parameter(w0.copy())
    w.grad = np.ones((2, 2), np.float32)
    opt = numopt.SGD([w], lr=1.0)
    opt.step()
    np.testing.assert_array_equal(w.data, w0 - np.float32(1))


def test_optimizer_holds_the_parameter_object_itself() -> None:
    w = numopt.Parameter((2, 2))
    opt = numopt.SGD([w], lr=1.0)
    assert opt.param_groups[0]["params"][0] is w


def test_add_param_group_fills_other_defaults() -> None:
    w, w2 = numopt.Parameter((2, 2)), numopt.Parameter((3,))
    opt = numopt.SGD([w], lr=0.1, momentum=0.9, weight_decay=0.01)
    opt.add_param_group({"params": w2, "lr": 1e-4})
    g = opt.param_groups[1]
    assert (g["lr"], g["momentum"], g["weight_decay"], g["nesterov"]) == (1e-4, 0.9, 0.01, False)


def test_momentum_buffer_after_ten_steps() -> None:
    w = numopt.Parameter((2, 2))
    opt = numopt.SGD([w], lr=0.1, momentum=0.9)
    for _ in range(10):
        w.grad = np.ones((2, 2), np.float32)
        opt.step()
    # buffer = 1 + 0.9 + ... + 0.9**9 = (1 - 0.9**10) / 0.1
    np.testing.assert_allclose(opt.state[w]["momentum_buffer"], 6.5132, atol=1e-4)
    sd = opt.state_dict()
    np.testing.assert_allclose(sd["state"][0]["momentum_buffer"], 6.5132, atol=1e-4)


def test_per_group_learning_rates() -> None:
    base, head = numopt.Parameter(np.zeros(2, np.float32)), numopt.Parameter(np.zeros(2, np.float32))
    opt = numopt.SGD([{"params": [base]}, {"params": [head], "lr": 1e-3}], lr=1e-2)
    for p in (base, head):
        p.grad = np.ones(2, np.float32)
    opt.step()
    np.testing.assert_allclose(base.data, -1e-2)
    np.testing.assert_allclose(head.data, -1e-3)


def test_changing_lr_between_steps() -> None:
    w = numopt.Parameter(np.zeros(1, np.float32))
    opt = numopt.SGD([w], lr=0.1)
    lrs = [0.1, 0.05, 0.025]
    for lr in lrs:
        for g in opt.param_groups:
            g["lr"] = lr
        w.grad = np.ones(1, np.float32)
        opt.step()
    np.testing.assert_allclose(w.data, -sum(lrs), rtol=1e-6)


def _minimize_square(lr: float, steps: int) -> list[float]:
    """Minimize y = (2x)^2 from x = 2 with plain SGD: x <- (1 - 8 lr) x each step."""
    x = numopt.Parameter(np.array([2.0], np.float64))
    opt = numopt.SGD([x], lr=lr)
    xs = []
    for _ in range(steps):
        opt.zero_grad()
        x.grad = 8.0 * x.data  # dy/dx = 8x
        opt.step()
        xs.append(float(x.data[0]))
    return xs


@pytest.mark.parametrize("lr", [0.01, 0.05, 0.125, 0.2, 0.3])
def test_square_follows_one_minus_8lr(lr: float) -> None:
    xs = _minimize_square(lr, 10)
    np.testing.assert_allclose(xs, [2.0 * (1 - 8 * lr) ** (t + 1) for t in range(10)], rtol=1e-12, atol=1e-15)


def test_square_regimes() -> None:
    assert _minimize_square(0.125, 1) == [0.0]  # hits the minimum in one step
    oscillating = _minimize_square(0.2, 30)
    assert oscillating[0] < 0 < oscillating[1] and abs(oscillating[-1]) < 1e-6  # sign flips, converges
    diverging = _minimize_square(0.3, 30)
    assert abs(diverging[-1]) > 4e4  # |1 - 8 lr| = 1.4 > 1: 2 * 1.4**30 = 48403
