"""Adam on the rows a row-sparse gradient touches."""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import kernel, serial_kernel


def _sparse_adam_step(
    param, exp_avg, exp_avg_sq, rows, starts, order, values, width, neg_step_size, beta1c, beta2c, eps, maximize
):
    r"""One SparseAdam step over the touched rows of one parameter, in place (torch.optim.SparseAdam).

    The gradient is row-sparse: ``values`` holds ``k`` rows of ``width``
    elements (flattened), and row ``order[j]`` of it belongs to parameter row
    ``rows[u]`` for ``starts[u] <= j < starts[u + 1]`` (duplicates are summed,
    in that order: torch's ``coalesce``). Only those rows change. With
    :math:`g` the summed row (negated if ``maximize``), for each of its elements::

        m  <- m + (g - m) * (1 - beta1)
        v  <- v + (g**2 - v) * (1 - beta2)
        param <- param - step_size * m / (sqrt(v) + eps)

    where ``step_size = lr * sqrt(1 - beta2**t) / (1 - beta1**t)``.

    Parameters
    ----------
    param, exp_avg, exp_avg_sq : 1-D arrays of one float dtype (one parameter, rows of ``width``)
    rows : 1-D int64 array
        The distinct touched rows.
    starts : 1-D int64 array of ``len(rows) + 1`` entries
        Where each distinct row's group begins in ``order``.
    order : 1-D int64 array
        A permutation of the ``k`` gradient rows, grouping equal row indices.
    values : 1-D array of ``param``'s dtype, ``k * width`` elements
    width : int
        Elements per row (the product of the parameter's trailing dimensions).
    neg_step_size, beta1c, beta2c, eps : scalars of ``param``'s dtype
        ``-step_size``, ``1 - beta1``, ``1 - beta2``, ``eps``.
    maximize : bool
    """
    for u in prange(rows.size):
        base = rows[u] * width
        a = starts[u]
        b = starts[u + 1]
        for j in range(width):
            g = values[order[a] * width + j]
            for q in range(a + 1, b):
                g = g + values[order[q] * width + j]
            if maximize:
                g = -g
            i = base + j
            m_old = exp_avg[i]
            dm = (g - m_old) * beta1c
            m = m_old + dm
            exp_avg[i] = m
            v_old = exp_avg_sq[i]
            dv = (g * g - v_old) * beta2c
            v = v_old + dv
            exp_avg_sq[i] = v
            param[i] = param[i] + neg_step_size * (m / (np.sqrt(v) + eps))


sparse_adam_step = kernel(_sparse_adam_step)
#: the same rule without threads, for updates too small to be worth a parallel launch
sparse_adam_step_serial = serial_kernel(_sparse_adam_step)
