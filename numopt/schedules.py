"""Learning-rate schedules as compiled closed forms, for your own ``@njit`` code.

Re-exported by :mod:`numopt.functional`. Each function returns the learning rate
that the scheduler class of the same name (:mod:`numopt.lr_scheduler`, snake case)
gives after ``t`` calls of ``scheduler.step()`` (``t = 0``: right after the
constructor), for a parameter group whose initial learning rate is ``base_lr``.
The arguments after ``t`` are the class's, in the class's order, with its
defaults. Each is ``@njit`` (``cache=True``): call it from Python or from
compiled code, e.g. inside a simulation loop::

    @njit
    def fit(x, steps):
        ...
        for t in range(steps):
            lr = cosine_annealing_lr(0.1, t, steps)
            adam(x, g, ..., lr, ...)

The classes compute their rates in torch's chainable (recursive) form, one
multiplication per step; these closed forms equal them to about 1e-12
relative (the tests require 1e-9 over 10,000 steps).

Arguments the closed form does not need are left out: the momentum arguments
of :class:`~numopt.lr_scheduler.OneCycleLR` and :class:`~numopt.lr_scheduler.CyclicLR`
(they move the momentum, not the rate), OneCycleLR's ``epochs`` /
``steps_per_epoch`` (pass ``total_steps = epochs * steps_per_epoch``) and
CyclicLR's custom ``scale_fn`` / ``scale_mode`` (a Python callable; ``mode``
picks the built-in scalings).
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import kernel

__all__ = [
    "constant_lr",
    "cosine_annealing_lr",
    "cosine_annealing_warm_restarts",
    "cyclic_lr",
    "exponential_lr",
    "linear_lr",
    "multi_step_lr",
    "one_cycle_lr",
    "polynomial_lr",
    "step_lr",
]


@kernel(parallel=False)
def step_lr(base_lr: float, t: int, step_size: int, gamma: float = 0.1) -> float:
    """:class:`~numopt.lr_scheduler.StepLR`: ``base_lr * gamma ** (t // step_size)``."""
    return base_lr * gamma ** (t // step_size)


@kernel(parallel=False)
def multi_step_lr(base_lr: float, t: int, milestones: np.ndarray, gamma: float = 0.1) -> float:
    """:class:`~numopt.lr_scheduler.MultiStepLR`: ``base_lr * gamma ** k``, ``k`` the milestones ``<= t``.

    ``milestones`` is a 1-D int64 array, in any order; a milestone listed twice counts twice.
    """
    passed = 0
    for m in milestones:
        if m <= t:
            passed += 1
    return base_lr * gamma**passed


@kernel(parallel=False)
def constant_lr(base_lr: float, t: int, factor: float = 1.0 / 3, total_iters: int = 5) -> float:
    """:class:`~numopt.lr_scheduler.ConstantLR`: ``base_lr * factor`` while ``t < total_iters``, then ``base_lr``."""
    if t < total_iters:
        return base_lr * factor
    return base_lr


@kernel(parallel=False)
def linear_lr(
    base_lr: float, t: int, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5
) -> float:
    """:class:`~numopt.lr_scheduler.LinearLR`: the factor moves linearly from ``start_factor`` to ``end_factor``
    over ``total_iters`` steps, then stays."""
    return base_lr * (start_factor + (end_factor - start_factor) * min(total_iters, t) / total_iters)


@kernel(parallel=False)
def exponential_lr(base_lr: float, t: int, gamma: float) -> float:
    """:class:`~numopt.lr_scheduler.ExponentialLR`: ``base_lr * gamma ** t``."""
    return base_lr * gamma**t


@kernel(parallel=False)
def polynomial_lr(base_lr: float, t: int, total_iters: int = 5, power: float = 1.0) -> float:
    """:class:`~numopt.lr_scheduler.PolynomialLR`: ``base_lr * (1 - min(t, total_iters) / total_iters) ** power``."""
    return base_lr * (1.0 - min(total_iters, t) / total_iters) ** power


@kernel(parallel=False)
def cosine_annealing_lr(base_lr: float, t: int, T_max: int, eta_min: float = 0.0) -> float:  # noqa: N803
    """:class:`~numopt.lr_scheduler.CosineAnnealingLR`:
    ``eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2`` (past ``T_max`` the cosine rises again)."""
    return eta_min + (base_lr - eta_min) * (1.0 + math.cos(math.pi * t / T_max)) / 2.0


@kernel(parallel=False)
def cosine_annealing_warm_restarts(
    base_lr: float,
    t: int,
    T_0: int,  # noqa: N803
    T_mult: int = 1,  # noqa: N803
    eta_min: float = 0.0,
) -> float:
    """:class:`~numopt.lr_scheduler.CosineAnnealingWarmRestarts`: a cosine from ``base_lr`` to ``eta_min``
    over ``T_i`` steps, restarted at the top; ``T_i`` starts at ``T_0`` and is multiplied by ``T_mult``
    at each restart."""
    t_cur = t
    t_i = T_0
    while t_cur >= t_i:  # at most log(t) rounds for T_mult > 1
        t_cur -= t_i
        t_i *= T_mult
    return eta_min + (base_lr - eta_min) * (1.0 + math.cos(math.pi * t_cur / t_i)) / 2.0


@kernel(parallel=False)
def _anneal(start: float, end: float, pct: float, cos: bool) -> float:
    if cos:
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)
    return (end - start) * pct + start


@kernel(parallel=False)
def one_cycle_lr(
    base_lr: float,
    t: int,
    total_steps: int,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> float:
    """:class:`~numopt.lr_scheduler.OneCycleLR`, ``base_lr`` its ``max_lr``, for ``0 <= t <= total_steps``.

    From ``base_lr / div_factor`` up to ``base_lr`` over the first ``pct_start`` of ``total_steps``,
    then down to ``base_lr / (div_factor * final_div_factor)`` (``three_phase``: back to the initial
    rate first), along a cosine (``anneal_strategy='cos'``) or a line (``'linear'``).
    """
    cos = anneal_strategy == "cos"
    initial = base_lr / div_factor
    lowest = initial / final_div_factor
    warm_end = float(pct_start * total_steps) - 1.0
    last = float(total_steps - 1)
    if t <= warm_end:
        return _anneal(initial, base_lr, t / warm_end, cos)
    if three_phase:
        down_end = float(2.0 * pct_start * total_steps) - 2.0
        if t <= down_end:
            return _anneal(base_lr, initial, (t - warm_end) / (down_end - warm_end), cos)
        return _anneal(initial, lowest, (t - down_end) / (last - down_end), cos)
    return _anneal(base_lr, lowest, (t - warm_end) / (last - warm_end), cos)


@kernel(parallel=False)
def cyclic_lr(
    base_lr: float,
    t: int,
    max_lr: float,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> float:
    """:class:`~numopt.lr_scheduler.CyclicLR`: between ``base_lr`` and ``max_lr``, up over ``step_size_up``
    steps and down over ``step_size_down`` (``None``: equal to ``step_size_up``).

    ``mode``: ``'triangular'`` (constant amplitude), ``'triangular2'`` (halved every cycle) or
    ``'exp_range'`` (scaled by ``gamma ** t``).
    """
    up = float(step_size_up)
    down = up if step_size_down is None else float(step_size_down)
    total = up + down
    ratio = up / total
    cycle = math.floor(1.0 + t / total)
    x = 1.0 + t / total - cycle
    if x <= ratio:
        height = x / ratio
    else:
        height = (x - 1.0) / (ratio - 1.0)
    if mode == "triangular2":
        scale = 1.0 / 2.0 ** (cycle - 1.0)
    elif mode == "exp_range":
        scale = gamma**t
    else:
        scale = 1.0
    return base_lr + (max_lr - base_lr) * height * scale
