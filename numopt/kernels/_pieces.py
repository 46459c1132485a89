"""Pieces that several update rules share, written once and inlined into every loop.

Each pair is a constants function (formed once per step, outside the loop, from
float64 scalars cast to the arrays' dtype ``dt``; it returns a flat tuple, which a
rule's constants function concatenates into its own) and the per-element piece
that takes those constants as arguments. Tuples stay flat: Numba's parallel loops
take no nested tuples. All are :func:`~numopt.kernels._generate.portable`.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from numba.extending import overload

from ._generate import portable
from ._intrinsics import fma as _llvm_fma
from ._intrinsics import sqrt as _llvm_sqrt


def fma(a, b, c):
    """``a * b + c`` rounded once, as the fused multiply-adds of torch's vectorized CPU kernels.

    Compiled code emits one FMA instruction (``llvm.fma``). As Python (the CUDA simulator) the
    exact value is rounded to float64, then to the arguments' type: one rounding for float64;
    for float32 the product is exact in float64, and the second rounding can differ from one
    rounding only on an exact tie (about one case in 2**29).
    """
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    return type(a)(float(exact))


@overload(fma, inline="never")
def _fma_compiled(a, b, c):
    def impl(a, b, c):
        return _llvm_fma(a, b, c)

    return impl


def sqrt(x):
    """The square root of float ``x`` in its own type, correctly rounded (NaN for ``x < 0``), as ``np.sqrt``.

    Rule bodies call this instead of ``np.sqrt``: compiled, it is ``llvm.sqrt`` on every target (the
    instruction ``np.sqrt`` gives on the CPU; numba-cuda cannot lower ``np.sqrt`` on a scalar); as Python
    (the CUDA simulator), ``np.sqrt`` itself.
    """
    return np.sqrt(x)


@overload(sqrt, inline="never")
def _sqrt_compiled(x):
    def impl(x):
        return _llvm_sqrt(x)

    return impl


__all__ = [
    "MOMENTS",
    "lerp",
    "lerp_constants",
    "moments",
    "moments_constants",
    "sign",
    "sqrt",
    "square_ema",
    "weight_decay",
    "weight_decay_constants",
]


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
        return fma(w, b - a, a)
    return fma(-complement, b - a, b)


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
        g = fma(wd, p, g)
    return p, g


@portable
def sign(x, zero, one):
    """``sign(x)`` as torch's ``sign``: -1, 0 or 1, and 0 for NaN (``zero, one = dt(0), dt(1)``)."""
    if x > zero:
        return one
    if x < zero:
        return -one
    return zero


#: how many constants :func:`moments_constants` forms: a rule's own constants follow, at ``c[MOMENTS:]``
MOMENTS = 9


@portable
def moments_constants(dt, lr, beta1, beta2, weight_decay, decoupled):
    """The constants of :func:`moments` (``MOMENTS`` of them), formed in float64 and cast once to ``dt``."""
    return (
        weight_decay_constants(dt, lr, weight_decay, decoupled)
        + lerp_constants(dt, 1 - beta1)
        + (
            dt(beta2),
            dt(1 - beta2),
        )
    )


@portable
def moments(param, grad, m, v, maximize, c):
    """The Adam family's prelude for one element: returns ``(p, g, m, v)``.

    With ``c[:MOMENTS] = moments_constants(...)``::

        g <- -g                                  (maximize)
        p <- p * (1 - lr * weight_decay)         (weight_decay != 0, decoupled)
        g <- g + weight_decay * p                (weight_decay != 0, coupled)
        m <- lerp(m, g, 1 - beta1)               (= beta1 * m + (1 - beta1) * g)
        v <- beta2 * v + (1 - beta2) * g * g
    """
    g = -grad if maximize else grad
    p, g = weight_decay(param, g, c[0], c[1], c[2], c[3])
    m = lerp(m, g, c[4], c[5], c[6])
    v = fma(c[8] * g, g, v * c[7])
    return p, g, m, v


@portable
def square_ema(v, g, beta2, one_minus_beta2):
    """``beta2 * v + (1 - beta2) * g * g``, rounded as torch's ``v.mul_(beta2).addcmul_(g, g, value=1 - beta2)``.

    ``beta2, one_minus_beta2 = dt(beta2), dt(1 - beta2)`` (the second is formed in float64). The same
    update :func:`moments` makes, for rules that need ``v`` apart from the rest of the Adam prelude.
    """
    return fma(one_minus_beta2 * g, g, v * beta2)
