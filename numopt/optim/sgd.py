"""Stochastic gradient descent (``torch.optim.SGD``)."""

from __future__ import annotations

from typing import Any

from .._arguments import constructor
from .._validation import check_flags, check_nonnegative, check_number
from ..kernels.sgd import sgd_step
from ..optimizer import Optimizer, StateTensor

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with (Nesterov) momentum.

    The update, for each parameter :math:`\theta` with gradient :math:`g_t`::

        g_t   = -g_t if maximize
        g_t   = g_t + weight_decay * theta            (weight_decay != 0)
        b_t   = g_t                                   (first step with momentum)
        b_t   = momentum * b_{t-1} + (1 - dampening) * g_t
        g_t   = g_t + momentum * b_t  if nesterov  else  b_t    (momentum != 0)
        theta = theta - lr * g_t

    Parameters
    ----------
    %(params)s
    %(lr)s
    momentum : float, default 0
        Momentum factor (>= 0).
    dampening : float, default 0
        Dampening for momentum; not applied on the first step.
    %(l2)s
    nesterov : bool, default False
        Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``.
    %(torch_args)s
    %(state_dtype)s

    State
    -----
    ``'momentum_buffer'`` per parameter once stepped with ``momentum != 0``.

    %(example)s
    >>> opt = numopt.SGD([w], lr=0.1, momentum=0.9)
    >>> opt.step()
    >>> w.data
    array([0.9, 0.9, 0.9], dtype=float32)
    """

    _tracks_step = False
    rule = sgd_step
    state_tensors = (StateTensor("momentum_buffer", when="momentum"),)
    bench_kwargs = {"lr": 1e-3, "momentum": 0.9}

    __init__ = constructor(
        "lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *, maximize=False, foreach=None,"
        " differentiable=False, fused=None",
        storage=True,
    )

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        check_nonnegative(h, "lr", "momentum")
        check_number("dampening", h["dampening"], label="dampening value")
        check_nonnegative(h, "weight_decay")
        check_flags(h, "nesterov", "maximize")
        if h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
            raise ValueError(
                "Nesterov momentum requires a momentum and zero dampening "
                f"(got momentum={h['momentum']!r}, dampening={h['dampening']!r})"
            )
