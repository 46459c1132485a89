"""CUDA twin of :mod:`numopt.kernels.asgd`."""

from __future__ import annotations

from numba import cuda

from .. import asgd as _cpu
from ._launch import elementwise


@elementwise(_cpu.asgd_step)
def asgd_step(param, grad, ax, eta, decay, mu, weight_decay, maximize):
    """Grid-stride loop; per element exactly :func:`numopt.kernels.asgd.asgd_step`."""
    n = param.size
    dt = param.dtype.type
    eta_ = dt(eta)
    decay_ = dt(decay)
    mu_ = dt(mu)
    wd = dt(weight_decay)
    average = mu_ != dt(1)
    use_wd = weight_decay != 0
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
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
