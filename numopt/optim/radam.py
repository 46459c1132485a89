"""RAdam (``torch.optim.RAdam``): Adam with a rectified adaptive learning rate."""

from __future__ import annotations

from typing import Any

from .._arguments import constructor
from .._jit import kernel
from ..kernels.radam import radam_scalars, radam_step
from ..optimizer import Optimizer, StateTensor
from .adam import _check_adam_family

__all__ = ["RAdam"]


@kernel(parallel=False)
def _functional_scalars(s: Any, lr: float, t: int) -> tuple[float, float, float]:
    """``(bias_correction1, bias_correction2_sqrt, rect)``
    of a :func:`numopt.functional.init` state at step ``t``: the class's formulas."""
    return radam_scalars(s.betas[0], s.betas[1], t)


class RAdam(Optimizer):
    r"""RAdam: Adam whose adaptive step is switched on once its variance is tractable.

    The update at step :math:`t` (counted from 1, per parameter), for each
    parameter :math:`\theta` with gradient :math:`g_t`::

        g_t     = -g_t if maximize
        theta   = theta * (1 - lr * weight_decay)       (weight_decay != 0, decoupled_weight_decay)
        g_t     = g_t + weight_decay * theta            (weight_decay != 0, otherwise)
        m_t     = beta1 * m_{t-1} + (1 - beta1) * g_t
        v_t     = beta2 * v_{t-1} + (1 - beta2) * g_t**2
        mhat    = m_t / (1 - beta1**t)
        rho_inf = 2 / (1 - beta2) - 1
        rho_t   = rho_inf - 2 t beta2**t / (1 - beta2**t)
        if rho_t > 5:
            r_t   = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
            theta = theta - lr * mhat * sqrt(1 - beta2**t) / (sqrt(v_t) + eps) * r_t
        else:
            theta = theta - lr * mhat

    Parameters
    ----------
    %(params)s
    %(adam_args)s
    decoupled_weight_decay : bool, default False
        Decay the parameters directly (as AdamW does) instead of through the gradient.
    %(torch_args)s
    %(state_dtype)s

    State
    -----
    ``'step'``, ``'exp_avg'`` and ``'exp_avg_sq'`` per parameter once it has been stepped.

    %(example)s
    >>> opt = numopt.RAdam([w], lr=0.1)
    >>> opt.step()          # rho_1 = 1 <= 5: a plain momentum step, 1 - 0.1 * 1
    >>> w.data
    array([0.9, 0.9, 0.9], dtype=float32)

    References
    ----------
    Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020.
    """

    rule = radam_step
    functional_scalars = _functional_scalars
    state_tensors = (StateTensor("exp_avg"), StateTensor("exp_avg_sq", signed=False))
    bench_kwargs = {"lr": 1e-3}

    __init__ = constructor(
        "lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, decoupled_weight_decay=False, *, foreach=None,"
        " maximize=False, capturable=False, differentiable=False",
        storage=True,
    )

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        _check_adam_family(h)

    def _step_scalars(self, group: dict[str, Any], step: float) -> dict[str, Any]:
        beta1, beta2 = group["betas"]
        bias_correction1, bias_correction2_sqrt, rect = radam_scalars(float(beta1), float(beta2), step)
        return {"bias_correction1": bias_correction1, "bias_correction2_sqrt": bias_correction2_sqrt, "rect": rect}
