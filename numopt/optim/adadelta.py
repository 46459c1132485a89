"""Adadelta (``torch.optim.Adadelta``)."""

from __future__ import annotations

from typing import Any

from .._arguments import constructor
from .._validation import check_flags, check_nonnegative, check_number
from ..flat import FlatBuffer, Run
from ..kernels.adadelta import adadelta_step
from ..optimizer import Optimizer, StateTensor
from ..parameter import SparseGrad

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    r"""Adadelta: steps scaled by the ratio of running RMS of updates to running RMS of gradients.

    The update, for each parameter :math:`\theta` with gradient :math:`g_t`::

        g_t        = -g_t if maximize
        g_t        = g_t + weight_decay * theta                        (weight_decay != 0)
        square_avg = rho * square_avg + (1 - rho) * g_t * g_t
        delta      = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g_t
        acc_delta  = rho * acc_delta + (1 - rho) * delta * delta
        theta      = theta - lr * delta

    Parameters
    ----------
    %(params)s
    lr : float, default 1.0
        Coefficient that scales ``delta`` before it is applied (>= 0).
    rho : float, default 0.9
        Decay of the running averages (in [0, 1]).
    eps : float, default 1e-6
        Added inside both square roots (>= 0).
    %(l2)s
    %(torch_args)s
    %(state_dtype)s

    State
    -----
    ``'step'``, ``'square_avg'`` and ``'acc_delta'`` per parameter once stepped.

    References
    ----------
    Zeiler, "ADADELTA: An Adaptive Learning Rate Method", arXiv:1212.5701 (2012).

    %(example)s
    >>> opt = numopt.Adadelta([w], lr=1.0)
    >>> opt.step()
    >>> bool(np.all(w.data < 1))
    True
    """

    rule = adadelta_step
    state_tensors = (StateTensor("square_avg", signed=False), StateTensor("acc_delta", signed=False))
    bench_kwargs = {"lr": 1.0}

    __init__ = constructor(
        "lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *, capturable=False, maximize=False,"
        " differentiable=False",
        storage=True,
    )

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        check_nonnegative(h, "lr")
        check_number("rho", h["rho"], low=0.0, high=1.0)
        check_nonnegative(h, "eps", "weight_decay")
        check_flags(h, "maximize")

    def _prepare(self, group: dict[str, Any], flat: FlatBuffer) -> list[Run]:
        if flat._runs is None and any(isinstance(p.grad, SparseGrad) for p in flat.params):
            # torch refuses these at the step; a cached run list means no gradient was assigned since
            raise RuntimeError("Adadelta does not support sparse gradients")
        return super()._prepare(group, flat)
