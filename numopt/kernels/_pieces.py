"""Pieces that several update rules share, written once and inlined into every loop.

Each pair is a constants function (formed once per step, outside the loop, from
float64 scalars cast to the arrays' dtype ``dt``; it returns a flat tuple, which a
rule's constants function concatenates into its own) and the per-element piece
that takes those constants as arguments. Tuples stay flat: Numba's parallel loops
take no nested tuples. All are :func:`~numopt.kernels._generate.portable`.
"""

from __future__ import annotations

from ._generate import portable

__all__ = ["lerp", "lerp_constants", "sign", "weight_decay", "weight_decay_constants"]


@portable
def lerp_constants(dt, weight):
    """``(w, small, 1 - w)`` for :func:`lerp` with weight ``w = dt(weight)``."""
    w = dt(weight)
    one = dt(1)
    return w, abs(w) < one / dt(2), one - w


@portable
def lerp(a, b, w, small, complement):
    """``a + w * (b - a)`` rounded as torch's ``lerp``; ``w, small, complement = lerp_constants(dt, w)``.

    torch's lerp is exact at both ends: it multiplies by the weight when it is
    small (``|w| < 0.5``) and by its complement otherwise.
    """
    if small:
        return a + w * (b - a)
    return b - (b - a) * complement


@portable
def weight_decay_constants(dt, lr, weight_decay, decoupled):
    """``(wd, decay, coupled, decoupled)`` for :func:`weight_decay`.

    ``decay = 1 - lr * weight_decay`` is formed in float64, as torch forms it.
    """
    use = weight_decay != 0
    return dt(weight_decay), dt(1 - lr * weight_decay), use and not decoupled, use and decoupled


@portable
def weight_decay(p, g, wd, decay, coupled, decoupled):
    """Weight decay, with ``wd, decay, coupled, decoupled = weight_decay_constants(...)``: returns ``(p, g)``.

    Coupled (an L2 term): ``g <- g + weight_decay * p``. Decoupled (AdamW):
    ``p <- p * (1 - lr * weight_decay)``. Neither when ``weight_decay == 0``.
    """
    if decoupled:
        p = p * decay
    elif coupled:
        g = g + wd * p
    return p, g


@portable
def sign(x, zero, one):
    """``sign(x)`` as torch's ``sign``: -1, 0 or 1, and 0 for NaN (``zero, one = dt(0), dt(1)``)."""
    if x > zero:
        return one
    if x < zero:
        return -one
    return zero
