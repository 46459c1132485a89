"""Weight averaging (SWA / EMA) over flat arrays, for ``numopt.swa_utils``."""

from __future__ import annotations

from numba import prange

from .._jit import kernel


@kernel
def lerp_(averaged, current, weight):
    r"""Move ``averaged`` towards ``current`` by ``weight``, in place (torch's ``lerp_``).

    For every element, with :math:`w` the weight::

        a <- a + w * (c - a)          if |w| < 0.5
        a <- c - (c - a) * (1 - w)    otherwise

    The two forms are torch's: each is exact at its end of the range
    (``w = 0`` keeps ``a``, ``w = 1`` gives ``c``). EMA uses ``w = 1 - decay``,
    SWA ``w = 1 / (n + 1)``.

    Parameters
    ----------
    averaged, current : 1-D arrays of one float dtype, same size
        ``averaged`` is updated; ``current`` is only read.
    weight : scalar of the arrays' dtype
    """
    n = averaged.size
    one = averaged.dtype.type(1)
    half = one / (one + one)
    small = abs(weight) < half
    rest = one - weight
    for i in prange(n):
        a = averaged[i]
        d = current[i] - a
        if small:
            averaged[i] = a + weight * d
        else:
            averaged[i] = current[i] - d * rest


@kernel
def running_mean_(averaged, current, count):
    r"""Fold ``current`` into a running mean of ``count - 1`` values, in place.

    For every element: ``a <- a + (c - a) / count`` (torch's default SWA
    average, with ``count = n_averaged + 1``).

    Parameters
    ----------
    averaged, current : 1-D arrays of one float dtype, same size
    count : scalar of the arrays' dtype
    """
    n = averaged.size
    for i in prange(n):
        a = averaged[i]
        averaged[i] = a + (current[i] - a) / count
