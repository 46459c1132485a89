"""RMSprop (``torch.optim.RMSprop``)."""

from __future__ import annotations

from typing import Any

from .._arguments import constructor
from .._validation import check_flags, check_nonnegative
from ..flat import FlatBuffer, Run
from ..kernels.rmsprop import rmsprop_step
from ..optimizer import Optimizer, StateTensor
from ..parameter import SparseGrad

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop: gradients divided by a running root mean square of recent gradients.

    The update, for each parameter :math:`\theta` with gradient :math:`g_t`::

        g_t        = -g_t if maximize
        g_t        = g_t + weight_decay * theta                       (weight_decay != 0)
        square_avg = alpha * square_avg + (1 - alpha) * g_t * g_t
        grad_avg   = alpha * grad_avg + (1 - alpha) * g_t              (centered)
        avg        = sqrt(square_avg - grad_avg ** 2) + eps  if centered  else  sqrt(square_avg) + eps
        b          = momentum * b + g_t / avg;  theta = theta - lr * b (momentum > 0)
        theta      = theta - lr * g_t / avg                            (momentum == 0)

    Parameters
    ----------
    %(params)s
    %(lr)s
    alpha : float, default 0.99
        Smoothing constant of the running averages (>= 0).
    eps : float, default 1e-8
        Added to the denominator (>= 0).
    %(l2)s
    momentum : float, default 0
        Momentum factor (>= 0).
    centered : bool, default False
        Normalize by an estimate of the gradient's variance instead of its second moment.
    %(torch_args)s
    %(state_dtype)s

    State
    -----
    ``'step'`` and ``'square_avg'`` per parameter once stepped, plus
    ``'momentum_buffer'`` when ``momentum > 0`` and ``'grad_avg'`` when ``centered``.

    References
    ----------
    Hinton, "Neural Networks for Machine Learning", lecture 6e (2012);
    Graves, "Generating Sequences With Recurrent Neural Networks", arXiv:1308.0850 (centered form).

    %(example)s
    >>> opt = numopt.RMSprop([w], lr=0.01, momentum=0.9, centered=True)
    >>> opt.step()
    >>> sorted(opt.state[w])
    ['grad_avg', 'momentum_buffer', 'square_avg', 'step']
    """

    rule = rmsprop_step
    state_tensors = (
        StateTensor("square_avg", signed=False),
        StateTensor("momentum_buffer", when="momentum"),
        StateTensor("grad_avg", when="centered"),
    )
    bench_kwargs = {"lr": 1e-3}

    __init__ = constructor(
        "lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, capturable=False, foreach=None,"
        " maximize=False, differentiable=False",
        storage=True,
    )

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        check_nonnegative(h, "lr", "eps", "momentum", "weight_decay", "alpha")
        check_flags(h, "centered", "maximize")

    def _prepare(self, group: dict[str, Any], flat: FlatBuffer) -> list[Run]:
        if flat._runs is None and any(isinstance(p.grad, SparseGrad) for p in flat.params):
            # torch refuses these at the step; a cached run list means no gradient was assigned since
            raise RuntimeError("RMSprop does not support sparse gradients")
        return super()._prepare(group, flat)
