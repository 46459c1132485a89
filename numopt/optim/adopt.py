"""ADOPT (``pytorch_optimizer.ADOPT``): Adam normalized by the previous second moment, with clipping."""

from __future__ import annotations

import math
from typing import Any

from numba.extending import register_jitable

from .._arguments import constructor
from .._jit import kernel
from .._validation import check_betas, check_bool, check_flags, check_nonnegative
from ..kernels.adopt import adopt_step
from ..optimizer import Optimizer, StateTensor
from ._group_step import GroupStepCount

__all__ = ["ADOPT"]


@register_jitable
def step_quarter_power(step: float) -> float:
    """ADOPT's default clip schedule: ``step ** 0.25`` (a module-level function, so the optimizer pickles;
    also callable from compiled code, where :func:`numopt.functional.step` uses it)."""
    return math.pow(step, 0.25)


@kernel(parallel=False)
def _functional_scalars(s: Any, lr: float, t: int) -> tuple[float]:
    """``(clip,)`` of a :func:`numopt.functional.init` state at step ``t``: no clipping on the first step
    (it only records ``v``), then the default ``clip_lambda``, as the class."""
    return (math.inf if t == 1 else step_quarter_power(float(t)),)


def _functional_refuses(opt: Any) -> str | None:
    if opt.clip_lambda is step_quarter_power:
        return None
    return f"ADOPT's functional state takes the default clip_lambda (step ** 0.25) only, got {opt.clip_lambda!r}"


def _check_clip_lambda(name: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a callable (step -> clip value) or None, got {value!r}")


class ADOPT(GroupStepCount, Optimizer):
    r"""ADOPT: the gradient normalized by the previous second moment, clipped, then averaged.

    The update at step :math:`t` (counted per group from 1), for each parameter
    :math:`\theta` with gradient :math:`g_t`::

        g_t   = -g_t if maximize
        theta = theta * (1 - lr * weight_decay)        (weight_decay != 0, weight_decouple;
                                                        1 - weight_decay with fixed_decay)
        g_t   = g_t + weight_decay * theta             (weight_decay != 0, not weight_decouple)
        t = 1:  v_1 = g_1**2                           (no parameter update on the first step)
        t > 1:  n_t   = clip(g_t / max(sqrt(v_{t-1}), eps), -c_t, c_t)     c_t = clip_lambda(t)
                m_t   = beta1 * m_{t-1} + (1 - beta1) * n_t
                theta = theta - lr * m_t
                v_t   = beta2 * v_{t-1} + (1 - beta2) * g_t**2

    As in the reference, "the first step" is the group's first ``step()`` call: a parameter
    that gets its first gradient later starts from ``v = 0`` (so ``n_t = ±c_t`` there).

    Same names, defaults and arithmetic as ``pytorch_optimizer.ADOPT`` (pytorch-optimizer
    4.1.0), its reference in the tests; its extra switches (``cautious``, ``stable_adamw``,
    passed there through ``**kwargs``) are not taken, nor complex parameters.

    Parameters
    ----------
    %(params)s
    %(lr)s
    betas : (float, float), default (0.9, 0.9999)
        Decay rates of the momentum of the normalized gradient and of the second moment, each in [0, 1).
    clip_lambda : callable or None, default ``step ** 0.25``
        ``clip_lambda(step) -> c`` gives the clip value of the normalized gradient at each
        step (``step`` an int, from 2: the first step does not update); ``None``: no
        clipping. Kept on the optimizer (``opt.clip_lambda``), not in the groups nor in the
        state dict, as in the reference; a lambda makes the optimizer unpicklable (the
        default, :func:`step_quarter_power`, pickles).
    %(decay_args)s
    %(foreach)s
    eps : float, default 1e-6
        Lower bound of the normalizing ``sqrt(v)`` (>= 0).
    %(maximize)s
    %(state_dtype)s

    State
    -----
    ``'exp_avg'`` and ``'exp_avg_sq'`` per parameter once it has been stepped. As in the
    reference, the step count is kept per group (``param_groups[i]['step']``, one more at
    every ``step()`` call, gradients or not), ``maximize`` and ``clip_lambda`` on the optimizer.

    %(example_start)s
    >>> opt = numopt.ADOPT([w], lr=0.1)
    >>> w.grad = np.array([1.0, -2.0, 0.5], np.float32)
    >>> opt.step()          # the first step only records the second moment
    >>> w.data
    array([1., 1., 1.], dtype=float32)
    >>> opt.step()          # then m = 0.1 * g / |g_1|: each element moves by lr * 0.1
    >>> w.data
    array([0.99, 1.01, 0.99], dtype=float32)

    References
    ----------
    Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal Rate",
    NeurIPS 2024.
    """

    rule = adopt_step
    functional_scalars = _functional_scalars
    functional_refuses = _functional_refuses
    state_tensors = (StateTensor("exp_avg"), StateTensor("exp_avg_sq", signed=False))
    bench_kwargs = {"lr": 1e-3}
    reference = "pytorch_optimizer.ADOPT"
    _tracks_step = False
    _optimizer_attributes = {"maximize": check_bool, "clip_lambda": _check_clip_lambda}

    __init__ = constructor(
        "lr=1e-3, betas=(0.9, 0.9999), clip_lambda=step_quarter_power, weight_decay=0.0, weight_decouple=False,"
        " fixed_decay=False, foreach=None, eps=1e-6, maximize=False",
        storage=True,
        convert={"betas": tuple},
    )

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        check_nonnegative(h, "lr")
        check_betas(h["betas"])
        check_nonnegative(h, "weight_decay", "eps")
        check_flags(h, "weight_decouple", "fixed_decay")

    def _step_scalars(self, group: dict[str, Any], step: float) -> dict[str, Any]:
        # the reference's clip: none at the first step (its group count, from 1)
        return {"clip": math.inf if step == 1 or self.clip_lambda is None else float(self.clip_lambda(step))}
