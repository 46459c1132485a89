"""Lion (``pytorch_optimizer.Lion``): sign updates from interpolated momentum."""

from __future__ import annotations

from typing import Any

from .._arguments import constructor
from .._validation import check_betas, check_bool, check_flags, check_nonnegative
from ..kernels.lion import lion_step
from ..optimizer import Optimizer, StateTensor
from ._group_step import GroupStepCount

__all__ = ["Lion"]


class Lion(GroupStepCount, Optimizer):
    r"""Lion (EvoLved Sign Momentum): the sign of an interpolation of momentum and gradient.

    The update, for each parameter :math:`\theta` with gradient :math:`g_t`::

        g_t   = -g_t if maximize
        theta = theta * (1 - lr * weight_decay)        (weight_decay != 0, weight_decouple;
                                                        1 - weight_decay with fixed_decay)
        g_t   = g_t + weight_decay * theta             (weight_decay != 0, not weight_decouple)
        u_t   = sign(beta1 * m_{t-1} + (1 - beta1) * g_t)
        m_t   = beta2 * m_{t-1} + (1 - beta2) * g_t
        theta = theta - lr * u_t

    Same names, defaults and arithmetic as ``pytorch_optimizer.Lion`` (pytorch-optimizer
    4.1.0), its reference in the tests; its extra switches (``use_gc``, ``adanorm``,
    ``cautious``) are not taken.

    Parameters
    ----------
    %(params)s
    lr : float, default 1e-4
        Learning rate (>= 0); Lion's steps have a fixed size, so it wants a smaller
        ``lr`` than Adam (3-10x smaller).
    betas : (float, float), default (0.9, 0.99)
        Interpolation weight of the update and decay rate of the momentum, each in [0, 1).
    %(decay_args)s
    %(torch_args)s
    %(state_dtype)s

    State
    -----
    ``'exp_avg'`` per parameter once it has been stepped. As in the reference, the
    step count is kept per group (``param_groups[i]['step']``) and ``maximize`` on
    the optimizer (``opt.maximize``), not in the groups.

    %(example_start)s
    >>> opt = numopt.Lion([w], lr=0.1)
    >>> w.grad = np.array([1.0, -2.0, 0.0], np.float32)
    >>> opt.step()          # every element moves by lr against the sign of the update
    >>> w.data
    array([0.9, 1.1, 1. ], dtype=float32)

    References
    ----------
    Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023.
    """

    rule = lion_step
    state_tensors = (StateTensor("exp_avg"),)
    bench_kwargs = {"lr": 1e-4}
    reference = "pytorch_optimizer.Lion"
    _tracks_step = False
    _optimizer_attributes = {"maximize": check_bool}

    __init__ = constructor(
        "lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, weight_decouple=True, fixed_decay=False, foreach=None,"
        " maximize=False",
        storage=True,
        convert={"betas": tuple},
    )

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        check_nonnegative(h, "lr")
        check_betas(h["betas"])
        check_nonnegative(h, "weight_decay")
        check_flags(h, "weight_decouple", "fixed_decay")
