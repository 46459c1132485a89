"""RAdam: Adam with a rectified adaptive learning rate."""

from __future__ import annotations

import numpy as np

from .._jit import kernel
from ._generate import elementwise
from ._pieces import MOMENTS, moments, moments_constants, sqrt


def radam_constants(
    dt,
    lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    bias_correction1,
    bias_correction2_sqrt,
    rect,
    maximize,
    decoupled_weight_decay,
):
    """The loop constants of :func:`radam_step`, each formed in float64 and cast once to ``dt``."""
    return moments_constants(dt, lr, beta1, beta2, weight_decay, decoupled_weight_decay) + (
        dt(eps),
        dt(lr),
        dt(bias_correction1),
        dt(bias_correction2_sqrt),
        dt(rect),
        rect > 0,
        dt(1),
        maximize,
    )


@elementwise(radam_constants, updates=("param", "exp_avg", "exp_avg_sq"))
def radam_step(c, param, grad, exp_avg, exp_avg_sq):
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
    maximize, decoupled_weight_decay : bool
    """
    eps, lr, bc1, bc2_sqrt, rect, rectified, one, maximize = c[MOMENTS:]
    p, g, m, v = moments(param, grad, exp_avg, exp_avg_sq, maximize, c)
    u = (m / bc1) * lr
    if rectified:
        u = (u * ((one / (sqrt(v) + eps)) * bc2_sqrt)) * rect
    return p - u, m, v


@kernel(parallel=False)
def radam_scalars(beta1, beta2, step):
    """``(bias_correction1, bias_correction2_sqrt, rect)`` for :func:`radam_step` at step ``step`` (from 1).

    ``rect`` is RAdam's variance rectification term, 0 while the variance is not
    tractable (``rho_t <= 5``: the kernel then takes a plain momentum step).
    """
    t = np.float64(step)
    b1 = np.float64(beta1)
    b2 = np.float64(beta2)
    bias_correction1 = 1.0 - b1**t
    bias_correction2 = 1.0 - b2**t
    rho_inf = 2.0 / (1.0 - b2) - 1.0
    rho_t = rho_inf - 2.0 * t * (b2**t) / bias_correction2
    rect = 0.0
    if rho_t > 5.0:
        rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)) ** 0.5
    return bias_correction1, bias_correction2**0.5, rect
