"""Per-parameter (segmented) reductions over a run of a flat buffer, in a fixed order.

Rules with a trust ratio per parameter (Lamb, LARS) need a norm of every parameter
of a run before they can update it. A run's parameters are cut into blocks of at
most ``CHUNK`` elements, each inside one parameter (:func:`block_table`); a parallel
loop over the blocks writes one float64 partial per block, and each parameter's
partials are then added in block order. Large parameters and many small ones both
spread over the threads, and the result does not depend on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import CHUNK, kernel

__all__ = ["block_table", "segment_sum_squares", "segment_totals"]


@kernel(parallel=False)
def block_table(offs, block):
    r"""The blocks of a run whose parameter ``i`` holds elements ``offs[i]:offs[i + 1]``.

    Returns ``(first, start, owner)``: parameter ``i``'s blocks are ``first[i]:first[i + 1]``;
    block ``b`` starts at element ``start[b]``, belongs to parameter ``owner[b]`` and ends
    ``block`` elements later or at its parameter's end. An empty parameter has no block.
    """
    n = offs.size - 1
    first = np.empty(n + 1, np.int64)
    nb = 0
    for i in range(n):
        first[i] = nb
        nb += (offs[i + 1] - offs[i] + block - 1) // block
    first[n] = nb
    start = np.empty(nb, np.int64)
    owner = np.empty(nb, np.int64)
    for i in range(n):
        for b in range(first[i], first[i + 1]):
            start[b] = offs[i] + (b - first[i]) * block
            owner[b] = i
    return first, start, owner


@kernel
def segment_sum_squares(x, offs, first, start, owner, partials, out):
    r"""``out[i] = sum(x[offs[i]:offs[i + 1]]**2)`` for every parameter ``i`` of a run, in float64.

    ``partials`` (float64, one entry per block) receives each block's sum; each parameter's
    blocks are then added in order, so the result is the same for any thread count.
    """
    nb = start.size
    for b in prange(nb):
        hi = min(start[b] + CHUNK, offs[owner[b] + 1])
        acc = np.float64(0)
        for j in range(start[b], hi):
            v = np.float64(x[j])
            acc += v * v
        partials[b] = acc
    segment_totals(partials, first, out)


@kernel(parallel=False)
def segment_totals(partials, first, out):
    r"""``out[i] = sum(partials[first[i]:first[i + 1]])`` for every parameter ``i``, added in block order.

    The second half of :func:`segment_sum_squares` (its CUDA twin runs it on the host, on the partials
    copied back).
    """
    for i in range(first.size - 1):
        total = np.float64(0)
        for b in range(first[i], first[i + 1]):
            total += partials[b]
        out[i] = total
