"""Adadelta: step sizes from running averages of squared gradients and squared updates."""

from __future__ import annotations

from ._generate import elementwise
from ._pieces import fma, sqrt, weight_decay, weight_decay_constants


def adadelta_constants(dt, lr, rho, eps, weight_decay, maximize):
    """The loop constants of :func:`adadelta_step` (``1 - rho`` formed in float64), each cast once to ``dt``."""
    return weight_decay_constants(dt, lr, weight_decay, False) + (dt(lr), dt(rho), dt(1 - rho), dt(eps), maximize)


@elementwise(adadelta_constants, updates=("param", "square_avg", "acc_delta"))
def adadelta_step(c, param, grad, square_avg, acc_delta):
    r"""One Adadelta step over flat arrays, in place (torch.optim.Adadelta's rule).

    For every element, with :math:`g` the gradient (negated if ``maximize``)::

        g          <- g + weight_decay * param                     (if weight_decay != 0)
        square_avg <- rho * square_avg + (1 - rho) * g * g
        delta      <- sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g
        acc_delta  <- rho * acc_delta + (1 - rho) * delta * delta
        param      <- param - lr * delta

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype
        ``param`` is updated in place; ``grad`` is only read.
    square_avg, acc_delta : 1-D arrays
        Running averages of squared gradients and squared updates, updated in place.
    lr, rho, eps, weight_decay : float
        float64 scalars (Python floats), each cast once to the arrays' dtype inside
        the kernel; ``1 - rho`` is formed in float64 first, as torch forms it.
    maximize : bool
    """
    wd, decay, coupled, decoupled, lr, rho, keep, eps, maximize = c
    g = -grad if maximize else grad
    p, g = weight_decay(param, g, wd, decay, coupled, decoupled)
    sa = fma(keep * g, g, square_avg * rho)
    delta = (sqrt(acc_delta + eps) / sqrt(sa + eps)) * g
    acc = fma(keep * delta, delta, acc_delta * rho)
    return fma(-lr, delta, p), sa, acc
