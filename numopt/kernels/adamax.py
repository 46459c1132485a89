"""Adamax: Adam with the infinity norm in place of the second moment."""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import kernel


@kernel
def adamax_step(param, grad, exp_avg, exp_inf, lr, beta1, beta2, eps, weight_decay, bias_correction, maximize):
    r"""One Adamax step over flat arrays, in place (torch.optim.Adamax's rule).

    For every element, with :math:`g` the gradient (negated if ``maximize``)::

        g     <- g + weight_decay * param            (weight_decay != 0)
        m     <- lerp(m, g, 1 - beta1)               (= beta1 * m + (1 - beta1) * g)
        u     <- max(beta2 * u, |g| + eps)           (NaN propagates)
        param <- param - (lr / bias_correction) * m / u

    with ``bias_correction = 1 - beta1**t`` at step ``t`` (counted from 1),
    computed by the caller.

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype
        ``param`` is updated in place; ``grad`` is only read.
    exp_avg, exp_inf : 1-D arrays
        First moment ``m`` and exponentially weighted infinity norm ``u``, updated in place.
    lr, beta1, beta2, eps, weight_decay, bias_correction : float
        Float scalars, best given as Python floats (float64): the kernel forms
        torch's derived scalars (``1 - beta1``, ``lr / bias_correction``) in
        float64, then casts each once to the arrays' dtype, so a float32 loop
        stays float32 and matches torch's rounding.
    maximize : bool
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
    eps_ = dt(eps)
    wd = dt(weight_decay)
    neg_clr = dt(-(lr / bias_correction))
    use_wd = weight_decay != 0
    for i in prange(n):
        p = param[i]
        g = grad[i]
        if maximize:
            g = -g
        if use_wd:
            g = g + wd * p
        m = exp_avg[i]
        if small_w1:
            m = m + w1 * (g - m)
        else:
            m = g - (g - m) * w1c
        exp_avg[i] = m
        u = exp_inf[i] * b2
        a = np.abs(g) + eps_
        if a > u or a != a:  # torch.maximum: a NaN in either operand wins
            u = a
        exp_inf[i] = u
        param[i] = p + (neg_clr * m) / u
