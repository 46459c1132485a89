"""CUDA twins of the kernels with per-parameter or global reductions: Lamb's and LARS's trust-ratio
steps, Prodigy's first pass, and :func:`numopt.kernels.segments.segment_sum_squares`.

Each twin takes its CPU kernel's arguments (the run's block table and scratch on the device,
``first`` on the host: see ``numopt.optim._trust.Segments``) and works in three parts:

1. a reduction kernel over the run's blocks (at most ``CHUNK`` elements of one parameter; the
   CPU kernel's blocks): one CUDA block per table block (grid-stride), its threads applying the
   CPU kernel's per-element piece to strided shares of the block and summing in float64, the
   threads' sums then added in a fixed tree order (as :func:`numopt.kernels.cuda.clip.norm_partials`).
   One partial per block, the same numbers for any grid size;
2. on the host, the CPU kernel's own second half (``lamb_ratios``, ``lars_ratios``,
   ``prodigy_totals``, ``segment_totals``) on the partials copied back (two float64 per block):
   each parameter's partials added in block order, then its scalars (norms, trust ratio);
3. for Lamb and LARS, the update kernel, with the one scalar per parameter copied to the device.

Only the partials and the per-parameter scalars cross between host and device, never an array
of the parameters' size. The partials equal the CPU's up to float64 rounding (the additions within
a block are grouped differently); norms, ratios and float32 sums formed from them then match the
CPU's except when that difference crosses a rounding boundary of the arrays' dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda, float64

from ..._jit import CHUNK
from .. import lamb as _lamb
from .. import lars as _lars
from .. import prodigy as _prodigy
from .. import segments as _segments
from ..lamb import SKIP, lamb_apply, lamb_constants, lamb_direction, lamb_moments
from ..lars import lars_constants, lars_step
from ..prodigy import prodigy_moments, prodigy_reduce_constants
from ._launch import SIM_THREADS, SIMULATOR, _device_arg, jit, register
from .clip import RED_THREADS

__all__ = ["lamb_update", "lars_update", "prodigy_reduce", "segment_sum_squares"]

#: the most CUDA blocks one launch uses; past that, blocks loop over the table's blocks (grid-stride)
MAX_BLOCKS: int = 4096


@cuda.jit(device=True)
def _block_sum(shared, acc):
    """The sum of every thread's ``acc`` (float64), added in a fixed tree order; every thread gets it.

    ``shared`` holds at least ``blockDim.x`` float64 (a power of two). Every thread of the block must call it.
    """
    t = cuda.threadIdx.x
    shared[t] = acc
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if t < s:
            shared[t] = shared[t] + shared[t + s]
        cuda.syncthreads()
        s //= 2
    total = shared[0]
    cuda.syncthreads()  # before the next call writes ``shared`` again
    return total


def _launch(kernel: Any, nb: int, *args: Any) -> None:
    """Launch ``kernel`` over a table of ``nb`` blocks (nothing for none)."""
    if nb:
        kernel[min(nb, MAX_BLOCKS), SIM_THREADS if SIMULATOR else RED_THREADS](*args)


_SCRATCH: dict[tuple[tuple[int, ...], np.dtype], np.ndarray] = {}


def _scratch(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A host array (overwritten by each user, so shared by shape and dtype) for values copied back or sent."""
    key = (tuple(shape), np.dtype(dtype))
    arr = _SCRATCH.get(key)
    if arr is None:
        arr = _SCRATCH[key] = np.empty(key[0], key[1])
    return arr


def _to_host(arr: Any) -> np.ndarray:
    host = _scratch(arr.shape, arr.dtype)
    if arr.size:
        arr.copy_to_host(host)
    return host


# -- segment sums of squares (Lamb's pre_norm, LARS's norms) -----------------------------------------
@jit
def _sum_squares(x, y, offs, start, owner, matrix, out_x, out_y):
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    shared = cuda.shared.array(RED_THREADS, float64)
    use_y = y.size != 0
    masked = matrix.size != 0
    for b in range(cuda.blockIdx.x, start.size, cuda.gridDim.x):
        i = owner[b]
        hi = min(start[b] + CHUNK, offs[i + 1])
        if masked and not matrix[i]:
            hi = start[b]  # no norm for this parameter: zeros (as on the CPU)
        sx = np.float64(0)
        sy = np.float64(0)
        for j in range(start[b] + t, hi, nt):
            v = np.float64(x[j])
            sx += v * v
            if use_y:
                w = np.float64(y[j])
                sy += w * w
        sx = _block_sum(shared, sx)
        if use_y:
            sy = _block_sum(shared, sy)
        if t == 0:
            out_x[b] = sx
            if use_y:
                out_y[b] = sy


_NO_FLOATS = np.empty(0, np.float64)
_NO_FLAGS = np.empty(0, np.bool_)


def segment_sum_squares(x, offs, first, start, owner, partials, out):
    """CUDA twin of :func:`numopt.kernels.segments.segment_sum_squares` (``out``: a host array)."""
    nb = start.size
    _launch(
        _sum_squares, nb, x, _device_arg(_NO_FLOATS), offs, start, owner, _device_arg(_NO_FLAGS), partials, partials
    )
    _segments.segment_totals(_to_host(partials), first, out)


# -- Lamb ------------------------------------------------------------------------------------------
@jit
def _lamb_moments(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    offs,
    start,
    owner,
    partials,
    step_size,
    decay_lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    weight_decouple,
    grad_averaging,
    grad_scale,
    maximize,
    reciprocal,
    mode,
):
    c = lamb_constants(
        param.dtype.type,
        step_size,
        decay_lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        weight_decouple,
        grad_averaging,
        grad_scale,
        maximize,
    )
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    shared = cuda.shared.array(RED_THREADS, float64)
    for b in range(cuda.blockIdx.x, start.size, cuda.gridDim.x):
        hi = min(start[b] + CHUNK, offs[owner[b] + 1])
        sw = np.float64(0)
        su = np.float64(0)
        for j in range(start[b] + t, hi, nt):
            p, m, v = lamb_moments(c, param[j], grad[j], exp_avg[j], exp_avg_sq[j])
            param[j] = p
            exp_avg[j] = m
            exp_avg_sq[j] = v
            if mode != SKIP:
                u = np.float64(lamb_direction(c, mode, reciprocal, p, m, v))
                w = np.float64(p)
                sw += w * w
                su += u * u
        sw = _block_sum(shared, sw)
        su = _block_sum(shared, su)
        if t == 0:
            partials[0, b] = sw
            partials[1, b] = su


@jit
def _lamb_apply(
    param,
    exp_avg,
    exp_avg_sq,
    offs,
    start,
    owner,
    factor,
    step_size,
    decay_lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    weight_decouple,
    grad_averaging,
    maximize,
    reciprocal,
    mode,
):
    c = lamb_constants(
        param.dtype.type,
        step_size,
        decay_lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        weight_decouple,
        grad_averaging,
        1.0,
        maximize,
    )
    for b in range(cuda.blockIdx.x, start.size, cuda.gridDim.x):
        f = factor[owner[b]]
        hi = min(start[b] + CHUNK, offs[owner[b] + 1])
        for j in range(start[b] + cuda.threadIdx.x, hi, cuda.blockDim.x):
            param[j] = lamb_apply(c, mode, reciprocal, param[j], exp_avg[j], exp_avg_sq[j], f)


def lamb_update(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    offs,
    first,
    start,
    owner,
    partials,
    factor,
    weight_norm,
    adam_norm,
    trust_ratio,
    step_size,
    decay_lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    weight_decouple,
    grad_averaging,
    grad_scale,
    maximize,
    reciprocal,
    adam,
    mode,
):
    """CUDA twin of :func:`numopt.kernels.lamb.lamb_update` (``weight_norm``, ``adam_norm``,
    ``trust_ratio``: host arrays; ``first``: on the host, the rest of the table on the device)."""
    nb = start.size
    hyper = (step_size, decay_lr, beta1, beta2, eps, weight_decay, weight_decouple, grad_averaging)
    _launch(
        _lamb_moments,
        nb,
        param,
        grad,
        exp_avg,
        exp_avg_sq,
        offs,
        start,
        owner,
        partials,
        *hyper,
        grad_scale,
        maximize,
        reciprocal,
        mode,
    )
    if mode == SKIP:
        return
    host = _scratch(factor.shape, factor.dtype)
    _lamb.lamb_ratios(
        _to_host(partials), first, weight_norm, adam_norm, trust_ratio, host, step_size, eps, reciprocal, adam
    )
    if host.size:
        factor.copy_to_device(host)
    _launch(_lamb_apply, nb, param, exp_avg, exp_avg_sq, offs, start, owner, factor, *hyper, maximize, reciprocal, mode)


# -- LARS ------------------------------------------------------------------------------------------
@jit
def _lars_apply(
    param,
    grad,
    momentum_buffer,
    offs,
    start,
    owner,
    matrix,
    ratio,
    lr,
    weight_decay,
    momentum,
    dampening,
    nesterov,
    maximize,
):
    c = lars_constants(param.dtype.type, lr, weight_decay, momentum, dampening, nesterov, maximize)
    zero = param.dtype.type(0)
    use_momentum = momentum_buffer.size != 0
    for b in range(cuda.blockIdx.x, start.size, cuda.gridDim.x):
        i = owner[b]
        is_matrix = matrix[i]
        r = ratio[i]
        hi = min(start[b] + CHUNK, offs[i + 1])
        for j in range(start[b] + cuda.threadIdx.x, hi, cuda.blockDim.x):
            buf = momentum_buffer[j] if use_momentum else zero
            p, buf = lars_step(c, param[j], grad[j], buf, is_matrix, r)
            param[j] = p
            if use_momentum:
                momentum_buffer[j] = buf


def lars_update(
    param,
    grad,
    momentum_buffer,
    offs,
    first,
    start,
    owner,
    matrix,
    partials,
    ratio,
    lr,
    weight_decay,
    momentum,
    dampening,
    trust_coefficient,
    nesterov,
    maximize,
):
    """CUDA twin of :func:`numopt.kernels.lars.lars_update` (``first`` on the host, the rest on the device;
    an empty host ``momentum_buffer`` stands for none)."""
    nb = start.size
    _launch(_sum_squares, nb, param, grad, offs, start, owner, matrix, partials[0], partials[1])
    host = _scratch(ratio.shape, ratio.dtype)
    _lars.lars_ratios(_to_host(partials), first, host, weight_decay, trust_coefficient)
    if host.size:
        ratio.copy_to_device(host)
    _launch(
        _lars_apply,
        nb,
        param,
        grad,
        _device_arg(momentum_buffer),
        offs,
        start,
        owner,
        matrix,
        ratio,
        lr,
        weight_decay,
        momentum,
        dampening,
        nesterov,
        maximize,
    )


# -- Prodigy ---------------------------------------------------------------------------------------
@jit
def _prodigy_moments(
    param,
    grad,
    p0,
    s,
    exp_avg,
    exp_avg_sq,
    offs,
    start,
    owner,
    partials,
    beta1,
    m_scale,
    beta2,
    v_scale,
    beta3,
    s_scale,
    maximize,
):
    c = prodigy_reduce_constants(param.dtype.type, beta1, m_scale, beta2, v_scale, beta3, s_scale, maximize)
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    shared = cuda.shared.array(RED_THREADS, float64)
    for k in range(cuda.blockIdx.x, start.size, cuda.gridDim.x):
        hi = min(start[k] + CHUNK, offs[owner[k] + 1])
        acc_dot = np.float64(0)
        acc_abs = np.float64(0)
        for i in range(start[k] + t, hi, nt):
            si, mi, vi, dot, a = prodigy_moments(c, param[i], grad[i], p0[i], s[i], exp_avg[i], exp_avg_sq[i])
            s[i] = si
            exp_avg[i] = mi
            exp_avg_sq[i] = vi
            acc_dot += dot
            acc_abs += a
        acc_dot = _block_sum(shared, acc_dot)
        acc_abs = _block_sum(shared, acc_abs)
        if t == 0:
            partials[0, k] = acc_dot
            partials[1, k] = acc_abs


def prodigy_reduce(
    param,
    grad,
    p0,
    s,
    exp_avg,
    exp_avg_sq,
    offs,
    first,
    start,
    owner,
    partials,
    numerator,
    denominator,
    alpha,
    beta1,
    m_scale,
    beta2,
    v_scale,
    beta3,
    s_scale,
    maximize,
):
    """CUDA twin of :func:`numopt.kernels.prodigy.prodigy_reduce` (``first`` on the host, the rest on the
    device); returns the new ``(numerator, denominator)``, added on the host as on the CPU."""
    scalars = (beta1, m_scale, beta2, v_scale, beta3, s_scale, maximize)
    _launch(
        _prodigy_moments, start.size, param, grad, p0, s, exp_avg, exp_avg_sq, offs, start, owner, partials, *scalars
    )
    return _prodigy.prodigy_totals(_to_host(partials), first, numerator, denominator, alpha)


register(_segments.segment_sum_squares, segment_sum_squares)
register(_lamb.lamb_update, lamb_update)
register(_lars.lars_update, lars_update)
register(_prodigy.prodigy_reduce, prodigy_reduce)
