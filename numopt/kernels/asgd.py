"""Averaged stochastic gradient descent."""

from __future__ import annotations

import numpy as np

from .._jit import kernel
from .._scalar_state import fill_as_float32
from ._generate import elementwise
from ._pieces import fma, weight_decay, weight_decay_constants


def asgd_constants(dt, eta, decay, mu, weight_decay, maximize):
    """The loop constants of :func:`asgd_step`, each cast once to ``dt``."""
    return weight_decay_constants(dt, 0.0, weight_decay, False) + (
        dt(eta),
        dt(decay),
        dt(mu),
        dt(mu) != dt(1),
        maximize,
    )


@elementwise(asgd_constants, updates=("param", "ax"))
def asgd_step(c, param, grad, ax):
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
        float64 scalars (Python floats), each cast once to the arrays' dtype inside the kernel. The
        caller computes ``decay = 1 - lambd * eta`` and, after the step,
        the next ``eta = lr / (1 + lambd * lr * t) ** alpha`` and ``mu = 1 / max(1, t - t0)``.
    maximize : bool
    """
    wd, unused, coupled, decoupled, eta, decay, mu, average, maximize = c
    g = -grad if maximize else grad
    p, g = weight_decay(param, g, wd, unused, coupled, decoupled)
    p = p * decay
    p = fma(-eta, g, p)
    a = ax + (p - ax) * mu if average else p
    return p, a


@kernel(parallel=False)
def asgd_scalars(lr, lambd, alpha, t0, step):
    """``(eta, mu)`` for :func:`asgd_step`'s step ``step + 1``, after step ``step`` (0 before the first step).

    Both are rounded to float32, as torch keeps them: ``eta = lr`` and ``mu = 1``
    before the first step, then ``eta = lr / (1 + lambd * lr * t) ** alpha`` and
    ``mu = 1 / max(1, t - t0)``. The kernel also takes ``decay = 1 - lambd * eta``.
    """
    t = np.float64(step)
    lr_ = np.float64(lr)
    if t == 0.0:
        return np.float64(np.float32(lr_)), 1.0
    eta = lr_ / ((1.0 + np.float64(lambd) * lr_ * t) ** np.float64(alpha))
    mu = 1.0 / max(1.0, t - np.float64(t0))
    return np.float64(np.float32(eta)), np.float64(np.float32(mu))


@kernel(parallel=False)
def asgd_advance(lr, lambd, alpha, t0, step, etas, mus):
    """Set every element of ``etas`` and ``mus`` (float64 arrays, in place) to :func:`asgd_scalars`'s
    ``(eta, mu)`` after step ``step``: the optimizer class's and ``numopt.functional.step``'s update
    of ASGD's scalar state."""
    eta, mu = asgd_scalars(lr, lambd, alpha, t0, step)
    fill_as_float32(etas, eta, mus, mu)
