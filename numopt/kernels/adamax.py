"""Adamax: Adam with the infinity norm in place of the second moment."""

from __future__ import annotations

import numpy as np

from .._jit import kernel
from ._generate import elementwise
from ._pieces import lerp, lerp_constants, weight_decay, weight_decay_constants


def adamax_constants(dt, lr, beta1, beta2, eps, weight_decay, bias_correction, maximize):
    """The loop constants of :func:`adamax_step`, each formed in float64 and cast once to ``dt``."""
    return (
        weight_decay_constants(dt, lr, weight_decay, False)
        + lerp_constants(dt, 1 - beta1)
        + (dt(beta2), dt(eps), dt(-(lr / bias_correction)), maximize)
    )


@elementwise(adamax_constants, updates=("param", "exp_avg", "exp_inf"))
def adamax_step(c, param, grad, exp_avg, exp_inf):
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
    wd, decay, coupled, decoupled, w1, small_w1, w1c, beta2, eps, neg_clr, maximize = c
    g = -grad if maximize else grad
    p, g = weight_decay(param, g, wd, decay, coupled, decoupled)
    m = lerp(exp_avg, g, w1, small_w1, w1c)
    u = exp_inf * beta2
    a = abs(g) + eps
    if a > u or a != a:  # torch.maximum: a NaN in either operand wins
        u = a
    return p + (neg_clr * m) / u, m, u


@kernel(parallel=False)
def adamax_scalars(beta1, step):
    """``bias_correction = 1 - beta1**t`` for :func:`adamax_step` at step ``step`` (from 1), in float64."""
    return 1.0 - np.float64(beta1) ** np.float64(step)
