"""Adam and AdamW (Adam with decoupled weight decay), with AMSGrad."""

from __future__ import annotations

import numpy as np

from .._jit import kernel
from ._generate import elementwise
from ._pieces import MOMENTS, moments, moments_constants, sqrt


def adam_constants(
    dt,
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
    """The loop constants of :func:`adam_step`, each formed in float64 and cast once to ``dt``."""
    return moments_constants(dt, lr, beta1, beta2, weight_decay, decoupled_weight_decay) + (
        dt(eps),
        dt(bias_correction2_sqrt),
        dt(-(lr / bias_correction1)),
        amsgrad,
        maximize,
    )


@elementwise(adam_constants, updates=("param", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"), optional=("max_exp_avg_sq",))
def adam_step(c, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq):
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
        float64 scalars (Python floats): the kernel forms torch's derived scalars
        (``1 - beta1``, ``1 - beta2``, ``lr / bias_correction1``, ``1 - lr * weight_decay``)
        in float64, then casts each once to the arrays' dtype, so a float32 loop
        stays float32 and matches torch's rounding.
    amsgrad, maximize : bool
    decoupled_weight_decay : bool, default False
        Decay the parameter directly (AdamW) instead of adding an L2 term to the gradient.
    """
    eps, bc2_sqrt, neg_step, amsgrad, maximize = c[MOMENTS:]
    p, g, m, v = moments(param, grad, exp_avg, exp_avg_sq, maximize, c)
    vmax = max_exp_avg_sq
    if amsgrad:
        if v > vmax or v != v:  # torch.maximum: a NaN in either operand wins
            vmax = v
        denom = sqrt(vmax) / bc2_sqrt + eps
    else:
        denom = sqrt(v) / bc2_sqrt + eps
    return p + (neg_step * m) / denom, m, v, vmax


@kernel(parallel=False)
def adam_scalars(beta1, beta2, step):
    """``(bias_correction1, bias_correction2_sqrt)`` for :func:`adam_step` at step ``step`` (from 1).

    ``1 - beta1**t`` and ``sqrt(1 - beta2**t)``, in float64.
    """
    t = np.float64(step)
    return 1.0 - np.float64(beta1) ** t, (1.0 - np.float64(beta2) ** t) ** 0.5
