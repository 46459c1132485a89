"""Per-parameter (segmented) reductions over a run of a flat buffer, in a fixed order.

Rules with a trust ratio per parameter (Lamb, LARS) need a norm of every parameter
of a run before they can update it. A run's parameters are cut into blocks of at
most ``CHUNK`` elements, each inside one parameter (:func:`block_table`); a parallel
loop over the blocks writes one float64 partial per block, and each parameter's
partials are then added in block order. Large parameters and many small ones both
spread over the threads, and the result does not depend on the thread count.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._jit import CHUNK, kernel
from ._segmented import BlockPass, no_constants, segmented

__all__ = ["BlockTable", "SQUARES", "block_table", "segment_sum_squares", "segment_totals"]


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


def square(c, x):
    """``x**2`` in float64: one element's share of a sum of squares."""
    v = np.float64(x)
    return (v * v,)


#: per-block sums of squares of one array
SQUARES = BlockPass(square, no_constants, arrays=("x",), sums=1)


class BlockTable:
    """A run's block table (:func:`block_table`) and the scratch its segmented kernels take, as host arrays.

    ``offs``: the parameters' element offsets in the run; ``matrix``: whether each parameter has two
    or more dimensions (LARS); ``partials`` (float64, ``(2, blocks)``) and ``factor`` (``dtype``, one
    per parameter): scratch. ``numopt.optim._trust.Segments`` keeps one per run, on the device for a
    device buffer (``first`` stays on the host: only the host reads it).
    """

    __slots__ = ("offs", "first", "start", "owner", "matrix", "partials", "factor")

    def __init__(self, offs: np.ndarray, dtype: Any, matrix: np.ndarray | None = None) -> None:
        self.offs = np.asarray(offs, np.int64)
        self.first, self.start, self.owner = block_table(self.offs, CHUNK)
        n = self.offs.size - 1
        self.matrix = np.ones(n, np.bool_) if matrix is None else np.asarray(matrix, np.bool_)
        self.partials = np.empty((2, self.start.size), np.float64)
        self.factor = np.empty(n, dtype)


@segmented
def segment_sum_squares(on, x, seg, out):
    r"""``out[i] = sum(x[offs[i]:offs[i + 1]]**2)`` for every parameter ``i`` of a run, in float64.

    Each block's sum goes to ``seg.partials[0]``; each parameter's blocks are then added in order
    (:func:`segment_totals`), so the result is the same for any thread count. ``seg``: the run's
    :class:`BlockTable`; ``out``: a host array.
    """
    partials = seg.partials[:1]
    on.run(SQUARES, x, seg.offs, seg.start, seg.owner, partials)
    segment_totals(on.to_host(partials)[0], seg.first, out)


@kernel(parallel=False)
def segment_totals(partials, first, out):
    r"""``out[i] = sum(partials[first[i]:first[i + 1]])`` for every parameter ``i``, added in block order."""
    for i in range(first.size - 1):
        total = np.float64(0)
        for b in range(first[i], first[i + 1]):
            total += partials[b]
        out[i] = total
