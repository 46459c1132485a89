"""CUDA twin of :mod:`numopt.kernels.sgd`."""

from __future__ import annotations

from numba import cuda

from .. import sgd as _cpu
from ._launch import elementwise


@elementwise(_cpu.sgd_step)
def sgd_step(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, nesterov, maximize, first_step):
    """Grid-stride loop; per element exactly :func:`numopt.kernels.sgd.sgd_step`."""
    n = param.size
    dt = param.dtype.type
    lr_ = dt(lr)
    mom = dt(momentum)
    keep = dt(1 - dampening)
    wd = dt(weight_decay)
    use_momentum = momentum != 0
    use_wd = weight_decay != 0
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        g = grad[i]
        if maximize:
            g = -g
        if use_wd:
            g = g + wd * param[i]
        if use_momentum:
            if first_step:
                b = g
            else:
                b = mom * momentum_buffer[i] + keep * g
            momentum_buffer[i] = b
            if nesterov:
                g = g + mom * b
            else:
                g = b
        param[i] = param[i] - lr_ * g
