"""Adagrad (``torch.optim.Adagrad``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._arguments import constructor
from .._jit import kernel
from .._validation import check_flags, check_nonnegative
from ..flat import FlatBuffer, Run
from ..kernels.adagrad import adagrad_scalars, adagrad_step
from ..optimizer import Optimizer, StateTensor
from ..parameter import SparseGrad

__all__ = ["Adagrad"]


@kernel(parallel=False)
def _functional_scalars(s: Any, lr: float, t: int) -> tuple[float]:
    """``(neg_clr,)``
    of a :func:`numopt.functional.init` state at step ``t``: the class's formulas."""
    return (adagrad_scalars(lr, s.lr_decay, t),)


class Adagrad(Optimizer):
    r"""Adagrad: each element's step shrinks with the sum of its squared gradients.

    The update at step :math:`t = 1, 2, \ldots`, for each parameter :math:`\theta`
    with gradient :math:`g_t`::

        g_t   = -g_t if maximize
        g_t   = g_t + weight_decay * theta                   (weight_decay != 0)
        clr   = lr / (1 + (t - 1) * lr_decay)
        sum   = sum + g_t * g_t                              (sum starts at initial_accumulator_value)
        theta = theta - clr * g_t / (sqrt(sum) + eps)

    Parameters
    ----------
    %(params)s
    %(lr)s
    lr_decay : float, default 0
        Learning rate decay (>= 0).
    %(l2)s
    initial_accumulator_value : float, default 0
        Starting value of ``sum`` (>= 0). As in torch, the constructor's value is
        used for every parameter, whatever a group sets.
    eps : float, default 1e-10
        Added to the denominator (>= 0).
    %(torch_args)s
    %(state_dtype)s

    State
    -----
    ``'step'`` and ``'sum'`` for every parameter from construction on, as in
    torch (parameters added later with ``add_param_group`` get them at their
    first step).

    References
    ----------
    Duchi, Hazan and Singer, "Adaptive Subgradient Methods for Online Learning
    and Stochastic Optimization", JMLR 12 (2011).

    %(example_start)s
    >>> opt = numopt.Adagrad([w], lr=0.1)
    >>> w.grad = np.full(3, 2.0, np.float32)
    >>> opt.step()
    >>> w.data
    array([0.9, 0.9, 0.9], dtype=float32)
    """

    rule = adagrad_step
    functional_scalars = _functional_scalars
    state_tensors = (StateTensor("sum", fill="initial_accumulator_value", signed=False),)
    bench_kwargs = {"lr": 1e-2}

    __init__ = constructor(
        "lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10, foreach=None, *,"
        " maximize=False, differentiable=False, fused=None",
        storage=True,
    )

    def _construct(self, params: Any, arguments: dict[str, Any], **convert: Callable[[Any], Any]) -> None:
        """Then create every parameter's state, as torch does here (not at its first step)."""
        super()._construct(params, arguments, **convert)
        for flats in self._flats:
            for flat in flats:
                flat.ensure_state("sum", arguments["initial_accumulator_value"])
                for i, p in enumerate(flat.params):
                    self.state[p]["step"] = flat.step_view(i)
                    self.state[p]["sum"] = flat.state_view("sum", i)

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        check_nonnegative(h, "lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")
        check_flags(h, "maximize")

    def _state_spec(self, group: dict[str, Any]) -> tuple[tuple[str, float], ...]:
        # torch fills 'sum' from the constructor's value, not the group's
        return (("sum", float(self.defaults["initial_accumulator_value"])),)

    def _prepare(self, group: dict[str, Any], flat: FlatBuffer) -> list[Run]:
        # torch applies sparse gradients row by row, which a dense pass reproduces, but refuses
        # them with weight decay; a cached run list means no gradient was assigned since
        if flat._runs is None and group["weight_decay"] != 0:
            if any(isinstance(p.grad, SparseGrad) for p in flat.params):
                raise RuntimeError("weight_decay option is not compatible with sparse gradients")
        return super()._prepare(group, flat)

    def _step_scalars(self, group: dict[str, Any], step: float) -> dict[str, Any]:
        return {"neg_clr": adagrad_scalars(float(group["lr"]), float(group["lr_decay"]), step)}
