"""CUDA twin of :mod:`numopt.kernels.adadelta`."""

from __future__ import annotations

from numba import cuda

from .. import adadelta as _cpu
from ._launch import elementwise, sqrt


@elementwise(_cpu.adadelta_step)
def adadelta_step(param, grad, square_avg, acc_delta, lr, rho, one_minus_rho, eps, weight_decay, maximize):
    """Grid-stride loop; per element exactly :func:`numopt.kernels.adadelta.adadelta_step`."""
    n = param.size
    use_wd = weight_decay != 0
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        g = grad[i]
        if maximize:
            g = -g
        if use_wd:
            g = g + weight_decay * param[i]
        sa = square_avg[i] * rho + (one_minus_rho * g) * g
        square_avg[i] = sa
        delta = (sqrt(acc_delta[i] + eps) / sqrt(sa + eps)) * g
        acc_delta[i] = acc_delta[i] * rho + (one_minus_rho * delta) * delta
        param[i] = param[i] - lr * delta
