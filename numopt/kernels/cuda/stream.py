"""A no-math kernel over an optimizer's memory streams: the bandwidth a step could reach.

``python -m numopt bench --device cuda`` times it next to each optimizer, as
``numopt.bench`` does on the CPU.
"""

from __future__ import annotations

from numba import cuda

from ._launch import jit


@jit
def stream_(ro, a, b, c, d, rw):
    """``a[i] += ro[i]`` (and ``b``, ``c``, ``d`` for ``rw`` = 2, 3, 4): ``1 + rw`` reads, ``rw`` writes."""
    n = ro.size
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        g = ro[i]
        a[i] = a[i] + g
        if rw > 1:
            b[i] = b[i] + g
        if rw > 2:
            c[i] = c[i] + g
        if rw > 3:
            d[i] = d[i] + g
