"""L-BFGS vector work: gradient gathering, trial points, the history update and the two-loop recursion.

Every reduction (dot products, max, sum) is accumulated in float64 per chunk of
``CHUNK`` elements and the chunk results are added in order, so the results do
not depend on the thread count, and a ``parallel`` flag picks a ``prange`` or a
plain loop over the chunks (identical results; the plain loop avoids the cost
of starting threads on small problems).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._jit import CACHE, CHUNK, kernel
from ._intrinsics import fma


@njit(cache=CACHE, nogil=True)
def _finish(partials, nchunks):
    """Add the per-chunk dot products (row 0) and second sums (row 1) in order; max of row 2."""
    a = np.float64(0)
    b = np.float64(0)
    m = np.float64(0)
    for c in range(nchunks):
        a += partials[0, c]
        b += partials[1, c]
        if partials[2, c] > m or partials[2, c] != partials[2, c]:
            m = partials[2, c]
    return a, b, m


@njit(cache=CACHE, nogil=True)
def _gather_chunk(src, dst, d, negate, use_d, lo, hi):
    dot = np.float64(0)
    asum = np.float64(0)
    amax = np.float64(0)
    for i in range(lo, hi):
        v = src[i]
        if negate:
            v = -v
        dst[i] = v
        a = abs(np.float64(v))
        asum += a
        if a > amax or a != a:
            amax = a
        if use_d:
            dot += np.float64(v) * np.float64(d[i])
    return dot, asum, amax


@kernel
def lbfgs_gather(src, dst, d, negate, parallel, partials):
    r"""Copy the flat gradient into L-BFGS's own buffer and reduce it, in one pass.

    ``dst <- -src if negate else src``; returns ``(dst . d, sum|dst|, max|dst|)``
    (the dot product is 0 when ``d`` is empty). A NaN anywhere makes the max NaN.

    Parameters
    ----------
    src, dst : 1-D arrays of one float dtype
    d : 1-D array of that dtype, or empty
    negate, parallel : bool
    partials : float64 array of shape ``(3, nchunks)`` (scratch)
    """
    n = dst.size
    nchunks = (n + CHUNK - 1) // CHUNK
    use_d = d.size == n
    if parallel:
        for c in prange(nchunks):
            r = _gather_chunk(src, dst, d, negate, use_d, c * CHUNK, min(n, (c + 1) * CHUNK))
            partials[0, c] = r[0]
            partials[1, c] = r[1]
            partials[2, c] = r[2]
    else:
        for c in range(nchunks):
            r = _gather_chunk(src, dst, d, negate, use_d, c * CHUNK, min(n, (c + 1) * CHUNK))
            partials[0, c] = r[0]
            partials[1, c] = r[1]
            partials[2, c] = r[2]
    return _finish(partials, nchunks)


@njit(cache=CACHE, nogil=True)
def _axpy_chunk(out, x, d, t, lo, hi):
    for i in range(lo, hi):
        out[i] = fma(d[i], t, x[i])


@kernel
def lbfgs_axpy(out, x, d, t, parallel):
    r"""``out <- x + t * d`` with one rounding (torch's ``p.add_(d, alpha=t)``); ``out`` may be ``x``.

    ``t`` is a scalar of the arrays' dtype.
    """
    n = out.size
    nchunks = (n + CHUNK - 1) // CHUNK
    if parallel:
        for c in prange(nchunks):
            _axpy_chunk(out, x, d, t, c * CHUNK, min(n, (c + 1) * CHUNK))
    else:
        for c in range(nchunks):
            _axpy_chunk(out, x, d, t, c * CHUNK, min(n, (c + 1) * CHUNK))


@njit(cache=CACHE, nogil=True)
def _push_chunk(g, prev, d, t, y, s, lo, hi):
    ys = np.float64(0)
    yy = np.float64(0)
    for i in range(lo, hi):
        yi = g[i] - prev[i]
        si = d[i] * t
        y[i] = yi
        s[i] = si
        prev[i] = g[i]
        ys += np.float64(yi) * np.float64(si)
        yy += np.float64(yi) * np.float64(yi)
    return ys, yy, np.float64(0)


@kernel
def lbfgs_push(g, prev, d, t, y, s, parallel, partials):
    r"""The curvature pair of the last step, in one pass.

    For every element::

        y    <- g - prev          (change of gradient)
        s    <- d * t             (the step taken)
        prev <- g

    Returns ``(y . s, y . y)``. ``t`` is a scalar of the arrays' dtype.
    """
    n = g.size
    nchunks = (n + CHUNK - 1) // CHUNK
    if parallel:
        for c in prange(nchunks):
            r = _push_chunk(g, prev, d, t, y, s, c * CHUNK, min(n, (c + 1) * CHUNK))
            partials[0, c] = r[0]
            partials[1, c] = r[1]
            partials[2, c] = r[2]
    else:
        for c in range(nchunks):
            r = _push_chunk(g, prev, d, t, y, s, c * CHUNK, min(n, (c + 1) * CHUNK))
            partials[0, c] = r[0]
            partials[1, c] = r[1]
            partials[2, c] = r[2]
    a, b, _ = _finish(partials, nchunks)
    return a, b


@njit(cache=CACHE, nogil=True)
def _direction_chunk(d, g, x, coef, z, scale, h, from_g, use_axpy, use_dot, last, lo, hi):
    dot = np.float64(0)
    gd = np.float64(0)
    vmax = np.float64(0)
    for i in range(lo, hi):
        v = -g[i] if from_g else d[i]
        if use_axpy:
            v = fma(x[i], coef, v)
        if scale:
            v = v * h
        d[i] = v
        if use_dot:
            dot += np.float64(z[i]) * np.float64(v)
        if last:
            gd += np.float64(g[i]) * np.float64(v)
            a = abs(np.float64(v))
            if a > vmax or a != a:
                vmax = a
    return dot, gd, vmax


@kernel
def lbfgs_direction(g, d, dirs, stps, order, ro, al, h_diag, parallel, partials):
    r"""The L-BFGS direction ``d = -H g`` by the two-loop recursion, in ``2k + 1`` passes.

    With the ``k`` stored pairs ``y_i = dirs[order[i]]``, ``s_i = stps[order[i]]``
    (oldest first) and ``rho_i = ro[order[i]]`` (torch's ``old_dirs``,
    ``old_stps`` and ``ro``)::

        q = -g
        for i = k-1 .. 0:   al[i] = rho_i * (s_i . q);   q = q - al[i] * y_i
        r = h_diag * q
        for i = 0 .. k-1:   be = rho_i * (y_i . r);     r = r + (al[i] - be) * s_i
        d = r

    Each pass applies one update and computes the dot product the next update
    needs, so the recursion reads memory ``2k + 1`` times instead of ``4k``.
    The updates are fused multiply-adds, as torch's ``add_(..., alpha=)``.

    Parameters
    ----------
    g : 1-D array, the gradient (only read)
    d : 1-D array of ``g``'s dtype, receives the direction
    dirs, stps : 2-D arrays ``(capacity, g.size)``, the history ring buffers
        (may have no rows when ``k == 0``)
    order : int64 array, the ring rows from oldest to newest (length k)
    ro : float64 array, ``1 / (y_i . s_i)`` per ring row
    al : float64 array of length >= k, receives the first loop's coefficients
    h_diag : scalar of ``g``'s dtype, the initial inverse-Hessian scale
    parallel : bool
    partials : float64 array ``(3, nchunks)`` (scratch)

    Returns
    -------
    ``(g . d, max|d|)``
    """
    n = d.size
    nchunks = (n + CHUNK - 1) // CHUNK
    tp = d.dtype.type
    k = order.size
    gd = np.float64(0)
    dmax = np.float64(0)
    be = np.float64(0)
    for j in range(2 * k + 1):
        # pass j of 2k+1: an update of d (pass 0 starts from -g), then the dot product the next update needs
        from_g = j == 0
        use_axpy = j >= 1
        scale = j == k
        last = j == 2 * k
        x = g
        z = g
        coef = tp(0)
        use_dot = False
        if j <= k:
            if use_axpy:
                x = dirs[order[k - j]]
                coef = tp(-al[k - j])
            if j < k:
                use_dot = True
                z = stps[order[k - 1 - j]]
            elif k > 0:
                use_dot = True
                z = dirs[order[0]]
        else:
            p = j - k - 1
            x = stps[order[p]]
            coef = tp(al[p] - be)
            if p + 1 < k:
                use_dot = True
                z = dirs[order[p + 1]]
        if parallel:
            for c in prange(nchunks):
                r = _direction_chunk(
                    d, g, x, coef, z, scale, h_diag, from_g, use_axpy, use_dot, last, c * CHUNK, min(n, (c + 1) * CHUNK)
                )
                partials[0, c] = r[0]
                partials[1, c] = r[1]
                partials[2, c] = r[2]
        else:
            for c in range(nchunks):
                r = _direction_chunk(
                    d, g, x, coef, z, scale, h_diag, from_g, use_axpy, use_dot, last, c * CHUNK, min(n, (c + 1) * CHUNK)
                )
                partials[0, c] = r[0]
                partials[1, c] = r[1]
                partials[2, c] = r[2]
        dot, gd, dmax = _finish(partials, nchunks)
        if j < k:
            al[k - 1 - j] = dot * ro[order[k - 1 - j]]
        elif j == k:
            if k > 0:
                be = dot * ro[order[0]]
        elif j - k < k:
            be = dot * ro[order[j - k]]
    return gd, dmax
