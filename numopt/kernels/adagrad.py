"""Adagrad: per-element learning rates from the running sum of squared gradients."""

from __future__ import annotations

import numpy as np

from .._jit import kernel
from ._generate import elementwise
from ._pieces import fma, sqrt, weight_decay, weight_decay_constants


def adagrad_constants(dt, neg_clr, eps, weight_decay, maximize):
    """The loop constants of :func:`adagrad_step`, each cast once to ``dt``."""
    return weight_decay_constants(dt, 0.0, weight_decay, False) + (dt(neg_clr), dt(eps), maximize)


@elementwise(adagrad_constants, updates=("param", "sum"))
def adagrad_step(c, param, grad, sum):
    r"""One Adagrad step over flat arrays, in place (torch.optim.Adagrad's rule).

    For every element, with :math:`g` the gradient (negated if ``maximize``)::

        g     <- g + weight_decay * param                 (if weight_decay != 0)
        sum   <- sum + g * g
        param <- param + (neg_clr * g) / (sqrt(sum) + eps)

    where ``neg_clr = -lr / (1 + (step - 1) * lr_decay)`` is computed by the
    caller in float64 for the step being taken (the first step is ``step = 1``).

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype
        ``param`` is updated in place; ``grad`` is only read.
    sum : 1-D array
        The running sum of squared gradients, updated in place.
    neg_clr, eps, weight_decay : float
        float64 scalars (Python floats), each cast once to the arrays' dtype inside
        the kernel; ``neg_clr`` is the negated, decayed learning rate.
    maximize : bool
    """
    wd, decay, coupled, decoupled, neg_clr, eps, maximize = c
    g = -grad if maximize else grad
    p, g = weight_decay(param, g, wd, decay, coupled, decoupled)
    s = fma(g, g, sum)
    return p + (neg_clr * g) / (sqrt(s) + eps), s


@kernel(parallel=False)
def adagrad_scalars(lr, lr_decay, step):
    """``neg_clr = -lr / (1 + (t - 1) * lr_decay)`` for :func:`adagrad_step` at step ``step`` (from 1), in float64."""
    return -(np.float64(lr) / (1.0 + (np.float64(step) - 1.0) * np.float64(lr_decay)))
