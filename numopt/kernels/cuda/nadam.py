"""CUDA twin of :mod:`numopt.kernels.nadam`."""

from __future__ import annotations

from numba import cuda

from .. import nadam as _cpu
from ._launch import elementwise, sqrt


@elementwise(_cpu.nadam_step)
def nadam_step(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    bias_correction2,
    grad_step_size,
    exp_avg_step_size,
    decoupled_weight_decay,
    maximize,
):
    """Grid-stride loop; per element exactly :func:`numopt.kernels.nadam.nadam_step`."""
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
    bc2 = dt(bias_correction2)
    neg_grad_step = dt(-grad_step_size)
    neg_avg_step = dt(-exp_avg_step_size)
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
        denom = sqrt(v / bc2) + eps_
        p = p + (neg_grad_step * g) / denom
        param[i] = p + (neg_avg_step * m) / denom
