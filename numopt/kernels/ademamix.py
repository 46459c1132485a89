"""AdEMAMix: Adam with a mixture of a fast and a slow exponential moving average of the gradient."""

from __future__ import annotations

import numpy as np

from .._jit import kernel
from ._generate import elementwise
from ._pieces import MOMENTS, fma, lerp, lerp_constants, moments, moments_constants, sqrt


def ademamix_constants(
    dt,
    lr,
    beta1,
    beta2,
    beta3_t,
    alpha_t,
    eps,
    weight_decay,
    bias_correction1,
    bias_correction2_sqrt,
    weight_decouple,
    fixed_decay,
    maximize,
):
    """The loop constants of :func:`ademamix_step`, each formed in float64 and cast once to ``dt``."""
    decay_lr = 1.0 if fixed_decay else lr  # moments' lr only scales the decoupled decay
    return (
        moments_constants(dt, decay_lr, beta1, beta2, weight_decay, weight_decouple)
        + lerp_constants(dt, 1 - beta3_t)
        + (dt(alpha_t), dt(eps), dt(bias_correction1), dt(bias_correction2_sqrt), dt(-lr), maximize)
    )


@elementwise(ademamix_constants, updates=("param", "exp_avg", "exp_avg_sq", "exp_avg_slow"))
def ademamix_step(c, param, grad, exp_avg, exp_avg_sq, exp_avg_slow):
    r"""One AdEMAMix step over flat arrays, in place (``pytorch_optimizer.AdEMAMix``'s rule).

    For every element, with :math:`g` the gradient (negated if ``maximize``)::

        param <- param * (1 - lr * weight_decay)     (weight_decay != 0, weight_decouple;
                                                      1 - weight_decay with fixed_decay)
        g     <- g + weight_decay * param            (weight_decay != 0, not weight_decouple)
        m     <- lerp(m, g, 1 - beta1)               (fast EMA)
        v     <- beta2 * v + (1 - beta2) * g * g
        s     <- lerp(s, g, 1 - beta3_t)             (slow EMA)
        denom <- sqrt(v) / bias_correction2_sqrt + eps
        param <- param - lr * (m / bias_correction1 + alpha_t * s) / denom

    with ``bias_correction1 = 1 - beta1**t``, ``bias_correction2_sqrt = sqrt(1 - beta2**t)``
    and the warm-up schedules ``alpha_t``, ``beta3_t`` at step ``t``, all computed by the
    caller in float64 (:func:`ademamix_scalars`). The slow EMA is not bias-corrected.

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype
        ``param`` is updated in place; ``grad`` is only read.
    exp_avg, exp_avg_sq, exp_avg_slow : 1-D arrays
        The fast EMA ``m``, the second moment ``v`` and the slow EMA ``s``, updated in place.
    lr, beta1, beta2, beta3_t, alpha_t, eps, weight_decay, bias_correction1, bias_correction2_sqrt : float
        float64 scalars (Python floats), each cast once to the arrays' dtype inside the kernel.
    weight_decouple, fixed_decay, maximize : bool

    References
    ----------
    Pagliardini, Ablin and Grangier, "The AdEMAMix Optimizer: Better, Faster, Older", ICLR 2025.
    """
    w3, small3, c3, alpha, eps, bc1, bc2_sqrt, neg_lr, maximize = c[MOMENTS:]
    p, g, m, v = moments(param, grad, exp_avg, exp_avg_sq, maximize, c)
    s = lerp(exp_avg_slow, g, w3, small3, c3)
    denom = sqrt(v) / bc2_sqrt + eps
    u = fma(alpha, s, m / bc1)
    return p + (neg_lr * u) / denom, m, v, s


@kernel(parallel=False)
def ademamix_scalars(beta1, beta2, beta3, alpha, t_alpha_beta3, step):
    """``(bias_correction1, bias_correction2_sqrt, alpha_t, beta3_t)`` for :func:`ademamix_step` at step ``step``.

    In float64, as the reference forms them: ``1 - beta1**t``, ``sqrt(1 - beta2**t)`` and, when
    ``t_alpha_beta3 > 0`` (the reference's ``t_alpha_beta3`` given; ``0`` stands for its ``None``,
    no warm-up), ``alpha_t = min(t * alpha / T, alpha)`` and ``beta3_t = min(exp(log(beta1) *
    log(beta3) / ((1 - t / T) * log(beta3) + (t / T) * log(beta1))), beta3)`` with ``T =
    t_alpha_beta3``; else ``alpha`` and ``beta3``. The warm-up needs ``beta1, beta3 > 0``.
    """
    t = np.float64(step)
    bc1 = 1.0 - np.float64(beta1) ** t
    bc2_sqrt = np.sqrt(1.0 - np.float64(beta2) ** t)
    alpha = np.float64(alpha)
    beta3 = np.float64(beta3)
    if t_alpha_beta3 <= 0:
        return bc1, bc2_sqrt, alpha, beta3
    big_t = np.float64(t_alpha_beta3)
    alpha_t = min(t * alpha / big_t, alpha)
    log_beta1, log_beta3 = np.log(np.float64(beta1)), np.log(beta3)
    frac = t / big_t
    beta3_t = min(np.exp(log_beta1 * log_beta3 / ((1.0 - frac) * log_beta3 + frac * log_beta1)), beta3)
    return bc1, bc2_sqrt, alpha_t, beta3_t
