"""Adam for row-sparse gradients (``torch.optim.SparseAdam``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._arguments import constructor
from .._jit import CHUNK
from .._validation import check_bool, check_number
from ..flat import FlatBuffer, Run
from ..kernels.sparse_adam import sparse_adam_step, sparse_adam_step_serial
from ..optimizer import Optimizer
from ..parameter import SparseGrad

__all__ = ["SparseAdam"]


class SparseAdam(Optimizer):
    r"""Adam restricted to the rows a row-sparse gradient touches (embedding tables).

    Gradients must be :class:`numopt.SparseGrad` (``indices`` along the first
    axis, duplicates summed, and ``values`` of shape ``(k, *param.shape[1:])``).
    At step :math:`t` (counted per parameter, also when its gradient has no
    rows), for each touched row, with :math:`g` its summed gradient::

        g     = -g if maximize
        m     = m + (g - m) * (1 - beta1)
        v     = v + (g**2 - v) * (1 - beta2)
        theta = theta - lr * sqrt(1 - beta2**t) / (1 - beta1**t) * m / (sqrt(v) + eps)

    Rows the gradient does not touch keep their values and moments bit for bit
    (this is not Adam with zero gradients there). The step reads the gradient's
    rows directly: no dense gradient is built.

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups (dicts); each needs at least one dimension.
    lr : float, default 1e-3
        Learning rate (> 0).
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the first and second moments, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator (> 0).
    maximize : bool, default False
        Maximize the objective instead of minimizing it.

    State
    -----
    ``'step'``, ``'exp_avg'`` and ``'exp_avg_sq'`` per parameter.

    Raises
    ------
    RuntimeError
        At ``step()``, when a parameter has a dense (ndarray) gradient.

    Examples
    --------
    >>> import numpy as np, numopt
    >>> table = numopt.Parameter(np.zeros((1000, 4), np.float32))
    >>> opt = numopt.SparseAdam([table], lr=0.1)
    >>> table.grad = numopt.SparseGrad([3, 7, 3], np.ones((3, 4), np.float32))
    >>> opt.step()
    >>> table.data[[3, 7, 8], 0].round(4)  # rows 3 and 7 moved by about lr; row 8 untouched
    array([-0.1, -0.1,  0. ], dtype=float32)
    """

    _state_keys = ("step", "exp_avg", "exp_avg_sq")
    _sparse_grads = True

    __init__ = constructor("lr=1e-3, betas=(0.9, 0.999), eps=1e-8, maximize=False")

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        check_number("lr", h["lr"], low=0.0, low_open=True, label="learning rate")
        check_number("eps", h["eps"], low=0.0, low_open=True, label="epsilon value")
        betas = h["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of numbers, got {betas!r}")
        for i, beta in enumerate(betas):
            check_number(f"betas[{i}]", beta, low=0.0, high=1.0, high_open=True, label=f"beta parameter at index {i}")
        check_bool("maximize", h["maximize"])

    def _state_spec(self, group: dict[str, Any]) -> tuple[tuple[str, float], ...]:
        return (("exp_avg", 0.0), ("exp_avg_sq", 0.0))

    def _prepare(self, group: dict[str, Any], flat: FlatBuffer) -> list[Run]:
        for p in flat.params:
            if p.grad is not None and not isinstance(p.grad, SparseGrad):
                raise RuntimeError(
                    "SparseAdam does not support dense gradients, please consider Adam instead "
                    "(give each parameter a numopt.SparseGrad(indices, values))"
                )
        return super()._prepare(group, flat)

    def _update(self, group: dict[str, Any], flat: FlatBuffer, run: Run) -> None:
        t = flat.dtype.type
        step = run.advance()
        beta1, beta2 = (float(b) for b in group["betas"])
        step_size = float(group["lr"]) * math.sqrt(1 - beta2**step) / (1 - beta1**step)
        maximize = bool(group["maximize"])
        for i in range(run.p0, run.p1):
            grad = flat.params[i].grad
            if grad.values.size == 0:
                continue  # no rows (or rows of no elements): the step is counted, nothing changes
            lo, hi = flat.offsets[i], flat.offsets[i + 1]
            width = grad.values.size // grad.indices.size
            order = np.argsort(grad.indices, kind="stable")
            sorted_rows = grad.indices[order]
            firsts = np.flatnonzero(np.diff(sorted_rows, prepend=-1))
            step_fn = sparse_adam_step if grad.values.size >= CHUNK else sparse_adam_step_serial
            step_fn(
                flat.data[lo:hi],
                flat.state["exp_avg"][lo:hi],
                flat.state["exp_avg_sq"][lo:hi],
                sorted_rows[firsts],
                np.append(firsts, sorted_rows.size),
                order,
                np.ascontiguousarray(grad.values).reshape(-1),
                width,
                t(-step_size),
                t(1 - beta1),
                t(1 - beta2),
                t(group["eps"]),
                maximize,
            )
