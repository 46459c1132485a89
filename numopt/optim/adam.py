"""Adam (``torch.optim.Adam``), with AMSGrad and optional decoupled weight decay."""

from __future__ import annotations

from typing import Any

from .._arguments import constructor
from .._jit import kernel
from .._validation import check_betas, check_flags, check_nonnegative
from ..kernels.adam import adam_scalars, adam_step
from ..optimizer import Optimizer, StateTensor

__all__ = ["Adam"]


_check_betas = check_betas  # the name the other optimizers' modules import


def _check_adam_family(h: dict[str, Any]) -> None:
    """The checks every member of the Adam family shares (torch's wording and order)."""
    check_nonnegative(h, "lr", "eps")
    check_betas(h["betas"])
    check_nonnegative(h, "weight_decay")
    check_flags(h, "maximize", *(["decoupled_weight_decay"] if "decoupled_weight_decay" in h else []))


@kernel(parallel=False)
def _functional_scalars(s: Any, lr: float, t: int) -> tuple[float, float]:
    """``(bias_correction1, bias_correction2_sqrt)``
    of a :func:`numopt.functional.init` state at step ``t``: the class's formulas."""
    return adam_scalars(s.betas[0], s.betas[1], t)


class Adam(Optimizer):
    r"""Adam, with the AMSGrad variant and optional decoupled weight decay (AdamW).

    The update at step :math:`t` (counted from 1, per parameter), for each
    parameter :math:`\theta` with gradient :math:`g_t`::

        g_t   = -g_t if maximize
        theta = theta * (1 - lr * weight_decay)         (weight_decay != 0, decoupled_weight_decay)
        g_t   = g_t + weight_decay * theta              (weight_decay != 0, otherwise)
        m_t   = beta1 * m_{t-1} + (1 - beta1) * g_t
        v_t   = beta2 * v_{t-1} + (1 - beta2) * g_t**2
        vmax  = max(vmax, v_t)                          (amsgrad; then v_t is replaced by vmax)
        theta = theta - lr / (1 - beta1**t) * m_t / (sqrt(v_t) / sqrt(1 - beta2**t) + eps)

    Parameters
    ----------
    %(params)s
    %(adam_args)s
    amsgrad : bool, default False
        Use the AMSGrad variant (normalize by the running maximum of ``v``).
    decoupled_weight_decay : bool, default False
        Decay the parameters directly instead of through the gradient; makes
        this optimizer equivalent to :class:`AdamW`.
    %(torch_args)s
    %(state_dtype)s

    State
    -----
    ``'step'``, ``'exp_avg'``, ``'exp_avg_sq'`` and, with ``amsgrad``,
    ``'max_exp_avg_sq'`` per parameter once it has been stepped.

    %(example)s
    >>> opt = numopt.Adam([w], lr=0.1)
    >>> opt.step()          # the first step moves each element by lr against the gradient's sign
    >>> w.data.round(6)
    array([0.9, 0.9, 0.9], dtype=float32)

    References
    ----------
    Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    Reddi et al., "On the Convergence of Adam and Beyond", ICLR 2018.
    """

    rule = adam_step
    functional_scalars = _functional_scalars
    state_tensors = (
        StateTensor("exp_avg"),
        StateTensor("exp_avg_sq", signed=False),
        StateTensor("max_exp_avg_sq", when="amsgrad", signed=False),
    )
    bench_kwargs = {"lr": 1e-3}

    __init__ = constructor(
        "lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *, foreach=None, maximize=False,"
        " capturable=False, differentiable=False, fused=None, decoupled_weight_decay=False",
        storage=True,
        convert={"betas": tuple},
    )

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        _check_adam_family(h)
        check_flags(h, "amsgrad")

    def _step_scalars(self, group: dict[str, Any], step: float) -> dict[str, Any]:
        beta1, beta2 = group["betas"]
        bias_correction1, bias_correction2_sqrt = adam_scalars(float(beta1), float(beta2), step)
        return {"bias_correction1": bias_correction1, "bias_correction2_sqrt": bias_correction2_sqrt}
