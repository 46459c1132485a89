"""CUDA twin of :mod:`numopt.kernels.rmsprop`."""

from __future__ import annotations

from numba import cuda

from .. import rmsprop as _cpu
from ._launch import elementwise, sqrt


@elementwise(_cpu.rmsprop_step)
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
    """Grid-stride loop; per element exactly :func:`numopt.kernels.rmsprop.rmsprop_step`."""
    n = param.size
    one = param.dtype.type(1)
    half = param.dtype.type(0.5)
    use_wd = weight_decay != 0
    use_momentum = momentum > 0
    neg_lr = -lr
    small_weight = abs(one_minus_alpha) < half
    complement = one - one_minus_alpha
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
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
            avg = sqrt(sa - ga * ga) + eps
        else:
            avg = sqrt(sa) + eps
        if use_momentum:
            b = momentum_buffer[i] * momentum + g / avg
            momentum_buffer[i] = b
            param[i] = param[i] + neg_lr * b
        else:
            param[i] = param[i] + (neg_lr * g) / avg
