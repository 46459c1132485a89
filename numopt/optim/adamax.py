"""Adamax (``torch.optim.Adamax``): Adam with the infinity norm."""

from __future__ import annotations

from typing import Any

from .._arguments import constructor
from .._jit import kernel
from ..kernels.adamax import adamax_scalars, adamax_step
from ..optimizer import Optimizer, StateTensor
from .adam import _check_adam_family

__all__ = ["Adamax"]


@kernel(parallel=False)
def _functional_scalars(s: Any, lr: float, t: int) -> tuple[float]:
    """``(bias_correction,)``
    of a :func:`numopt.functional.init` state at step ``t``: the class's formulas."""
    return (adamax_scalars(s.betas[0], t),)


class Adamax(Optimizer):
    r"""Adamax, the infinity-norm variant of Adam.

    The update at step :math:`t` (counted from 1, per parameter), for each
    parameter :math:`\theta` with gradient :math:`g_t`::

        g_t   = -g_t if maximize
        g_t   = g_t + weight_decay * theta              (weight_decay != 0)
        m_t   = beta1 * m_{t-1} + (1 - beta1) * g_t
        u_t   = max(beta2 * u_{t-1}, |g_t| + eps)
        theta = theta - lr / (1 - beta1**t) * m_t / u_t

    Parameters
    ----------
    %(params)s
    %(lr)s
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the first moment and of the infinity norm, each in [0, 1).
    eps : float, default 1e-8
        Added to ``|g|`` for numerical stability (>= 0).
    %(l2)s
    %(torch_args)s
    %(state_dtype)s

    State
    -----
    ``'step'``, ``'exp_avg'`` and ``'exp_inf'`` per parameter once it has been stepped.

    %(example)s
    >>> opt = numopt.Adamax([w], lr=0.1)
    >>> opt.step()
    >>> w.data
    array([0.9, 0.9, 0.9], dtype=float32)

    References
    ----------
    Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, section 7.
    """

    rule = adamax_step
    functional_scalars = _functional_scalars
    state_tensors = (StateTensor("exp_avg"), StateTensor("exp_inf", signed=False))
    bench_kwargs = {"lr": 1e-3}

    __init__ = constructor(
        "lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, foreach=None, *, maximize=False,"
        " differentiable=False, capturable=False",
        storage=True,
    )

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        _check_adam_family(h)

    def _step_scalars(self, group: dict[str, Any], step: float) -> dict[str, Any]:
        return {"bias_correction": adamax_scalars(float(group["betas"][0]), step)}
