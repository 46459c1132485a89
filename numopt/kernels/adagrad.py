"""Adagrad: per-element learning rates from the running sum of squared gradients."""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import kernel


@kernel
def adagrad_step(param, grad, state_sum, neg_clr, eps, weight_decay, maximize):
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
    state_sum : 1-D array
        The running sum of squared gradients, updated in place.
    neg_clr, eps, weight_decay : scalars of ``param``'s dtype
        ``neg_clr`` is the negated, decayed learning rate.
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
        s = state_sum[i] + g * g
        state_sum[i] = s
        param[i] = param[i] + (neg_clr * g) / (np.sqrt(s) + eps)
