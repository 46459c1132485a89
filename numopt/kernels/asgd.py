"""Averaged stochastic gradient descent."""

from __future__ import annotations

from numba import prange

from .._jit import kernel


@kernel
def asgd_step(param, grad, ax, eta, decay, mu, weight_decay, maximize):
    r"""One ASGD step over flat arrays, in place (torch.optim.ASGD's rule, before eta/mu are updated).

    For every element, with :math:`g` the gradient (negated if ``maximize``)::

        g     <- g + weight_decay * param        (if weight_decay != 0)
        param <- param * decay - eta * g         (decay = 1 - lambd * eta)
        ax    <- ax + mu * (param - ax)          (if mu != 1)
        ax    <- param                           (if mu == 1)

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype
        ``param`` is updated in place; ``grad`` is only read.
    ax : 1-D array
        The running average of the parameter, updated in place.
    eta, decay, mu, weight_decay : float
        Best given as Python floats; each is cast once to the arrays' dtype. The
        caller computes ``decay = 1 - lambd * eta`` and, after the step,
        the next ``eta = lr / (1 + lambd * lr * t) ** alpha`` and ``mu = 1 / max(1, t - t0)``.
    maximize : bool
    """
    n = param.size
    dt = param.dtype.type
    eta_ = dt(eta)
    decay_ = dt(decay)
    mu_ = dt(mu)
    wd = dt(weight_decay)
    average = mu_ != dt(1)
    use_wd = weight_decay != 0
    for i in prange(n):
        g = grad[i]
        if maximize:
            g = -g
        p = param[i]
        if use_wd:
            g = g + wd * p
        p = p * decay_
        p = p - eta_ * g
        param[i] = p
        if average:
            ax[i] = ax[i] + (p - ax[i]) * mu_
        else:
            ax[i] = p
