"""LARS: SGD whose gradient is scaled per parameter by a trust ratio ``||theta|| / ||g||``.

Two passes over a run of a flat buffer: a fixed-order per-parameter reduction of
``||theta||`` and ``||g||`` (see :mod:`numopt.kernels.segments`), then one pass that
applies weight decay, the trust ratio, momentum and the step.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import CHUNK, kernel
from ._generate import portable
from ._pieces import fma

__all__ = ["lars_ratios", "lars_update"]


@portable
def lars_constants(dt, lr, weight_decay, momentum, dampening, nesterov, maximize):
    """The loop constants of :func:`lars_step` (``1 - dampening`` formed in float64), cast once to ``dt``."""
    return dt(weight_decay), dt(-lr), dt(momentum), dt(1 - dampening), momentum > 0, nesterov, maximize


@portable
def lars_step(c, param, grad, momentum_buffer, matrix, ratio):
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

    The CPU kernel calls it between its two passes; the CUDA twin calls it on the host with the
    partials copied back.
    """
    dt = ratio.dtype.type
    zero = dt(0)
    one = dt(1)
    wd = dt(weight_decay)
    tc = dt(trust_coefficient)
    for i in range(first.size - 1):
        sp = np.float64(0)
        sg = np.float64(0)
        for b in range(first[i], first[i + 1]):
            sp += partials[0, b]
            sg += partials[1, b]
        pn = dt(np.sqrt(sp))
        d = dt(np.sqrt(sg)) + wd * pn
        r = one
        if pn > zero and d > zero:
            r = tc * pn / d
        ratio[i] = r


@kernel
def lars_update(
    param,
    grad,
    momentum_buffer,
    offs,
    first,
    start,
    owner,
    matrix,
    partials,
    ratio,
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
    no ratio). ``momentum_buffer`` may be empty when ``momentum == 0``. ``partials`` (float64,
    ``(2, blocks)``) and ``ratio`` (the arrays' dtype, one per parameter) are scratch.

    References
    ----------
    You, Gitman and Ginsburg, "Large Batch Training of Convolutional Networks", arXiv:1708.03888.
    """
    dt = param.dtype.type
    c = lars_constants(dt, lr, weight_decay, momentum, dampening, nesterov, maximize)
    nb = start.size
    for b in prange(nb):
        sp = np.float64(0)
        sg = np.float64(0)
        if matrix[owner[b]]:
            hi = min(start[b] + CHUNK, offs[owner[b] + 1])
            for j in range(start[b], hi):
                p = np.float64(param[j])
                g = np.float64(grad[j])
                sp += p * p
                sg += g * g
        partials[0, b] = sp
        partials[1, b] = sg
    lars_ratios(partials, first, ratio, weight_decay, trust_coefficient)
    zero = dt(0)
    use_momentum = momentum_buffer.size != 0
    for b in prange(nb):
        i = owner[b]
        is_matrix = matrix[i]
        r = ratio[i]
        hi = min(start[b] + CHUNK, offs[i + 1])
        for j in range(start[b], hi):
            buf = momentum_buffer[j] if use_momentum else zero
            p, buf = lars_step(c, param[j], grad[j], buf, is_matrix, r)
            param[j] = p
            if use_momentum:
                momentum_buffer[j] = buf
