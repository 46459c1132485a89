"""CUDA twin of :mod:`numopt.kernels.adagrad`."""

from __future__ import annotations

from numba import cuda

from .. import adagrad as _cpu
from ._launch import elementwise, sqrt


@elementwise(_cpu.adagrad_step)
def adagrad_step(param, grad, state_sum, neg_clr, eps, weight_decay, maximize):
    """Grid-stride loop; per element exactly :func:`numopt.kernels.adagrad.adagrad_step`."""
    n = param.size
    use_wd = weight_decay != 0
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        g = grad[i]
        if maximize:
            g = -g
        if use_wd:
            g = g + weight_decay * param[i]
        s = state_sum[i] + g * g
        state_sum[i] = s
        param[i] = param[i] + (neg_clr * g) / (sqrt(s) + eps)
