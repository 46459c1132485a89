"""Lion: sign updates from an interpolation of momentum and gradient."""

from __future__ import annotations

from ._generate import elementwise
from ._pieces import lerp, lerp_constants, sign, weight_decay, weight_decay_constants


def lion_constants(dt, lr, beta1, beta2, weight_decay, weight_decouple, fixed_decay, maximize):
    """The loop constants of :func:`lion_step`, each formed in float64 and cast once to ``dt``."""
    decay_lr = 1.0 if fixed_decay else lr  # fixed_decay: the decoupled decay ignores the learning rate
    return (
        weight_decay_constants(dt, decay_lr, weight_decay, weight_decouple)
        + lerp_constants(dt, 1 - beta1)
        + lerp_constants(dt, 1 - beta2)
        + (dt(-lr), dt(0), dt(1), maximize)
    )


@elementwise(lion_constants, updates=("param", "exp_avg"))
def lion_step(c, param, grad, exp_avg):
    r"""One Lion step over flat arrays, in place (``pytorch_optimizer.Lion``'s rule).

    For every element, with :math:`g` the gradient (negated if ``maximize``)::

        param <- param * (1 - lr * weight_decay)     (weight_decay != 0, weight_decouple;
                                                      1 - weight_decay with fixed_decay)
        g     <- g + weight_decay * param            (weight_decay != 0, not weight_decouple)
        u     <- sign(lerp(m, g, 1 - beta1))         (= sign(beta1 * m + (1 - beta1) * g))
        m     <- lerp(m, g, 1 - beta2)
        param <- param - lr * u

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype
        ``param`` is updated in place; ``grad`` is only read.
    exp_avg : 1-D array
        The momentum ``m``, updated in place.
    lr, beta1, beta2, weight_decay : float
        float64 scalars (Python floats), each cast once to the arrays' dtype inside the kernel.
    weight_decouple, fixed_decay, maximize : bool

    References
    ----------
    Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023.
    """
    wd, decay, coupled, decoupled, w1, small1, c1, w2, small2, c2, neg_lr, zero, one, maximize = c
    g = -grad if maximize else grad
    p, g = weight_decay(param, g, wd, decay, coupled, decoupled)
    u = sign(lerp(exp_avg, g, w1, small1, c1), zero, one)
    return p + neg_lr * u, lerp(exp_avg, g, w2, small2, c2)
