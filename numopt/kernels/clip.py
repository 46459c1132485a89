"""Gradient norms and clipping over flat arrays, for ``numopt.utils``.

The norm is reduced in two stages so that it is deterministic: each chunk of
``CHUNK`` elements writes its own partial result (accumulated in float64: for
sums of squares and of magnitudes in the compiler's vector lanes, see
:func:`_chunk_sum`; four lanes added in a fixed tree for other powers), and the
caller combines the partials in chunk order. The result therefore does not depend on the thread count, and no
atomics are needed.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._jit import CACHE, CHUNK, kernel
from ._generate import elementwise

#: reduction modes of :func:`norm_partials`
SUM_POW, SUM_ABS, SUM_SQUARES, MAX_ABS, MIN_ABS = 0, 1, 2, 3, 4


@njit(cache=CACHE, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _chunk_sum(grad, lo, hi, square):
    """``sum g**2`` (``square``) or ``sum |g|`` over ``grad[lo:hi]``, each element widened to float64.

    The one loop of numopt compiled with reassociation allowed (``fastmath={"reassoc"}``, nothing
    else): the compiler then sums in vector lanes (eight float64 per AVX-512 register, four
    registers interleaved), which reads memory at the bus's speed instead of 4.6x slower in one
    scalar chain. The order of the additions is then the compiled loop's: fixed for a given build
    and machine, the same for any thread count (each chunk is summed by one thread), and within
    float64 rounding of any other order (what a float32 gradient's norm needs is 24 bits).
    """
    x = grad[lo:hi]  # a view: indices from 0, so no negative-index check keeps the loop off vector registers
    s = np.float64(0)
    if square:
        for i in range(x.size):
            a = np.float64(x[i])
            s += a * a
    else:
        for i in range(x.size):
            s += abs(np.float64(x[i]))
    return s


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
                partials[c] = _chunk_sum(grad, lo, hi, mode == SUM_SQUARES)
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
