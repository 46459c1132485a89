"""CUDA twin of :mod:`numopt.kernels.adamax`."""

from __future__ import annotations

from numba import cuda

from .. import adamax as _cpu
from ._launch import elementwise


@elementwise(_cpu.adamax_step)
def adamax_step(param, grad, exp_avg, exp_inf, lr, beta1, beta2, eps, weight_decay, bias_correction, maximize):
    """Grid-stride loop; per element exactly :func:`numopt.kernels.adamax.adamax_step`."""
    n = param.size
    dt = param.dtype.type
    one = dt(1)
    half = one / dt(2)
    w1 = dt(1 - beta1)
    small_w1 = abs(w1) < half
    w1c = one - w1
    b2 = dt(beta2)
    eps_ = dt(eps)
    wd = dt(weight_decay)
    neg_clr = dt(-(lr / bias_correction))
    use_wd = weight_decay != 0
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        p = param[i]
        g = grad[i]
        if maximize:
            g = -g
        if use_wd:
            g = g + wd * p
        m = exp_avg[i]
        if small_w1:
            m = m + w1 * (g - m)
        else:
            m = g - (g - m) * w1c
        exp_avg[i] = m
        u = exp_inf[i] * b2
        a = abs(g) + eps_
        if a > u or a != a:
            u = a
        exp_inf[i] = u
        param[i] = p + (neg_clr * m) / u
