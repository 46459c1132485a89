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

from .._jit import kernel
from ._generate import portable
from ._pieces import fma, sqrt, weight_decay_constants
from ._segmented import BlockPass, parameter_sums, segmented

__all__ = ["APPLY", "MOMENTS", "lamb_ratios", "lamb_update"]

#: the reference's upper bound on a parameter's norm in the trust ratio (``pytorch_optimizer.Lamb.clamp``)
CLAMP = 10.0

#: the update modes of :func:`lamb_update`: Adam direction, rectified (RAdam) direction, the SGD-like
#: direction of a rectified step under the threshold, and a rectified step that moves nothing
ADAM, RECTIFIED, MOMENTUM, SKIP = 0, 1, 2, -1


@portable
def lamb_constants(
    dt,
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
    mode,
):
    """The loop constants of Lamb's pieces, formed in float64, cast once to ``dt`` (then ``reciprocal`` and
    ``mode`` as given: see :func:`lamb_update`)."""
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
        reciprocal,
        mode,
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
        return p + (neg_step * m) / (sqrt(v) + eps)
    if mode == MOMENTUM:
        return fma(neg_step, m, p)
    denom = sqrt(v) + eps
    u = (c[13] / denom) * m if reciprocal else m / denom
    if coupled:
        u = fma(wd, p, u)
    return u


@portable
def lamb_apply(c, mode, reciprocal, p, m, v, f):
    """The parameter after the trust-ratio step, for one element; ``f`` is its parameter's factor (see
    :func:`lamb_update`)."""
    if mode == RECTIFIED:
        return p + (f * m) / (sqrt(v) + c[8])
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
    ``-step_size * r`` (``r``: 1 with ``adam``, else ``ratio``). :func:`lamb_update` calls it between its
    two passes, on the host (for a device buffer, on the partials copied back).
    """
    dt = factor.dtype.type
    zero = dt(0)
    one = dt(1)
    eps_t = dt(eps)
    clamp = dt(CLAMP)
    neg_step = dt(-step_size)
    for i in range(first.size - 1):
        sw, su = parameter_sums(partials, first, i)
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


def moments_and_norms(c, param, grad, exp_avg, exp_avg_sq):
    """Pass 1 for one element: :func:`lamb_moments`, then the squares of the parameter and of its
    direction (:func:`lamb_direction`) in float64, for the norms (none in ``SKIP`` mode)."""
    p, m, v = lamb_moments(c, param, grad, exp_avg, exp_avg_sq)
    if c[15] == SKIP:
        return p, m, v, np.float64(0), np.float64(0)
    u = np.float64(lamb_direction(c, c[15], c[14], p, m, v))
    w = np.float64(p)
    return p, m, v, w * w, u * u


def trust_ratio_step(c, factor, param, exp_avg, exp_avg_sq):
    """Pass 2 for one element: :func:`lamb_apply` with its parameter's factor."""
    return (lamb_apply(c, c[15], c[14], param, exp_avg, exp_avg_sq, factor),)


_STATE = ("param", "grad", "exp_avg", "exp_avg_sq")
MOMENTS = BlockPass(
    moments_and_norms, lamb_constants, arrays=_STATE, updates=("param", "exp_avg", "exp_avg_sq"), sums=2
)
APPLY = BlockPass(
    trust_ratio_step,
    lamb_constants,
    arrays=("param", "exp_avg", "exp_avg_sq"),
    updates=("param",),
    per_param=("factor",),
)


@segmented
def lamb_update(on, param, grad, exp_avg, exp_avg_sq, seg, weight_norm, adam_norm, trust_ratio, adam, *scalars):
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

    Two passes over the run's blocks (``seg``: its :class:`~numopt.kernels.segments.BlockTable`):
    :data:`MOMENTS` writes the moments and the decayed parameters and each block's float64 sums of
    squares; :func:`lamb_ratios` adds each parameter's sums in block order and forms ``wn``, ``pn``
    and the ratio in the arrays' dtype, as the reference forms them (into ``weight_norm``,
    ``adam_norm``, ``trust_ratio``, float64, one entry per parameter); :data:`APPLY` recomputes each
    element's direction from the moments and applies its parameter's factor. No temporary of the
    parameters' size is stored. ``scalars``: the arguments of :func:`lamb_constants` after ``dt``
    (``step_size, decay_lr, beta1, beta2, eps, weight_decay, weight_decouple, grad_averaging,
    grad_scale, maximize, reciprocal, mode``), as the passes take them.

    References
    ----------
    You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes", ICLR 2020.
    """
    step_size, _, _, _, eps, *_, reciprocal, mode = scalars  # lamb_constants' arguments, named where used here
    on.run(MOMENTS, param, grad, exp_avg, exp_avg_sq, seg.offs, seg.start, seg.owner, seg.partials, *scalars)
    if mode == SKIP:
        return
    factor = on.scratch(seg.factor)
    partials = on.to_host(seg.partials)
    lamb_ratios(partials, seg.first, weight_norm, adam_norm, trust_ratio, factor, step_size, eps, reciprocal, adam)
    on.send(factor, seg.factor)
    on.run(APPLY, param, exp_avg, exp_avg_sq, seg.offs, seg.start, seg.owner, seg.factor, *scalars)
