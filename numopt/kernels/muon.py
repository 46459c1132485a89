"""Muon: momentum, then Newton–Schulz orthogonalization of each 2-D update.

The kernels do the momentum update, the scalings and the matrix products of
the Newton–Schulz iteration (``numopt.optim.muon``), with the bfloat16
rounding after every product and torch's order of summation inside each
product, so the iteration tracks torch, which runs it in bfloat16.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import CHUNK, kernel
from ._intrinsics import bf16_round, fma


@kernel
def muon_momentum(grad, momentum_buffer, out, momentum, one_minus_momentum, nesterov, round_bf16):
    r"""Muon's momentum step (torch's ``lerp`` form), writing the update in float32.

    For every element, with ``lerp(a, b, w) = a + w * (b - a)``::

        buf <- lerp(buf, g, one_minus_momentum)
        u   <- lerp(g, buf, momentum)    if nesterov    else    buf
        out <- float32(u), rounded to bfloat16 if round_bf16

    ``lerp`` is evaluated as torch's vectorized CPU kernel does, with one fused
    multiply-add: ``fma(w, b - a, a)`` when ``|w| < 0.5``, else
    ``fma(w - 1, b - a, b)``, so ``buf`` matches torch bit for bit.

    Parameters
    ----------
    grad, momentum_buffer : 1-D arrays of one float dtype
        ``momentum_buffer`` is updated in place.
    out : 1-D float32 array
        Receives the update (the Newton–Schulz input).
    momentum, one_minus_momentum : scalars of the arrays' dtype
        ``one_minus_momentum`` is ``1 - momentum`` computed in float64 and then
        cast, as torch does (not ``1 - momentum`` in float32, which can differ).
    nesterov, round_bf16 : bool
    """
    n = grad.size
    one = grad.dtype.type(1)
    half = one / (one + one)
    w = one_minus_momentum
    w_small = abs(w) < half
    m_small = abs(momentum) < half
    w_big = w - one
    m_big = momentum - one
    for i in prange(n):
        g = grad[i]
        b = momentum_buffer[i]
        diff = g - b
        if w_small:
            b = fma(w, diff, b)
        else:
            b = fma(w_big, diff, g)
        momentum_buffer[i] = b
        u = b
        if nesterov:
            diff = b - g
            if m_small:
                u = fma(momentum, diff, g)
            else:
                u = fma(m_big, diff, b)
        u32 = np.float32(u)
        if round_bf16:
            u32 = bf16_round(u32)
        out[i] = u32


@kernel
def ns_scale(x, divisor, round_bf16):
    r"""``x <- x / divisor`` in place (float32), rounded to bfloat16 if ``round_bf16``.

    A true division, as torch's ``div_`` (not a multiplication by the reciprocal).
    With ``divisor == 1`` it only rounds.
    """
    n = x.size
    for i in prange(n):
        v = x[i] / divisor
        if round_bf16:
            v = bf16_round(v)
        x[i] = v


@kernel
def ns_matmul(a, b, out, other, alpha, beta, round_bf16):
    r"""``out <- alpha * (a @ b) + beta * other`` in float32, summed in torch's bfloat16 GEMM order.

    torch's ``matmul`` and ``addmm`` on CPU bfloat16 tensors (the Newton–Schulz
    iteration) go to oneDNN once ``m * n * k > 16**3``. On CPUs with
    AVX512-BF16 its kernel (``vdpbf16ps``) keeps one float32 accumulator per
    output element and adds the products two ``k`` at a time, the odd one
    first: ``acc = (acc + a[i, k+1] * b[k+1, j]) + a[i, k] * b[k, j]``, for
    ``k = 0, 2, 4, ...`` (an odd last ``k`` alone). The epilogue of ``addmm``
    then scales once and adds ``beta * other`` with a fused multiply-add::

        v = fma(beta, other, alpha * acc)       (v = alpha * acc when beta == 0)
        out = v, rounded to bfloat16 if round_bf16

    Measured against torch 2.13 on such a CPU: bit-identical products and
    ``addmm`` results (a float32 BLAS, summing in its own order, differs in
    about 1e-4 of the entries, which the iteration then spreads). The
    products of bfloat16 inputs are exact in float32, so only the order of
    the additions matters.

    Parameters
    ----------
    a : 2-D float32 array (m, k)
    b : 2-D float32 array (k, n), C-contiguous rows
    out : 2-D float32 array (m, n), distinct from ``a``, ``b`` and ``other``
    other : 2-D float32 array (m, n); read only if ``beta != 0``
    alpha, beta : float32 scalars
    round_bf16 : bool
    """
    m, kk = a.shape
    n = b.shape[1]
    zero = out.dtype.type(0)
    for i in prange(m):
        acc = out[i]
        for j in range(n):
            acc[j] = zero
        for k in range(0, kk - 1, 2):
            a_odd, a_even = a[i, k + 1], a[i, k]
            b_odd, b_even = b[k + 1], b[k]
            for j in range(n):
                acc[j] = (acc[j] + a_odd * b_odd[j]) + a_even * b_even[j]
        if kk % 2:
            a_last, b_last = a[i, kk - 1], b[kk - 1]
            for j in range(n):
                acc[j] = acc[j] + a_last * b_last[j]
        for j in range(n):
            v = alpha * acc[j]
            if beta != zero:
                v = fma(beta, other[i, j], v)
            if round_bf16:
                v = bf16_round(v)
            acc[j] = v


@kernel
def ns_epilogue(out, other, alpha, beta):
    r"""``out <- fma(beta, other, alpha * out)`` over flat float32 arrays (``alpha * out`` when ``beta == 0``).

    The float32 mode's combine after a BLAS product: the same epilogue as :func:`ns_matmul`'s,
    without the bfloat16 rounding (that mode follows no reference's summation order, so the
    product is left to BLAS, several times faster on large matrices).
    """
    zero = out.dtype.type(0)
    for i in prange(out.size):
        v = alpha * out[i]
        if beta != zero:
            v = fma(beta, other[i], v)
        out[i] = v


@kernel
def sum_squares(x, partials):
    r"""``sum(x**2)`` accumulated in float64, deterministic for any thread count.

    ``partials`` (float64, at least ``ceil(x.size / CHUNK)`` entries) receives
    one partial sum per chunk; they are added in order at the end.
    """
    n = x.size
    nchunks = (n + CHUNK - 1) // CHUNK
    for c in prange(nchunks):
        acc = np.float64(0)
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            v = np.float64(x[i])
            acc += v * v
        partials[c] = acc
    total = np.float64(0)
    for c in range(nchunks):
        total += partials[c]
    return total


@kernel
def muon_apply(param, update, decay, alpha):
    r"""Decoupled weight decay and the orthogonalized step, in place.

    For every element::

        param <- param * decay                       (if decay != 1; decay = 1 - lr * weight_decay)
        param <- fma(update, alpha, param)           (alpha = -adjusted_lr)

    the fused form of torch's ``param.add_(update, alpha=alpha)``.

    Parameters
    ----------
    param : 1-D float32 or float64 array
    update : 1-D float32 array (the Newton–Schulz output)
    decay, alpha : scalars of ``param``'s dtype
    """
    n = param.size
    one = param.dtype.type(1)
    use_decay = decay != one
    for i in prange(n):
        p = param[i]
        if use_decay:
            p = p * decay
        param[i] = fma(param.dtype.type(update[i]), alpha, p)
