"""Adadelta: step sizes from running averages of squared gradients and squared updates."""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import kernel


@kernel
def adadelta_step(param, grad, square_avg, acc_delta, lr, rho, one_minus_rho, eps, weight_decay, maximize):
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
    lr, rho, one_minus_rho, eps, weight_decay : scalars of ``param``'s dtype
        ``one_minus_rho`` is ``1 - rho`` computed in float64 by the caller, then cast.
    maximize : bool
    """
    n = param.size
    use_wd = weight_decay != 0
    for i in prange(n):
        g = grad[i]
        if maximize:
            g = -g
        if use_wd:
            g = g + weight_decay * param[i]
        sa = square_avg[i] * rho + (one_minus_rho * g) * g
        square_avg[i] = sa
        delta = (np.sqrt(acc_delta[i] + eps) / np.sqrt(sa + eps)) * g
        acc_delta[i] = acc_delta[i] * rho + (one_minus_rho * delta) * delta
        param[i] = param[i] - lr * delta
