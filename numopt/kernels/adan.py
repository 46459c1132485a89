"""Adan: Nesterov-style momentum from gradient differences, with a proximal or decoupled weight decay."""

from __future__ import annotations

import numpy as np

from .._jit import kernel
from ._generate import elementwise
from ._pieces import fma, lerp, lerp_constants, sqrt


def adan_constants(
    dt,
    lr,
    beta1,
    beta2,
    beta3,
    eps,
    weight_decay,
    bias_correction1,
    bias_correction2,
    bias_correction3_sqrt,
    clip,
    weight_decouple,
    maximize,
    first_step,
):
    """The loop constants of :func:`adan_step`, each formed in float64 and cast once to ``dt``."""
    use_decay = weight_decay != 0
    return (
        lerp_constants(dt, 1 - beta1)
        + lerp_constants(dt, 1 - beta2)
        + (
            dt(beta2),
            dt(beta3),
            dt(1 - beta3),
            dt(bias_correction3_sqrt),
            dt(eps),
            dt(-(lr / bias_correction1)),
            dt(-(lr * beta2 / bias_correction2)),
            dt(1 - lr * weight_decay),
            dt(1 + lr * weight_decay),
            use_decay and weight_decouple,
            use_decay and not weight_decouple,
            dt(clip),
            maximize,
            first_step,
        )
    )


@elementwise(adan_constants, updates=("param", "exp_avg", "exp_avg_sq", "exp_avg_diff", "previous_grad"))
def adan_step(c, param, grad, exp_avg, exp_avg_sq, exp_avg_diff, previous_grad):
    r"""One Adan step over flat arrays, in place (``pytorch_optimizer.Adan``'s rule).

    For every element, with :math:`g` the gradient (negated if ``maximize``) times
    the global clipping factor ``clip`` (1 without clipping)::

        r     <- -g_prev                        (first_step: r = -clip * raw gradient, so
                                                 d = 0, or 2 g with maximize, as the reference)
        d     <- g + g_prev                     (g_prev holds the previous step's -g)
        m     <- lerp(m, g, 1 - beta1)
        n     <- lerp(n, d, 1 - beta2)          (exp_avg_diff)
        u     <- beta2 * d + g
        v     <- beta3 * v + (1 - beta3) * u * u
        denom <- sqrt(v) / sqrt(1 - beta3**t) + eps
        param <- param * (1 - lr * weight_decay)            (weight_decay != 0, weight_decouple)
        param <- param - (lr / (1 - beta1**t)) * m / denom
        param <- param - (lr * beta2 / (1 - beta2**t)) * n / denom
        param <- param / (1 + lr * weight_decay)            (weight_decay != 0, not weight_decouple)
        g_prev <- -g

    ``bias_correction1 = 1 - beta1**t``, ``bias_correction2 = 1 - beta2**t`` and
    ``bias_correction3_sqrt = sqrt(1 - beta3**t)`` at step ``t`` (counted from 1) come
    from the caller (:func:`adan_scalars`). The arithmetic follows the reference operation
    by operation (``lerp_``, ``mul_``/``add_``, ``mul_``/``addcmul_``, ``sqrt``/``div``/``add_``,
    two ``addcdiv_``, ``div_``).

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype
        ``param`` is updated in place; ``grad`` is only read.
    exp_avg, exp_avg_sq, exp_avg_diff : 1-D arrays
        ``m``, ``v``, ``n``, updated in place.
    previous_grad : 1-D array
        The negated (clipped) gradient of the previous step, updated in place; not read
        when ``first_step``.
    lr, beta1, beta2, beta3, eps, weight_decay : float
    bias_correction1, bias_correction2, bias_correction3_sqrt : float
    clip : float
        The global gradient-norm clipping factor (``min(1, max_grad_norm / (norm + eps))``), or 1.
    weight_decouple, maximize, first_step : bool

    References
    ----------
    Xie et al., "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep
    Models", IEEE TPAMI 2024 (arXiv:2208.06677).
    """
    w1, small1, c1, w2, small2, c2, beta2, beta3, keep3, bc3_sqrt, eps = c[:11]
    neg_step, neg_diff_step, decay, prox, decoupled, coupled, clip, maximize, first_step = c[11:]
    g = -grad if maximize else grad
    g = g * clip
    prev = (g if maximize else -g) if first_step else previous_grad
    d = prev + g
    m = lerp(exp_avg, g, w1, small1, c1)
    n = lerp(exp_avg_diff, d, w2, small2, c2)
    u = d * beta2 + g
    v = fma(keep3 * u, u, exp_avg_sq * beta3)
    denom = sqrt(v) / bc3_sqrt + eps
    p = param * decay if decoupled else param
    p = p + (neg_step * m) / denom
    p = p + (neg_diff_step * n) / denom
    if coupled:
        p = p / prox
    return p, m, v, n, -g


@kernel(parallel=False)
def adan_scalars(beta1, beta2, beta3, step):
    """``(bias_correction1, bias_correction2, bias_correction3_sqrt)`` for :func:`adan_step` at step ``step``.

    ``1 - beta1**t``, ``1 - beta2**t`` and ``sqrt(1 - beta3**t)``, in float64 (``t`` from 1).
    """
    t = np.float64(step)
    return (
        1.0 - np.float64(beta1) ** t,
        1.0 - np.float64(beta2) ** t,
        np.sqrt(1.0 - np.float64(beta3) ** t),
    )
