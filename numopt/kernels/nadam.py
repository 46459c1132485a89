"""NAdam: Adam with Nesterov momentum and a momentum-decay schedule."""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import kernel


@kernel
def nadam_step(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    bias_correction2,
    grad_step_size,
    exp_avg_step_size,
    decoupled_weight_decay,
    maximize,
):
    r"""One NAdam step over flat arrays, in place (torch.optim.NAdam's rule).

    For every element, with :math:`g` the gradient (negated if ``maximize``)::

        param <- param * (1 - lr * weight_decay)     (weight_decay != 0, decoupled)
        g     <- g + weight_decay * param            (weight_decay != 0, coupled)
        m     <- lerp(m, g, 1 - beta1)               (= beta1 * m + (1 - beta1) * g)
        v     <- beta2 * v + (1 - beta2) * g * g
        denom <- sqrt(v / bias_correction2) + eps
        param <- param - grad_step_size * g / denom
        param <- param - exp_avg_step_size * m / denom

    The caller computes, at step ``t`` (from 1), in float64 and with
    ``psi = momentum_decay``::

        bias_correction2  = 1 - beta2**t
        mu_t              = beta1 * (1 - 0.5 * 0.96**(t * psi))
        mu_product_t      = mu_product_{t-1} * mu_t          (per-parameter state, starts at 1)
        grad_step_size    = lr * (1 - mu_t) / (1 - mu_product_t)
        exp_avg_step_size = lr * mu_{t+1} / (1 - mu_product_t * mu_{t+1})

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype
        ``param`` is updated in place; ``grad`` is only read.
    exp_avg, exp_avg_sq : 1-D arrays
        First and second moment estimates ``m``, ``v``, updated in place.
    lr, beta1, beta2, eps, weight_decay, bias_correction2, grad_step_size, exp_avg_step_size : float
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
    bc2 = dt(bias_correction2)
    neg_grad_step = dt(-grad_step_size)
    neg_avg_step = dt(-exp_avg_step_size)
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
        denom = np.sqrt(v / bc2) + eps_
        p = p + (neg_grad_step * g) / denom
        param[i] = p + (neg_avg_step * m) / denom
