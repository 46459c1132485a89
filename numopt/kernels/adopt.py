"""ADOPT: Adam-like updates normalized by the previous second moment, with a clipped normalized gradient."""

from __future__ import annotations

from ._generate import elementwise
from ._pieces import fma, lerp, lerp_constants, sqrt, square_ema, weight_decay, weight_decay_constants


def adopt_constants(dt, lr, beta1, beta2, eps, clip, weight_decay, weight_decouple, fixed_decay, first_step, maximize):
    """The loop constants of :func:`adopt_step`, each formed in float64 and cast once to ``dt``."""
    decay_lr = 1.0 if fixed_decay else lr  # fixed_decay: the decoupled decay ignores the learning rate
    return (
        weight_decay_constants(dt, decay_lr, weight_decay, weight_decouple)
        + lerp_constants(dt, 1 - beta1)
        + (dt(beta2), dt(1 - beta2), dt(eps), dt(-clip), dt(clip), dt(-lr), first_step, maximize)
    )


@elementwise(adopt_constants, updates=("param", "exp_avg", "exp_avg_sq"))
def adopt_step(c, param, grad, exp_avg, exp_avg_sq):
    r"""One ADOPT step over flat arrays, in place (``pytorch_optimizer.ADOPT``'s rule).

    For every element, with :math:`g` the gradient (negated if ``maximize``)::

        param <- param * (1 - lr * weight_decay)     (weight_decay != 0, weight_decouple;
                                                      1 - weight_decay with fixed_decay)
        g     <- g + weight_decay * param            (weight_decay != 0, not weight_decouple)
        first_step:
            v <- v + g * g                           (nothing else moves)
        later steps:
            n     <- g / max(sqrt(v), eps)           (normalized by the PREVIOUS second moment)
            n     <- min(max(n, -clip), clip)
            m     <- lerp(m, n, 1 - beta1)
            param <- param - lr * m
            v     <- beta2 * v + (1 - beta2) * g * g

    ``clip`` is the caller's clip value for this step (the reference's default is
    ``step ** 0.25``); ``inf`` turns clipping off. NaN propagates through the clamps, as
    in torch's ``clamp``/``maximum``/``minimum``.

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype
        ``param`` is updated in place; ``grad`` is only read.
    exp_avg, exp_avg_sq : 1-D arrays
        The momentum of the normalized gradient ``m`` and the second moment ``v``, updated in place.
    lr, beta1, beta2, eps, clip, weight_decay : float
        float64 scalars (Python floats), each cast once to the arrays' dtype inside the kernel.
    weight_decouple, fixed_decay, first_step, maximize : bool
        ``first_step``: the optimizer's first step (its group step count is 1), which only
        initializes ``v``.

    References
    ----------
    Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal Rate",
    NeurIPS 2024.
    """
    wd, decay, coupled, decoupled, w1, small1, c1, beta2, one_minus_beta2, eps, lo, hi, neg_lr, first, maximize = c
    g = -grad if maximize else grad
    p, g = weight_decay(param, g, wd, decay, coupled, decoupled)
    v = exp_avg_sq
    if first:
        return p, exp_avg, fma(g, g, v)
    d = sqrt(v)
    if d < eps:  # clamp(min=eps); NaN stays NaN
        d = eps
    n = g / d
    if n < lo:
        n = lo
    if n > hi:
        n = hi
    m = lerp(exp_avg, n, w1, small1, c1)
    return fma(neg_lr, m, p), m, square_ema(v, g, beta2, one_minus_beta2)
