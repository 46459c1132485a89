"""Adafactor: factored second moments, relative step sizes and update clipping."""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import CHUNK, kernel, serial_kernel

#: columns of the segment table :func:`adafactor_step` reads, one row per parameter
SEG_LO, SEG_SIZE, SEG_FACTORED, SEG_B, SEG_R, SEG_C, SEG_A, SEG_B_OFF = range(8)


@kernel(parallel=False)
def _lerp(start, end, weight, small, one):
    # torch.lerp's formula; ``small`` is ``abs(weight) < 0.5``.
    if small:
        return start + weight * (end - start)
    return end - (end - start) * (one - weight)


@kernel(parallel=False)
def _row_mean(row_var, start, nr, fr, eps1):
    """``max(mean(row_var[start:start + nr]), eps1)``, summed in float64: the denominator of the factored ``V``."""
    rs = 0.0
    for r in range(nr):
        rs += np.float64(row_var[start + r])
    rm = row_var.dtype.type(rs) / fr
    return eps1 if rm < eps1 else rm


@kernel(parallel=False)
def _normalized(g, v, eps1_sq, maximize, one):
    """``U = G / sqrt(max(V, eps1**2))`` for one element, ``G`` negated if ``maximize``."""
    if v < eps1_sq:
        v = eps1_sq
    if maximize:
        g = -g
    return g * (one / np.sqrt(v))


def _adafactor_step(
    param, grad, row_var, col_var, variance, segments, first, last, weight, rho, eps1, eps1_sq, eps2, d, decay, maximize
):
    r"""One Adafactor step for parameters ``first:last`` of a flat buffer, in place (torch.optim.Adafactor).

    Row ``s`` of ``segments`` describes parameter ``s``: its elements
    ``param[lo:lo + n]``, whether it is factored (``ndim >= 2``), its shape as
    ``(B, R, C)`` (leading dimensions, rows, columns) and the offsets of its
    entries in ``row_var`` (``B * R`` values) and ``col_var`` (``B * C`` values),
    or in ``variance`` (``n`` values) when it is not factored. For each
    parameter, with :math:`G` the gradient (negated if ``maximize``),
    ``w = t ** beta2_decay`` and ``rho = min(lr, 1 / sqrt(t))``::

        alpha = max(eps2, RMS(param)) * rho
        factored:    row_var <- lerp(row_var, mean(G**2, axis=-1), w)
                     col_var <- lerp(col_var, mean(G**2, axis=-2), w)
                     V = row_var * col_var / max(mean(row_var, axis=-2), eps1)
        otherwise:   variance <- lerp(variance, G**2, w);   V = variance
        U = G / sqrt(max(V, eps1**2))
        param <- param * decay - alpha / max(1, RMS(U) / d) * U

    An empty parameter is left as it is. Sums of squares are accumulated in
    float64; ``alpha`` and the clipping factor are float64 (as in torch), cast
    once before the last pass.

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype (the whole buffer)
    row_var, col_var, variance : 1-D arrays of that dtype, updated in place
    segments : 2-D int64 array, one row per parameter (see ``SEG_*``)
    first, last : int
        The parameters to update.
    weight, eps1, eps1_sq : scalars of ``param``'s dtype
        ``weight = t ** beta2_decay``; ``eps1_sq = eps1 ** 2`` (computed in float64), the floor of ``V``.
    rho, eps2, d : float64
    decay : scalar of ``param``'s dtype
        ``1 - lr * weight_decay``; 1 skips the multiplication.
    maximize : bool
    """
    one = param.dtype.type(1)
    small = abs(weight) < param.dtype.type(0.5)
    use_decay = decay != one
    for s in range(first, last):
        lo = segments[s, SEG_LO]
        n = segments[s, SEG_SIZE]
        if n == 0:
            continue
        psq = 0.0
        usq = 0.0
        if segments[s, SEG_FACTORED]:
            nb, nr, nc = segments[s, SEG_B], segments[s, SEG_R], segments[s, SEG_C]
            ro, co = segments[s, SEG_A], segments[s, SEG_B_OFF]
            fr, fc = param.dtype.type(nr), param.dtype.type(nc)
            # rows: mean of G**2 along the last axis, and the parameter's sum of squares
            for k in prange(nb * nr):
                gs = 0.0
                ps = 0.0
                base = lo + k * nc
                for c in range(nc):
                    g = np.float64(grad[base + c])
                    p = np.float64(param[base + c])
                    gs += g * g
                    ps += p * p
                psq += ps
                m = param.dtype.type(np.sqrt(gs))  # torch: norm, then square, then divide
                row_var[ro + k] = _lerp(row_var[ro + k], m * m / fc, weight, small, one)
            # columns: mean of G**2 along the second-to-last axis
            for j in prange(nb * nc):
                b = j // nc
                c = j - b * nc
                gs = 0.0
                base = lo + b * nr * nc + c
                for r in range(nr):
                    g = np.float64(grad[base + r * nc])
                    gs += g * g
                m = param.dtype.type(np.sqrt(gs))
                col_var[co + j] = _lerp(col_var[co + j], m * m / fr, weight, small, one)
            for b in range(nb):
                rm = _row_mean(row_var, ro + b * nr, nr, fr, eps1)
                for r in prange(nr):
                    rv = row_var[ro + b * nr + r]
                    base = lo + (b * nr + r) * nc
                    acc = 0.0
                    for c in range(nc):
                        u = _normalized(grad[base + c], rv * col_var[co + b * nc + c] / rm, eps1_sq, maximize, one)
                        acc += np.float64(u) * np.float64(u)
                    usq += acc
            scale = _step_scale(psq, usq, n, rho, eps2, d, param)
            for b in range(nb):
                rm = _row_mean(row_var, ro + b * nr, nr, fr, eps1)
                for r in prange(nr):
                    rv = row_var[ro + b * nr + r]
                    base = lo + (b * nr + r) * nc
                    for c in range(nc):
                        u = _normalized(grad[base + c], rv * col_var[co + b * nc + c] / rm, eps1_sq, maximize, one)
                        p = param[base + c]
                        if use_decay:
                            p = p * decay
                        param[base + c] = p + scale * u
        else:
            vo = segments[s, SEG_A]
            for ch in prange((n + CHUNK - 1) // CHUNK):
                ps = 0.0
                acc = 0.0
                for i in range(ch * CHUNK, min(n, (ch + 1) * CHUNK)):
                    g = grad[lo + i]
                    p = np.float64(param[lo + i])
                    ps += p * p
                    v = _lerp(variance[vo + i], g * g, weight, small, one)  # (-g)**2 == g**2: maximize later
                    variance[vo + i] = v
                    u = _normalized(g, v, eps1_sq, maximize, one)
                    acc += np.float64(u) * np.float64(u)
                psq += ps
                usq += acc
            scale = _step_scale(psq, usq, n, rho, eps2, d, param)
            for i in prange(n):
                u = _normalized(grad[lo + i], variance[vo + i], eps1_sq, maximize, one)
                p = param[lo + i]
                if use_decay:
                    p = p * decay
                param[lo + i] = p + scale * u


adafactor_step = kernel(_adafactor_step)
#: the same rule without threads: a small parameter is not worth the parallel launches (several per parameter)
adafactor_step_serial = serial_kernel(_adafactor_step)


@kernel(parallel=False)
def _step_scale(psq, usq, n, rho, eps2, d, like):
    # torch: alpha = max(eps2, ||param|| / sqrt(n)) * rho and denom = max(1, ||U|| / (sqrt(n) * d)) in
    # float64, each norm first rounded to the parameter's dtype (torch's tensor.norm().item()).
    t = like.dtype.type
    root_n = np.sqrt(np.float64(n))
    alpha = max(eps2, np.float64(t(np.sqrt(psq))) / root_n) * rho
    denom = max(np.float64(1), np.float64(t(np.sqrt(usq))) / (root_n * d))
    return t(-alpha / denom)
