"""Weight averaging (SWA / EMA) over flat arrays, for ``numopt.swa_utils``."""

from __future__ import annotations

from ._generate import elementwise
from ._pieces import lerp, lerp_constants


def _weight_constants(dt, weight):
    return lerp_constants(dt, weight)


@elementwise(_weight_constants, updates=("averaged",))
def lerp_(c, averaged, current):
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
    weight : float
        Cast once to the arrays' dtype.
    """
    w, small, complement = c
    return lerp(averaged, current, w, small, complement)


def _count_constants(dt, count):
    return (dt(count),)


@elementwise(_count_constants, updates=("averaged",))
def running_mean_(c, averaged, current):
    r"""Fold ``current`` into a running mean of ``count - 1`` values, in place.

    For every element: ``a <- a + (c - a) / count`` (torch's default SWA
    average, with ``count = n_averaged + 1``).

    Parameters
    ----------
    averaged, current : 1-D arrays of one float dtype, same size
    count : float
        Cast once to the arrays' dtype.
    """
    (count,) = c
    return averaged + (current - averaged) / count
