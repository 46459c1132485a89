"""RAdam: Adam with a rectified adaptive learning rate."""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import kernel


@kernel
def radam_step(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    bias_correction1,
    bias_correction2_sqrt,
    rect,
    decoupled_weight_decay,
    maximize,
):
    r"""One RAdam step over flat arrays, in place (torch.optim.RAdam's rule).

    For every element, with :math:`g` the gradient (negated if ``maximize``)::

        param <- param * (1 - lr * weight_decay)     (weight_decay != 0, decoupled)
        g     <- g + weight_decay * param            (weight_decay != 0, coupled)
        m     <- lerp(m, g, 1 - beta1)               (= beta1 * m + (1 - beta1) * g)
        v     <- beta2 * v + (1 - beta2) * g * g
        param <- param - (m / bias_correction1) * lr * (bias_correction2_sqrt / (sqrt(v) + eps)) * rect
                                                     (rect > 0: the variance is tractable)
        param <- param - (m / bias_correction1) * lr (rect == 0: momentum step only)

    The caller computes, at step ``t`` (from 1), in float64::

        bias_correction1      = 1 - beta1**t
        bias_correction2_sqrt = sqrt(1 - beta2**t)
        rho_inf = 2 / (1 - beta2) - 1
        rho_t   = rho_inf - 2 * t * beta2**t / (1 - beta2**t)
        rect    = sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
                  if rho_t > 5, else 0

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype
        ``param`` is updated in place; ``grad`` is only read.
    exp_avg, exp_avg_sq : 1-D arrays
        First and second moment estimates ``m``, ``v``, updated in place.
    lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2_sqrt, rect : float
        Float scalars, best given as Python floats (float64): the kernel forms
        torch's derived scalars (``1 - beta1``, ``1 - beta2``, ``1 - lr * weight_decay``)
        in float64, then casts each once to the arrays' dtype, so a float32 loop
        stays float32 and matches torch's rounding.
    decoupled_weight_decay, maximize : bool
    """
    n = param.size
    # Derived scalars are formed in float64 from the arguments, as torch forms them from
    # Python floats, then each is cast once to the arrays' dtype for the loop.
    dt = param.dtype.type
    one = dt(1)
    half = one / dt(2)
    w1 = dt(1 - beta1)  # lerp weight; torch's lerp picks its formula by the weight's size
    small_w1 = abs(w1) < half
    w1c = one - w1
    b2 = dt(beta2)
    keep2 = dt(1 - beta2)
    eps_ = dt(eps)
    wd = dt(weight_decay)
    lr_ = dt(lr)
    bc1 = dt(bias_correction1)
    bc2_sqrt = dt(bias_correction2_sqrt)
    rect_ = dt(rect)
    rectified = rect > 0
    decay = dt(1 - lr * weight_decay)
    use_wd = weight_decay != 0
    coupled = use_wd and not decoupled_weight_decay
    decoupled = use_wd and decoupled_weight_decay
    for i in prange(n):
        p = param[i]
        g = grad[i]
        if maximize:
            g = -g
        if decoupled:
            p = p * decay
        elif coupled:
            g = g + wd * p
        m = exp_avg[i]
        if small_w1:
            m = m + w1 * (g - m)
        else:
            m = g - (g - m) * w1c
        exp_avg[i] = m
        v = exp_avg_sq[i] * b2
        v = v + (keep2 * g) * g
        exp_avg_sq[i] = v
        u = (m / bc1) * lr_
        if rectified:
            u = (u * ((one / (np.sqrt(v) + eps_)) * bc2_sqrt)) * rect_
        param[i] = p - u
