"""CUDA twin of :mod:`numopt.kernels.rprop`."""

from __future__ import annotations

from numba import cuda

from .. import rprop as _cpu
from ._launch import elementwise


@elementwise(_cpu.rprop_step)
def rprop_step(param, grad, prev, step_size, lr, etaminus, etaplus, step_size_min, step_size_max, maximize, first_step):
    """Grid-stride loop; per element exactly :func:`numopt.kernels.rprop.rprop_step`."""
    n = param.size
    zero = param.dtype.type(0)
    one = param.dtype.type(1)
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        g = grad[i]
        if maximize:
            g = -g
        prod = g * prev[i]
        s = lr if first_step else step_size[i]
        if prod > zero:
            s = s * etaplus
        elif prod < zero:
            s = s * etaminus
            g = zero
        if s < step_size_min:
            s = step_size_min
        if s > step_size_max:
            s = step_size_max
        step_size[i] = s
        if g > zero:
            sign = one
        elif g < zero:
            sign = -one
        else:
            sign = zero
        param[i] = param[i] - sign * s
        prev[i] = g
