"""CUDA twin of :mod:`numopt.kernels.averaging` (SWA / EMA weight averaging)."""

from __future__ import annotations

from numba import cuda

from .. import averaging as _cpu
from ._launch import elementwise


@elementwise(_cpu.lerp_)
def lerp_(averaged, current, weight):
    """Grid-stride loop; per element exactly :func:`numopt.kernels.averaging.lerp_`."""
    n = averaged.size
    one = averaged.dtype.type(1)
    half = one / (one + one)
    small = abs(weight) < half
    rest = one - weight
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        a = averaged[i]
        d = current[i] - a
        if small:
            averaged[i] = a + weight * d
        else:
            averaged[i] = current[i] - d * rest


@elementwise(_cpu.running_mean_)
def running_mean_(averaged, current, count):
    """Grid-stride loop; per element exactly :func:`numopt.kernels.averaging.running_mean_`."""
    n = averaged.size
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        a = averaged[i]
        averaged[i] = a + (current[i] - a) / count
