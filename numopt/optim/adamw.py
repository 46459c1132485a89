"""AdamW (``torch.optim.AdamW``): Adam with decoupled weight decay."""

from __future__ import annotations

from typing import Any

from .._arguments import constructor
from .adam import Adam

__all__ = ["AdamW"]


class AdamW(Adam):
    r"""Adam with decoupled weight decay: the decay does not pass through the moments.

    The update at step :math:`t` (counted from 1, per parameter), for each
    parameter :math:`\theta` with gradient :math:`g_t`::

        g_t   = -g_t if maximize
        theta = theta * (1 - lr * weight_decay)
        m_t   = beta1 * m_{t-1} + (1 - beta1) * g_t
        v_t   = beta2 * v_{t-1} + (1 - beta2) * g_t**2
        vmax  = max(vmax, v_t)                          (amsgrad; then v_t is replaced by vmax)
        theta = theta - lr / (1 - beta1**t) * m_t / (sqrt(v_t) / sqrt(1 - beta2**t) + eps)

    This is :class:`Adam` with ``decoupled_weight_decay=True`` (which every
    group of an ``AdamW`` has, also after ``load_state_dict``, as in torch).

    Parameters
    ----------
    %(params)s
    %(lr)s
    %(betas)s
    %(eps)s
    weight_decay : float, default 1e-2
        Decoupled weight decay rate (>= 0).
    amsgrad : bool, default False
        Use the AMSGrad variant (normalize by the running maximum of ``v``).
    %(torch_args)s
    %(state_dtype)s

    State
    -----
    ``'step'``, ``'exp_avg'``, ``'exp_avg_sq'`` and, with ``amsgrad``,
    ``'max_exp_avg_sq'`` per parameter once it has been stepped.

    %(example_start)s
    >>> opt = numopt.AdamW([w], lr=0.1, weight_decay=0.5)
    >>> w.grad = np.zeros(3, np.float32)
    >>> opt.step()          # no gradient signal: only the decay, 1 * (1 - 0.1 * 0.5)
    >>> w.data
    array([0.95, 0.95, 0.95], dtype=float32)

    References
    ----------
    Loshchilov and Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """

    __init__ = constructor(
        "lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *, maximize=False, foreach=None,"
        " capturable=False, differentiable=False, fused=None",
        storage=True,
        convert={"betas": tuple},
        fixed={"decoupled_weight_decay": True},
    )

    def load_state_dict(self, state_dict: dict[str, Any], match: str = "position", strict: bool = True) -> Any:
        """Load a state like :meth:`Adam.load_state_dict`; every group stays decoupled (torch's rule)."""
        result = super().load_state_dict(state_dict, match=match, strict=strict)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
        return result
