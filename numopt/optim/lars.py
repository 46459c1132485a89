"""LARS (``pytorch_optimizer.LARS``): SGD with a trust ratio per parameter tensor."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._arguments import constructor
from .._validation import check_bool, check_number
from ..flat import FlatBuffer, Run
from ..kernels.lars import lars_update
from ..optimizer import Optimizer, StateTensor
from ._group_step import GroupStepCount
from ._trust import UsesSegments, refuse_sparse

__all__ = ["LARS"]

_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0, np.float64)}


class LARS(UsesSegments, GroupStepCount, Optimizer):
    r"""LARS: SGD whose gradient is scaled, per parameter tensor, by ``||theta|| / ||g||``.

    For each parameter :math:`\theta` of 2 or more dimensions, with gradient :math:`g_t`
    (negated if ``maximize``)::

        d     = ||g_t|| + weight_decay * ||theta||
        r_t   = trust_coefficient * ||theta|| / d       (1 if ||theta|| = 0 or d = 0)
        g_t   = (g_t + weight_decay * theta) * r_t

    then, for every parameter (vectors and scalars take no decay and no ratio)::

        b_t   = momentum * b_{t-1} + (1 - dampening) * g_t      (momentum > 0; b_0 = 0)
        g_t   = g_t + momentum * b_t  if nesterov  else  b_t    (momentum > 0)
        theta = theta - lr * g_t

    Same names, defaults and arithmetic as ``pytorch_optimizer.LARS`` (pytorch-optimizer 4.1.0),
    its reference in the tests (its batched and per-parameter paths compute the same). Unlike the
    reference, gradients are only read (it rewrites ``p.grad`` in place). Norms are reduced in a
    fixed order, so steps do not depend on the thread count. CUDA parameters are updated on the
    device (the norms from per-block partials reduced there; one ratio per parameter crosses back).

    Parameters
    ----------
    %(params)s
    lr : float, default 1e-3
        Learning rate (>= 0).
    weight_decay : float, default 0
        Weight decay (>= 0), for parameters of 2 or more dimensions only.
    momentum : float, default 0.9
        Momentum factor, in [0, 1).
    dampening : float, default 0
        Dampening of the momentum, in [0, 1).
    trust_coefficient : float, default 1e-3
        Trust coefficient (>= 0).
    nesterov : bool, default False
        Nesterov momentum.
    foreach : bool or None, default None
        Accepted (the reference's implementation switch; both of its paths compute the same).
    maximize : bool, default False
        Maximize the objective instead of minimizing it (optimizer-wide, as in the reference).

    State
    -----
    ``'momentum_buffer'`` per parameter once it has been stepped, when ``momentum > 0``. As in the
    reference, the step count is kept per group (``param_groups[i]['step']``, counted when the step
    updates one of the group's parameters; the reference counts every ``step()``) and ``maximize`` on
    the optimizer.

    Examples
    --------
    >>> import numpy as np, numopt
    >>> w = numopt.Parameter(np.full((2, 2), 3.0, np.float32))
    >>> opt = numopt.LARS([w], lr=1.0, momentum=0.0, trust_coefficient=0.1)
    >>> w.grad = np.ones((2, 2), np.float32)
    >>> opt.step()          # ratio 0.1 * ||w|| / ||g|| = 0.1 * 6 / 2 = 0.3
    >>> w.data
    array([[2.7, 2.7],
           [2.7, 2.7]], dtype=float32)

    References
    ----------
    You, Gitman and Ginsburg, "Large Batch Training of Convolutional Networks", arXiv:1708.03888.
    """

    state_tensors = (StateTensor("momentum_buffer", when="momentum"),)
    bench_kwargs = {"lr": 1e-3}
    reference = "pytorch_optimizer.LARS"
    runs_on_cuda = True
    _tracks_step = False
    _optimizer_attributes = {"maximize": check_bool}  # on the optimizer, not in the groups, as in the reference

    __init__ = constructor(
        "lr=1e-3, weight_decay=0.0, momentum=0.9, dampening=0.0, trust_coefficient=1e-3, nesterov=False,"
        " foreach=None, maximize=False"
    )

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        check_number("lr", h["lr"], low=0.0, label="learning rate")
        check_number("weight_decay", h["weight_decay"], low=0.0, label="weight_decay value")
        check_number("momentum", h["momentum"], low=0.0, high=1.0, high_open=True, label="momentum value")
        check_number("dampening", h["dampening"], low=0.0, high=1.0, high_open=True, label="dampening value")
        check_number("trust_coefficient", h["trust_coefficient"], low=0.0, label="trust_coefficient value")
        check_bool("nesterov", h["nesterov"])

    def step(self, closure: Any = None) -> Any:
        """Perform one optimization step (see :meth:`Optimizer.step`); sparse gradients are refused."""
        refuse_sparse("LARS", self.parameters())
        return super().step(closure)

    def _update(self, group: dict[str, Any], flat: FlatBuffer, run: Run) -> None:
        self._stepped.add(id(group))
        seg = self._segments.get(flat, run)
        momentum = float(group["momentum"])
        run.pick(lars_update)(
            run.data,
            run.grad,
            run.state["momentum_buffer"] if momentum > 0 else _EMPTY[flat.dtype],
            seg,
            float(group["lr"]),
            float(group["weight_decay"]),
            momentum,
            float(group["dampening"]),
            float(group["trust_coefficient"]),
            bool(group["nesterov"]),
            bool(self.maximize),
        )
