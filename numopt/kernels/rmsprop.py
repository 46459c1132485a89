"""RMSprop: gradients scaled by a running root mean square, optionally centered and with momentum."""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import kernel


@kernel
def rmsprop_step(
    param,
    grad,
    square_avg,
    grad_avg,
    momentum_buffer,
    lr,
    alpha,
    one_minus_alpha,
    eps,
    weight_decay,
    momentum,
    centered,
    maximize,
):
    r"""One RMSprop step over flat arrays, in place (torch.optim.RMSprop's rule).

    For every element, with :math:`g` the gradient (negated if ``maximize``)::

        g          <- g + weight_decay * param                  (if weight_decay != 0)
        square_avg <- alpha * square_avg + (1 - alpha) * g * g
        if centered:
            grad_avg <- grad_avg + (1 - alpha) * (g - grad_avg)   (torch's lerp)
            avg      <- sqrt(square_avg - grad_avg * grad_avg) + eps
        else:
            avg      <- sqrt(square_avg) + eps
        if momentum > 0:
            b     <- momentum * b + g / avg
            param <- param - lr * b
        else:
            param <- param - lr * g / avg

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype
        ``param`` is updated in place; ``grad`` is only read.
    square_avg : 1-D array
        Running average of squared gradients, updated in place.
    grad_avg : 1-D array
        Running average of gradients, updated in place; unused (may be empty) unless ``centered``.
    momentum_buffer : 1-D array
        Updated in place; unused (may be empty) unless ``momentum > 0``.
    lr, alpha, one_minus_alpha, eps, weight_decay, momentum : scalars of ``param``'s dtype
        ``one_minus_alpha`` is ``1 - alpha`` computed in float64 by the caller, then cast.
    centered, maximize : bool
    """
    n = param.size
    one = param.dtype.type(1)
    half = param.dtype.type(0.5)
    use_wd = weight_decay != 0
    use_momentum = momentum > 0
    neg_lr = -lr
    # torch's lerp: exact at both ends, with the weight or its complement as the multiplier
    small_weight = abs(one_minus_alpha) < half
    complement = one - one_minus_alpha
    for i in prange(n):
        g = grad[i]
        if maximize:
            g = -g
        if use_wd:
            g = g + weight_decay * param[i]
        sa = square_avg[i] * alpha + (one_minus_alpha * g) * g
        square_avg[i] = sa
        if centered:
            ga = grad_avg[i]
            if small_weight:
                ga = ga + one_minus_alpha * (g - ga)
            else:
                ga = g - (g - ga) * complement
            grad_avg[i] = ga
            avg = np.sqrt(sa - ga * ga) + eps
        else:
            avg = np.sqrt(sa) + eps
        if use_momentum:
            b = momentum_buffer[i] * momentum + g / avg
            momentum_buffer[i] = b
            param[i] = param[i] + neg_lr * b
        else:
            param[i] = param[i] + (neg_lr * g) / avg
