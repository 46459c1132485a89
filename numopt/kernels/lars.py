"""LARS: SGD whose gradient is scaled per parameter by a trust ratio ``||theta|| / ||g||``.

Two passes over a run of a flat buffer: a fixed-order per-parameter reduction of
``||theta||`` and ``||g||`` (see :mod:`numopt.kernels.segments`), then one pass that
applies weight decay, the trust ratio, momentum and the step.
"""

from __future__ import annotations

import numpy as np

from .._jit import kernel
from ._generate import portable
from ._pieces import fma
from ._segmented import BlockPass, no_constants, parameter_sums, segmented

__all__ = ["NORMS", "STEP", "lars_ratios", "lars_update"]


@portable
def lars_constants(dt, lr, weight_decay, momentum, dampening, nesterov, maximize):
    """The loop constants of :func:`lars_step` (``1 - dampening`` formed in float64), cast once to ``dt``."""
    return dt(weight_decay), dt(-lr), dt(momentum), dt(1 - dampening), momentum > 0, nesterov, maximize


def lars_step(c, matrix, ratio, param, grad, momentum_buffer):
    r"""One LARS step for one element: returns ``(param, momentum_buffer)``.

    With :math:`g` the gradient (negated if ``maximize``) and ``ratio`` its parameter's trust ratio::

        g  <- (g + weight_decay * param) * ratio            (parameters of 2 or more dimensions only)
        if momentum > 0:
            b  <- momentum * b + (1 - dampening) * g        (b starts from zeros)
            g  <- g + momentum * b    if nesterov    else    b
        param <- param - lr * g
    """
    wd, neg_lr, momentum, keep, use_momentum, nesterov, maximize = c
    g = -grad if maximize else grad
    if matrix:
        g = fma(wd, param, g) * ratio
    b = momentum_buffer
    if use_momentum:
        b = fma(keep, g, b * momentum)
        g = fma(momentum, b, g) if nesterov else b
    return fma(neg_lr, g, param), b


@kernel(parallel=False)
def lars_ratios(partials, first, ratio, weight_decay, trust_coefficient):
    r"""Each parameter's trust ratio from its blocks' partial sums (the middle of :func:`lars_update`).

    For parameter ``i`` (blocks ``first[i]:first[i + 1]``), the float64 partials ``||p||**2`` and
    ``||g||**2`` added in block order, then, in the dtype of ``ratio`` (the arrays' dtype)::

        pn = sqrt(sum partials[0])     d = sqrt(sum partials[1]) + weight_decay * pn
        ratio[i] = trust_coefficient * pn / d     if pn > 0 and d > 0, else 1

    :func:`lars_update` calls it between its two passes, on the host (for a device buffer, on the
    partials copied back).
    """
    dt = ratio.dtype.type
    zero = dt(0)
    one = dt(1)
    wd = dt(weight_decay)
    tc = dt(trust_coefficient)
    for i in range(first.size - 1):
        sp, sg = parameter_sums(partials, first, i)
        pn = dt(np.sqrt(sp))
        d = dt(np.sqrt(sg)) + wd * pn
        r = one
        if pn > zero and d > zero:
            r = tc * pn / d
        ratio[i] = r


def norms(c, matrix, param, grad):
    """Pass 1 for one element: ``(p**2, g**2)`` in float64 for a parameter of two or more dimensions
    (``matrix``), else zeros (vectors and scalars take no trust ratio)."""
    if matrix:
        p = np.float64(param)
        g = np.float64(grad)
        return p * p, g * g
    return np.float64(0), np.float64(0)


NORMS = BlockPass(norms, no_constants, arrays=("param", "grad"), per_param=("matrix",), sums=2)
STEP = BlockPass(
    lars_step,
    lars_constants,
    arrays=("param", "grad", "momentum_buffer"),
    updates=("param", "momentum_buffer"),
    optional=("momentum_buffer",),
    per_param=("matrix", "ratio"),
)


@segmented
def lars_update(
    on,
    param,
    grad,
    momentum_buffer,
    seg,
    lr,
    weight_decay,
    momentum,
    dampening,
    trust_coefficient,
    nesterov,
    maximize,
):
    r"""One LARS step over a run of a flat buffer, in place (``pytorch_optimizer.LARS``'s rule).

    For each parameter ``i`` (elements ``offs[i]:offs[i + 1]``) with ``matrix[i]`` (2 or more
    dimensions), in the arrays' dtype from float64 norms::

        pn = ||p||     gn = ||g||     d = gn + weight_decay * pn
        ratio = trust_coefficient * pn / d     if pn > 0 and d > 0, else 1

    then :func:`lars_step` on every element. Vectors and scalars take plain SGD steps (no decay,
    no ratio). ``momentum_buffer`` may be empty when ``momentum == 0``. Two passes over the run's
    blocks (``seg``: its :class:`~numopt.kernels.segments.BlockTable`, whose ``factor`` receives
    the ratios): :data:`NORMS`, then, after :func:`lars_ratios`, :data:`STEP`.

    References
    ----------
    You, Gitman and Ginsburg, "Large Batch Training of Convolutional Networks", arXiv:1708.03888.
    """
    on.run(NORMS, param, grad, seg.offs, seg.start, seg.owner, seg.matrix, seg.partials)
    ratio = on.scratch(seg.factor)
    lars_ratios(on.to_host(seg.partials), seg.first, ratio, weight_decay, trust_coefficient)
    on.send(ratio, seg.factor)
    scalars = (lr, weight_decay, momentum, dampening, nesterov, maximize)
    on.run(STEP, param, grad, momentum_buffer, seg.offs, seg.start, seg.owner, seg.matrix, seg.factor, *scalars)
