"""Prodigy: Adam whose step size ``d`` is estimated from sums over every parameter.

A step is two passes over the flat buffers (``numopt.optim.Prodigy`` drives them):

1. :func:`prodigy_reduce`, per run: updates the moments and ``s`` of each element and
   reduces, per parameter, ``<g, p0 - p>`` and ``sum |s|``, in float64 partials over
   blocks of at most ``CHUNK`` elements (never spanning two parameters), added in
   block order: the same sums for any thread count. Each parameter's two sums then
   enter the running float32 sums ``d_numerator`` and ``d_de_nom`` in parameter
   order, as the reference adds each parameter's ``dot`` and ``sum`` into float32
   tensors.
2. :func:`prodigy_step`, the elementwise update once the new ``d`` is known.
"""

from __future__ import annotations

import numpy as np

from .._jit import kernel
from ._generate import elementwise, portable
from ._pieces import fma, sqrt, weight_decay, weight_decay_constants
from ._segmented import BlockPass, parameter_sums, segmented


@portable
def prodigy_reduce_constants(dt, beta1, m_scale, beta2, v_scale, beta3, s_scale, maximize):
    """The loop constants of :func:`prodigy_moments`, each cast once to ``dt``."""
    return dt(beta1), dt(m_scale), dt(beta2), dt(v_scale), dt(beta3), dt(s_scale), maximize


@portable
def prodigy_moments(c, param, grad, p0, s, m, v):
    r"""Pass 1 of a Prodigy step for one element: returns ``(s, m, v, dot, abs_s)``.

    With :math:`g` the gradient (negated if ``maximize``) and ``c = prodigy_reduce_constants(...)``::

        dot   = g * (p0 - p)                           (float64)
        m    <- beta1 * m + d * (1 - beta1) * g        (m_scale = d * (1 - beta1))
        v    <- beta2 * v + d^2 * (1 - beta2) * g^2    (v_scale = d * d * (1 - beta2))
        s    <- beta3 * s + (d / d0) * d_lr * g        (s_scale; d instead of d_lr with safeguard_warmup)
        abs_s = |s|                                    (float64)
    """
    b1, ms, b2, vs, b3, ss, maximize = c
    g = -grad if maximize else grad
    dot = np.float64(g) * np.float64(p0 - param)
    s = fma(ss, g, s * b3)
    return s, fma(ms, g, m * b1), fma(vs * g, g, v * b2), dot, np.float64(abs(s))


@kernel(parallel=False)
def prodigy_totals(partials, first, numerator, denominator, alpha):
    r"""The running float32 sums after a run's parameters: returns ``(numerator, denominator)``.

    For each parameter ``j`` (blocks ``first[j]:first[j + 1]``) in order, its float64 partials
    (``partials[0]``: ``<g, p0 - p>``, ``partials[1]``: ``sum |s|``) added in block order, then::

        numerator   <- fma(alpha, float32(dot_j), numerator)
        denominator <- denominator + float32(abs_j)

    The end of :func:`prodigy_reduce`, on the host (for a device buffer, on the partials copied back).
    """
    num = np.float32(numerator)
    den = np.float32(denominator)
    a32 = np.float32(alpha)
    for j in range(first.size - 1):
        acc_dot, acc_abs = parameter_sums(partials, first, j)
        num = fma(a32, np.float32(acc_dot), num)
        den = den + np.float32(acc_abs)
    return num, den


MOMENTS = BlockPass(
    prodigy_moments,
    prodigy_reduce_constants,
    arrays=("param", "grad", "p0", "s", "m", "v"),
    updates=("s", "m", "v"),
    sums=2,
)


@segmented
def prodigy_reduce(on, param, grad, p0, s, exp_avg, exp_avg_sq, seg, numerator, denominator, alpha, *scalars):
    r"""Pass 1 of a Prodigy step over one run, in place; returns the new ``(numerator, denominator)``.

    :func:`prodigy_moments` on every element (:data:`MOMENTS`), its ``dot`` and ``abs_s`` summed in
    float64 per block of the run's block table (``seg``: a
    :class:`~numopt.kernels.segments.BlockTable`), then :func:`prodigy_totals`: for each parameter
    ``j`` of the run in order, in float32 (the reference's ``d_numerator`` and ``d_de_nom`` are
    float32 tensors whatever the parameters' dtype)::

        numerator   <- fma(alpha, float32(dot_j), numerator)   (alpha = (d / d0) * d_lr)
        denominator <- denominator + float32(abs_j)

    Parameters
    ----------
    param, grad, p0, s, exp_avg, exp_avg_sq : 1-D arrays of one float dtype
        The run's slices; ``param``, ``grad`` and ``p0`` are only read.
    seg : BlockTable
        The run's blocks and scratch.
    numerator, denominator, alpha : float32
    *scalars
        The arguments of :func:`prodigy_reduce_constants` after ``dt``: ``beta1, m_scale, beta2,
        v_scale, beta3, s_scale`` (float64, each cast once to the arrays' dtype), ``maximize``.
    """
    on.run(MOMENTS, param, grad, p0, s, exp_avg, exp_avg_sq, seg.offs, seg.start, seg.owner, seg.partials, *scalars)
    return prodigy_totals(on.to_host(seg.partials), seg.first, numerator, denominator, alpha)


def prodigy_constants(dt, d_lr, d, eps, use_eps, weight_decay, weight_decouple, fixed_decay):
    """The loop constants of :func:`prodigy_step`, each formed in float64 and cast once to ``dt``."""
    decay_lr = 1.0 if fixed_decay else d_lr  # fixed_decay: the decoupled decay ignores the step size
    return weight_decay_constants(dt, decay_lr, weight_decay, weight_decouple) + (
        dt(d * eps),
        dt(-d_lr),
        use_eps,
    )


@elementwise(prodigy_constants, updates=("param",))
def prodigy_step(c, param, grad, exp_avg, exp_avg_sq):
    r"""Pass 2 of a Prodigy step over flat arrays: the parameter update, in place.

    For every element, with ``d`` the new estimate and ``d_lr`` the step size formed
    with the estimate the step started from (as ``pytorch_optimizer.Prodigy``)::

        param <- param * (1 - d_lr * weight_decay)       (weight_decay != 0, weight_decouple;
                                                          1 - weight_decay with fixed_decay)
        param <- param - d_lr * m / (sqrt(v) + d * eps)  (eps given)
        param <- param - d_lr * atan2(m, sqrt(v))        (eps None: ``use_eps`` False)

    Coupled weight decay (``weight_decouple=False``) adds ``weight_decay * param`` to
    the gradient after the moments were formed, as the reference does: it changes
    nothing here (the gradient is only read).

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype
        ``param`` is updated in place; ``grad`` is only read.
    exp_avg, exp_avg_sq : 1-D arrays
        The moments pass 1 left, only read.
    d_lr, d, eps, weight_decay : float
        float64 scalars, each cast once to the arrays' dtype (``eps`` 0 when ``use_eps`` is False).
    use_eps, weight_decouple, fixed_decay : bool

    References
    ----------
    Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free Learner", ICML 2024.
    """
    wd, decay, coupled, decoupled, d_eps, neg_lr, use_eps = c
    p, _ = weight_decay(param, grad, wd, decay, coupled, decoupled)
    denom = sqrt(exp_avg_sq)
    if use_eps:
        return p + (neg_lr * exp_avg) / (denom + d_eps)
    return fma(neg_lr, np.arctan2(exp_avg, denom), p)
