"""CUDA twin of :mod:`numopt.kernels.radam`."""

from __future__ import annotations

from numba import cuda

from .. import radam as _cpu
from ._launch import elementwise, sqrt


@elementwise(_cpu.radam_step)
def radam_step(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    bias_correction1,
    bias_correction2_sqrt,
    rect,
    decoupled_weight_decay,
    maximize,
):
    """Grid-stride loop; per element exactly :func:`numopt.kernels.radam.radam_step`."""
    n = param.size
    dt = param.dtype.type
    one = dt(1)
    half = one / dt(2)
    w1 = dt(1 - beta1)
    small_w1 = abs(w1) < half
    w1c = one - w1
    b2 = dt(beta2)
    keep2 = dt(1 - beta2)
    eps_ = dt(eps)
    wd = dt(weight_decay)
    lr_ = dt(lr)
    bc1 = dt(bias_correction1)
    bc2_sqrt = dt(bias_correction2_sqrt)
    rect_ = dt(rect)
    rectified = rect > 0
    decay = dt(1 - lr * weight_decay)
    use_wd = weight_decay != 0
    coupled = use_wd and not decoupled_weight_decay
    decoupled = use_wd and decoupled_weight_decay
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        p = param[i]
        g = grad[i]
        if maximize:
            g = -g
        if decoupled:
            p = p * decay
        elif coupled:
            g = g + wd * p
        m = exp_avg[i]
        if small_w1:
            m = m + w1 * (g - m)
        else:
            m = g - (g - m) * w1c
        exp_avg[i] = m
        v = exp_avg_sq[i] * b2
        v = v + (keep2 * g) * g
        exp_avg_sq[i] = v
        u = (m / bc1) * lr_
        if rectified:
            u = (u * ((one / (sqrt(v) + eps_)) * bc2_sqrt)) * rect_
        param[i] = p - u
