"""Adam and AdamW (Adam with decoupled weight decay), with AMSGrad."""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import kernel


@kernel
def adam_step(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    max_exp_avg_sq,
    lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    bias_correction1,
    bias_correction2_sqrt,
    amsgrad,
    maximize,
    decoupled_weight_decay=False,
):
    r"""One Adam step over flat arrays, in place (torch.optim.Adam's rule).

    For every element, with :math:`g` the gradient (negated if ``maximize``)::

        param <- param * (1 - lr * weight_decay)     (weight_decay != 0, decoupled: AdamW)
        g     <- g + weight_decay * param            (weight_decay != 0, coupled: L2 penalty)
        m     <- lerp(m, g, 1 - beta1)               (= beta1 * m + (1 - beta1) * g)
        v     <- beta2 * v + (1 - beta2) * g * g
        vmax  <- max(vmax, v)                        (amsgrad; NaN propagates)
        denom <- sqrt(vmax if amsgrad else v) / bias_correction2_sqrt + eps
        param <- param - (lr / bias_correction1) * m / denom

    with ``bias_correction1 = 1 - beta1**t`` and ``bias_correction2_sqrt =
    sqrt(1 - beta2**t)`` at step ``t`` (counted from 1), computed by the caller.
    The arithmetic follows torch's single-tensor path operation by operation
    (``lerp_``, ``mul_``/``addcmul_``, ``sqrt``/``div``/``add_``, ``addcdiv_``).

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype
        ``param`` is updated in place; ``grad`` is only read.
    exp_avg, exp_avg_sq : 1-D arrays
        First and second moment estimates ``m``, ``v``, updated in place.
    max_exp_avg_sq : 1-D array
        Running maximum ``vmax`` of ``v``, updated in place when ``amsgrad``;
        unused (may be empty) otherwise.
    lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2_sqrt : float
        Float scalars, best given as Python floats (float64): the kernel forms
        torch's derived scalars (``1 - beta1``, ``1 - beta2``, ``lr / bias_correction1``,
        ``1 - lr * weight_decay``) in float64, then casts each once to the arrays'
        dtype, so a float32 loop stays float32 and matches torch's rounding.
    amsgrad, maximize : bool
    decoupled_weight_decay : bool, default False
        Decay the parameter directly (AdamW) instead of adding an L2 term to the gradient.
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
    bc2_sqrt = dt(bias_correction2_sqrt)
    neg_step = dt(-(lr / bias_correction1))
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
        if amsgrad:
            vm = max_exp_avg_sq[i]
            if v > vm or v != v:  # torch.maximum: a NaN in either operand wins
                vm = v
            max_exp_avg_sq[i] = vm
            v = vm
        denom = np.sqrt(v) / bc2_sqrt + eps_
        param[i] = p + (neg_step * m) / denom
