"""CUDA twin of :mod:`numopt.kernels.clip` (gradient norms and clipping).

:func:`norm_partials` keeps the CPU kernel's contract (one float64 partial
per ``CHUNK`` elements, combined by the caller in chunk order) with one block
per chunk: each thread accumulates a strided share of the chunk in float64,
then the block reduces the shares in a fixed tree order. The result is
deterministic for a given launch configuration and equals the CPU partials up
to float64 rounding (the summation order differs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda, float64

from ..._jit import CHUNK
from .. import clip as _cpu
from ..clip import MAX_ABS, MIN_ABS, SUM_ABS, SUM_SQUARES
from ._launch import SIM_THREADS, SIMULATOR, jit, register

#: threads per block of the reduction (a power of two; also the size of its shared buffer)
RED_THREADS = 256


@jit
def _norm_partials(grad, mode, p, partials):
    n = grad.size
    nchunks = partials.size
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    shared = cuda.shared.array(RED_THREADS, float64)
    zero = partials.dtype.type(0)
    inf = partials.dtype.type(np.inf)
    for c in range(cuda.blockIdx.x, nchunks, cuda.gridDim.x):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        if mode == MIN_ABS:
            acc = inf
        else:
            acc = zero
        for i in range(lo + t, hi, nt):
            a = abs(partials.dtype.type(grad[i]))
            if mode == SUM_SQUARES:
                acc += a * a
            elif mode == SUM_ABS:
                acc += a
            elif mode == MAX_ABS:
                if a != a or a > acc:  # once NaN, stays NaN
                    acc = a
            elif mode == MIN_ABS:
                if a != a or a < acc:
                    acc = a
            else:
                acc += a**p
        shared[t] = acc
        cuda.syncthreads()
        s = nt // 2
        while s > 0:
            if t < s:
                mine = shared[t]
                other = shared[t + s]
                if mode == MAX_ABS:
                    if other != other or other > mine:
                        mine = other
                elif mode == MIN_ABS:
                    if other != other or other < mine:
                        mine = other
                else:
                    mine = mine + other
                shared[t] = mine
            cuda.syncthreads()
            s //= 2
        if t == 0:
            partials[c] = shared[0]
        cuda.syncthreads()


def norm_partials(grad: Any, mode: int, p: float, partials: Any) -> None:
    """Per-chunk partial reductions of the device array ``grad``, as :func:`numopt.kernels.clip.norm_partials`.

    ``partials`` (float64, ``ceil(grad.size / CHUNK)`` elements) may be a
    device array, or a host array: then the partials are reduced on the device
    and copied back (a few bytes per ``CHUNK`` elements).
    """
    nchunks = (grad.size + CHUNK - 1) // CHUNK
    if nchunks == 0:
        return
    if partials.size != nchunks:
        raise ValueError(f"partials must have {nchunks} elements for {grad.size} gradient values")
    host = partials if isinstance(partials, np.ndarray) else None
    out = cuda.device_array(nchunks, np.float64) if host is not None else partials
    threads = SIM_THREADS if SIMULATOR else RED_THREADS
    _norm_partials[nchunks, threads](grad, int(mode), float(p), out)
    if host is not None:
        out.copy_to_host(host)


register(_cpu.norm_partials, norm_partials)
