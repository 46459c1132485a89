"""LAMB: Adam directions scaled per parameter by a trust ratio ``||theta|| / ||update||``.

Two passes over a run of a flat buffer (see :mod:`numopt.kernels.segments` for the
fixed-order per-parameter reduction): the first updates the moments and the decayed
parameters and accumulates, per block of each parameter, the squared norms of the
parameter and of its Adam direction; the second recomputes each element's direction
from the moments and applies its parameter's trust ratio. No temporary of the
parameters' size is stored.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import CHUNK, kernel
from ._generate import portable
from ._pieces import fma, weight_decay_constants

__all__ = ["lamb_ratios", "lamb_update"]

#: the reference's upper bound on a parameter's norm in the trust ratio (``pytorch_optimizer.Lamb.clamp``)
CLAMP = 10.0

#: the update modes of :func:`lamb_update`: Adam direction, rectified (RAdam) direction, the SGD-like
#: direction of a rectified step under the threshold, and a rectified step that moves nothing
ADAM, RECTIFIED, MOMENTUM, SKIP = 0, 1, 2, -1


@portable
def lamb_constants(
    dt, step_size, decay_lr, beta1, beta2, eps, weight_decay, weight_decouple, grad_averaging, grad_scale, maximize
):
    """The loop constants of :func:`lamb_moments` and :func:`lamb_direction`, formed in float64, cast once to ``dt``."""
    return weight_decay_constants(dt, decay_lr, weight_decay, weight_decouple) + (
        dt(beta1),
        dt(1 - beta1) if grad_averaging else dt(1),
        dt(beta2),
        dt(1 - beta2),
        dt(eps),
        dt(grad_scale),
        grad_scale != 1.0,
        maximize,
        dt(-step_size),
        dt(1),
    )


@portable
def lamb_moments(c, param, grad, m, v):
    r"""The first half of a Lamb step for one element: returns ``(p, m, v)``.

    With :math:`g` the gradient::

        g <- -g                                    (maximize)
        g <- g * grad_scale                        (pre_norm: the global clipping factor)
        p <- p * (1 - lr * weight_decay)           (weight_decay != 0, weight_decouple; 1 - weight_decay
                                                    with fixed_decay)
        m <- beta1 * m + beta3 * g                 (beta3 = 1 - beta1 with grad_averaging, else 1)
        v <- beta2 * v + (1 - beta2) * g * g
    """
    g = -grad if c[11] else grad
    if c[10]:
        g = g * c[9]
    p = param * c[1] if c[3] else param
    return p, fma(c[5], g, m * c[4]), fma(c[7] * g, g, v * c[6])


@portable
def lamb_direction(c, mode, reciprocal, p, m, v):
    r"""The update whose norm enters the trust ratio, for one element (``p``, ``m``, ``v`` after :func:`lamb_moments`).

    ``ADAM``: ``m / (sqrt(v) + eps)`` (as ``m * (1 / (sqrt(v) + eps))`` with ``reciprocal``, the
    reference's batched form), plus ``weight_decay * p`` when the decay is coupled.
    ``RECTIFIED``: ``p - step_size * m / (sqrt(v) + eps)``. ``MOMENTUM``: ``p - step_size * m``.
    """
    wd, coupled, eps, neg_step = c[0], c[2], c[8], c[12]
    if mode == RECTIFIED:
        return p + (neg_step * m) / (np.sqrt(v) + eps)
    if mode == MOMENTUM:
        return fma(neg_step, m, p)
    denom = np.sqrt(v) + eps
    u = (c[13] / denom) * m if reciprocal else m / denom
    if coupled:
        u = fma(wd, p, u)
    return u


@portable
def lamb_apply(c, mode, reciprocal, p, m, v, f):
    """The parameter after the trust-ratio step, for one element; ``f`` is its parameter's factor (see
    :func:`lamb_update`)."""
    if mode == RECTIFIED:
        return p + (f * m) / (np.sqrt(v) + c[8])
    if mode == MOMENTUM:
        return fma(f, m, p)
    u = lamb_direction(c, mode, reciprocal, p, m, v)
    if reciprocal:
        return fma(c[12], u * f, p)
    return fma(f, u, p)


@kernel(parallel=False)
def lamb_ratios(partials, first, weight_norm, adam_norm, trust_ratio, factor, step_size, eps, reciprocal, adam):
    r"""Each parameter's trust ratio from its blocks' partial sums (the middle of :func:`lamb_update`).

    For parameter ``i`` (blocks ``first[i]:first[i + 1]``), the float64 partials added in block
    order, then, in the dtype of ``factor`` (the arrays' dtype), as the reference forms them::

        wn = min(sqrt(sum partials[0]), 10)      pn = sqrt(sum partials[1])
        ratio = wn / (pn + eps)                  (1 if wn == 0 or pn == 0)

    ``weight_norm``, ``adam_norm``, ``trust_ratio`` (float64) receive ``wn``, ``pn``, ``ratio``;
    ``factor`` the factor :func:`lamb_apply` takes: ``r`` with ``reciprocal``, else
    ``-step_size * r`` (``r``: 1 with ``adam``, else ``ratio``). The CPU kernel calls it between its
    two passes; the CUDA twin calls it on the host with the partials copied back.
    """
    dt = factor.dtype.type
    zero = dt(0)
    one = dt(1)
    eps_t = dt(eps)
    clamp = dt(CLAMP)
    neg_step = dt(-step_size)
    for i in range(first.size - 1):
        sw = np.float64(0)
        su = np.float64(0)
        for b in range(first[i], first[i + 1]):
            sw += partials[0, b]
            su += partials[1, b]
        wn = dt(np.sqrt(sw))
        if wn > clamp:
            wn = clamp
        pn = dt(np.sqrt(su))
        ratio = one if wn == zero or pn == zero else wn / (pn + eps_t)
        weight_norm[i] = wn
        adam_norm[i] = pn
        trust_ratio[i] = ratio
        r = one if adam else ratio
        factor[i] = r if reciprocal else neg_step * r


@kernel
def lamb_update(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    offs,
    first,
    start,
    owner,
    partials,
    factor,
    weight_norm,
    adam_norm,
    trust_ratio,
    step_size,
    decay_lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    weight_decouple,
    grad_averaging,
    grad_scale,
    maximize,
    reciprocal,
    adam,
    mode,
):
    r"""One Lamb step over a run of a flat buffer, in place (``pytorch_optimizer.Lamb``'s rule).

    For each parameter (elements ``offs[i]:offs[i + 1]``), after :func:`lamb_moments` on every element::

        u     = lamb_direction(p, m, v)                 (per element)
        wn    = min(||p||, 10)      pn = ||u||
        ratio = wn / (pn + eps)     (1 if wn == 0 or pn == 0)
        p    <- p - step_size * ratio * u               (ratio taken as 1 with ``adam``)

    ``step_size = lr / (1 - beta1**t)`` (times RAdam's rectification term with ``rectify``). With
    ``reciprocal`` (the reference's batched path) the update is ``u * ratio`` added with weight
    ``-step_size``; otherwise (its per-parameter path) ``u`` is added with weight
    ``-step_size * ratio`` formed in the arrays' dtype. In ``RECTIFIED``/``MOMENTUM`` mode the step
    uses ``m / (sqrt(v) + eps)``, or ``m``, in place of ``u``. ``SKIP``: only the moments and the decay.

    Norms are float64 sums over fixed blocks (:mod:`numopt.kernels.segments`), added in block order;
    ``wn``, ``pn`` and the ratio are then formed in the arrays' dtype, as the reference forms them.
    ``weight_norm``, ``adam_norm``, ``trust_ratio`` (float64, one entry per parameter) receive them;
    ``factor`` (the arrays' dtype, one per parameter) and ``partials`` (float64, ``(2, blocks)``)
    are scratch.

    References
    ----------
    You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes", ICLR 2020.
    """
    dt = param.dtype.type
    c = lamb_constants(
        dt, step_size, decay_lr, beta1, beta2, eps, weight_decay, weight_decouple, grad_averaging, grad_scale, maximize
    )
    nb = start.size
    for b in prange(nb):
        hi = min(start[b] + CHUNK, offs[owner[b] + 1])
        sw = np.float64(0)
        su = np.float64(0)
        for j in range(start[b], hi):
            p, m, v = lamb_moments(c, param[j], grad[j], exp_avg[j], exp_avg_sq[j])
            param[j] = p
            exp_avg[j] = m
            exp_avg_sq[j] = v
            if mode != SKIP:
                u = np.float64(lamb_direction(c, mode, reciprocal, p, m, v))
                w = np.float64(p)
                sw += w * w
                su += u * u
        partials[0, b] = sw
        partials[1, b] = su
    if mode == SKIP:
        return
    lamb_ratios(partials, first, weight_norm, adam_norm, trust_ratio, factor, step_size, eps, reciprocal, adam)
    for b in prange(nb):
        f = factor[owner[b]]
        hi = min(start[b] + CHUNK, offs[owner[b] + 1])
        for j in range(start[b], hi):
            param[j] = lamb_apply(c, mode, reciprocal, param[j], exp_avg[j], exp_avg_sq[j], f)
