"""Gradient norms and clipping over flat arrays, for ``numopt.utils``.

The norm is reduced in two stages so that it is deterministic: each chunk of
``CHUNK`` elements writes its own partial result (accumulated in float64,
in eight lanes for sums of squares and of magnitudes, four for other powers,
added in a fixed tree), and the caller combines the partials in
chunk order. The result therefore does not depend on the thread count, and no
atomics are needed.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import CHUNK, kernel
from ._generate import elementwise, portable

#: reduction modes of :func:`norm_partials`
SUM_POW, SUM_ABS, SUM_SQUARES, MAX_ABS, MIN_ABS = 0, 1, 2, 3, 4


@portable
def _sum_8_lanes(grad, lo, hi, square, zero):
    """``sum g**2`` (``square``) or ``sum |g|`` over ``grad[lo:hi]`` in float64: eight lanes (element
    ``i`` in lane ``i % 8`` from ``lo``) added in a fixed tree. Unsigned indices: no negative-index
    wrap-around in the loop, which then runs on vector registers (twice as fast as four signed lanes)."""
    m = (hi - lo) // np.uint64(8)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
    for k in range(m):
        i = lo + np.uint64(8) * k
        a0, a1 = zero + grad[i], zero + grad[i + np.uint64(1)]
        a2, a3 = zero + grad[i + np.uint64(2)], zero + grad[i + np.uint64(3)]
        a4, a5 = zero + grad[i + np.uint64(4)], zero + grad[i + np.uint64(5)]
        a6, a7 = zero + grad[i + np.uint64(6)], zero + grad[i + np.uint64(7)]
        if square:
            s0 += a0 * a0
            s1 += a1 * a1
            s2 += a2 * a2
            s3 += a3 * a3
            s4 += a4 * a4
            s5 += a5 * a5
            s6 += a6 * a6
            s7 += a7 * a7
        else:
            s0 += abs(a0)
            s1 += abs(a1)
            s2 += abs(a2)
            s3 += abs(a3)
            s4 += abs(a4)
            s5 += abs(a5)
            s6 += abs(a6)
            s7 += abs(a7)
    for i in range(lo + np.uint64(8) * m, hi):
        a0 = zero + grad[i]
        s0 += a0 * a0 if square else abs(a0)
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@kernel
def norm_partials(grad, mode, p, partials):
    r"""Per-chunk partial reductions of ``grad`` for a vector ``p``-norm, in one pass.

    For chunk ``c`` (elements ``c*CHUNK`` to ``(c+1)*CHUNK``), in float64::

        SUM_SQUARES (0 < p = 2):  partials[c] = sum g**2
        SUM_ABS     (p = 1):      partials[c] = sum |g|
        SUM_POW     (other p):    partials[c] = sum |g|**p
        MAX_ABS     (p = inf):    partials[c] = max |g|   (NaN if any element is NaN)
        MIN_ABS     (p = -inf):   partials[c] = min |g|   (NaN if any element is NaN)

    Parameters
    ----------
    grad : 1-D float32 or float64 array
        Only read.
    mode : int
        One of the module constants above.
    p : float64
        The norm order (used by ``SUM_POW`` only).
    partials : 1-D float64 array of ``ceil(grad.size / CHUNK)`` elements
        Written.
    """
    n = grad.size
    zero = partials.dtype.type(0)
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        if mode == MAX_ABS or mode == MIN_ABS:
            m = abs(partials.dtype.type(grad[lo]))
            bad = m  # the first NaN met, which the result propagates
            for i in range(lo + 1, hi):
                a = abs(partials.dtype.type(grad[i]))
                if a != a:
                    bad = a
                elif (mode == MAX_ABS and a > m) or (mode == MIN_ABS and a < m):
                    m = a
            partials[c] = bad if bad != bad else m
        else:
            if mode == SUM_SQUARES or mode == SUM_ABS:
                partials[c] = _sum_8_lanes(grad, np.uint64(lo), np.uint64(hi), mode == SUM_SQUARES, zero)
                continue
            s0 = zero
            s1 = zero
            s2 = zero
            s3 = zero
            end4 = lo + ((hi - lo) // 4) * 4
            for i in range(lo, end4, 4):
                s0 += abs(partials.dtype.type(grad[i])) ** p
                s1 += abs(partials.dtype.type(grad[i + 1])) ** p
                s2 += abs(partials.dtype.type(grad[i + 2])) ** p
                s3 += abs(partials.dtype.type(grad[i + 3])) ** p
            for i in range(end4, hi):
                s0 += abs(partials.dtype.type(grad[i])) ** p
            partials[c] = (s0 + s1) + (s2 + s3)


def _scale_constants(dt, coef):
    return (dt(coef),)


@elementwise(_scale_constants, updates=("grad",))
def scale_(c, grad):
    """``grad <- grad * coef`` in place (``coef`` cast once to ``grad``'s dtype)."""
    (coef,) = c
    return grad * coef


def _clamp_constants(dt, low, high):
    return dt(low), dt(high)


@elementwise(_clamp_constants, updates=("grad",))
def clamp_(c, grad):
    """``grad <- min(max(grad, low), high)`` in place, NaN kept (torch's ``clamp_min_`` then ``clamp_max_``)."""
    low, high = c
    g = grad
    if g < low:
        g = low
    if g > high:
        g = high
    return g
