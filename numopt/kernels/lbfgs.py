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

from .._jit import CACHE, CHUNK, JIT_OPTIONS, kernel
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
    for i in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no negative-index check
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
    for i in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no negative-index check
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
    for i in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no negative-index check
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


@njit(cache=CACHE, inline="always", **JIT_OPTIONS)
def _direction_chunk(d, g, xs, xr, coef, zs, zr, scale, h, from_g, use_axpy, use_dot, last, lo, hi):
    # x = xs[xr], z = zs[zr], indexed in place: a view per pass costs more than a pass on a small problem
    dot = np.float64(0)
    gd = np.float64(0)
    vmax = np.float64(0)
    for i in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no negative-index check
        v = -g[i] if from_g else d[i]
        if use_axpy:
            v = fma(xs[xr, i], coef, v)
        if scale:
            v = v * h
        d[i] = v
        if use_dot:
            dot += np.float64(zs[zr, i]) * np.float64(v)
        if last:
            gd += np.float64(g[i]) * np.float64(v)
            a = abs(np.float64(v))
            if a > vmax or a != a:
                vmax = a
    return dot, gd, vmax


@njit(cache=CACHE, **JIT_OPTIONS)
def _direction_chunk_into(partials, c, n, d, g, xs, xr, coef, zs, zr, scale, h, from_g, use_axpy, use_dot, last):
    """:func:`_direction_chunk` on chunk ``c`` of ``n`` elements, its three results into ``partials[:, c]``."""
    r = _direction_chunk(
        d, g, xs, xr, coef, zs, zr, scale, h, from_g, use_axpy, use_dot, last, c * CHUNK, min(n, (c + 1) * CHUNK)
    )
    partials[0, c] = r[0]
    partials[1, c] = r[1]
    partials[2, c] = r[2]


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
        xs, xr = dirs, 0  # the vector added (a row of dirs or stps), when use_axpy
        zs, zr = dirs, 0  # the vector dotted with the result, when use_dot
        coef = tp(0)
        use_dot = False
        if j <= k:
            if use_axpy:
                xr = order[k - j]
                coef = tp(-al[k - j])
            if j < k:
                use_dot = True
                zs, zr = stps, order[k - 1 - j]
            elif k > 0:
                use_dot = True
                zr = order[0]
        else:
            p = j - k - 1
            xs, xr = stps, order[p]
            coef = tp(al[p] - be)
            if p + 1 < k:
                use_dot = True
                zr = order[p + 1]
        if nchunks == 1:
            # one chunk: _finish's sums reduce to adding to 0.0, its max to the chunk's
            r = _direction_chunk(d, g, xs, xr, coef, zs, zr, scale, h_diag, from_g, use_axpy, use_dot, last, 0, n)
            dot, gd, dmax = 0.0 + r[0], 0.0 + r[1], r[2]
        else:
            if parallel:
                for c in prange(nchunks):
                    _direction_chunk_into(
                        partials, c, n, d, g, xs, xr, coef, zs, zr, scale, h_diag, from_g, use_axpy, use_dot, last
                    )
            else:
                for c in range(nchunks):
                    _direction_chunk_into(
                        partials, c, n, d, g, xs, xr, coef, zs, zr, scale, h_diag, from_g, use_axpy, use_dot, last
                    )
            dot, gd, dmax = _finish(partials, nchunks)
        if j < k:
            al[k - 1 - j] = dot * ro[order[k - 1 - j]]
        elif j == k:
            if k > 0:
                be = dot * ro[order[0]]
        elif j - k < k:
            be = dot * ro[order[j - k]]
    return gd, dmax


# ---------------------------------------------------------------------------------------------------------------------
# The strong-Wolfe line search (torch's ``_strong_wolfe``, from minFunc's lswolfe), written once for both callers:
# LBFGS.step (whose objective is a Python closure) and the compiled lbfgs_minimize (whose objective is an @njit
# function). It is driven by reverse communication: wolfe_start and wolfe_next say where to evaluate next (a step t
# and a gradient buffer, a slot of a pool of POOL buffers); the caller evaluates the objective there and hands back
# the loss and the slope, until wolfe_next says it is done. Its state is two small arrays (new_wolfe_state).
# Python's min and max are mirrored by _pymin and _pymax (the same result for NaN arguments).
# ---------------------------------------------------------------------------------------------------------------------

#: gradient buffers a line search may hold at once: the start point's, two bracket ends and the trial point's
POOL = 5
#: torch stops shrinking the bracket below this width (times max|d|); torch hard-codes it too
LS_TOLERANCE_CHANGE = 1e-9

# slots of the float state: the start point (loss, slope), the constants, the trial point, the previous point,
# and the bracket (steps, losses, slopes; two ends each)
_F, _GTD, _DNORM, _C1, _C2, _T, _FNEW, _GTDNEW, _TPREV, _FPREV, _GTDPREV = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
_BT, _BF, _BGTD = 11, 13, 15
_NFLOAT = 17
# slots of the int state: gradient buffers (start, trial, previous, bracket ends), counters, phase and flags
_G0, _GNEW, _GPREV, _BG = 0, 1, 2, 3
_LSITER, _EVALS, _MAXLS, _PHASE, _DONE, _INSUF, _LOW, _HIGH, _NB = 5, 6, 7, 8, 9, 10, 11, 12, 13
_NINT = 14
#: _PHASE values: the first evaluation, an extrapolation step, a zoom step
_FIRST, _EXTRAPOLATE, _ZOOM = 0, 1, 2
#: index of the number of evaluations a line search made, in the int state
WOLFE_EVALS = _EVALS


@njit(cache=CACHE, **JIT_OPTIONS)
def new_wolfe_state() -> tuple[np.ndarray, np.ndarray]:
    """The line search's working memory: a float64 and an int64 array, reused from search to search."""
    return np.zeros(_NFLOAT, np.float64), np.zeros(_NINT, np.int64)


@njit(cache=CACHE, **JIT_OPTIONS)
def _pymin(a: float, b: float) -> float:
    return b if b < a else a


@njit(cache=CACHE, **JIT_OPTIONS)
def _pymax(a: float, b: float) -> float:
    return b if b > a else a


@njit(cache=CACHE, **JIT_OPTIONS)
def cubic_interpolate(x1: float, f1: float, g1: float, x2: float, f2: float, g2: float, lo: float, hi: float) -> float:
    """Minimizer of the cubic through two points with values and slopes, clipped to ``[lo, hi]`` (torch's)."""
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 * d1 - g1 * g2
    if d2_square >= 0:
        d2 = np.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return _pymin(_pymax(min_pos, lo), hi)
    return (lo + hi) / 2.0


@njit(cache=CACHE, **JIT_OPTIONS)
def _free_slot(a: int, b: int, c: int) -> int:
    """The first gradient buffer that is none of ``a, b, c`` (-1: unused)."""
    for i in range(POOL):
        if i != a and i != b and i != c:
            return i
    return -1  # pragma: no cover (three are live at most)


@njit(cache=CACHE, **JIT_OPTIONS)
def wolfe_start(
    fs: np.ndarray,
    ns: np.ndarray,
    t: float,
    f: float,
    g0: int,
    gtd: float,
    d_norm: float,
    c1: float,
    c2: float,
    max_ls: int,
) -> tuple[float, int]:
    r"""Start a strong-Wolfe line search along ``d`` from a point with loss ``f`` and slope ``gtd = g.d < 0``.

    The search brackets a step satisfying ``f(x + t d) <= f + c1 t gtd`` and
    ``|g(x + t d).d| <= -c2 gtd`` by cubic interpolation, then zooms into the
    bracket, with at most ``max_ls`` evaluations after the first.

    Parameters
    ----------
    fs, ns : arrays from :func:`new_wolfe_state`, overwritten
    t : the first step to try
    f, gtd : loss and slope at the start point (step 0)
    g0 : the pool slot holding the start point's gradient (kept intact)
    d_norm : ``max|d|``, for the bracket's width test
    c1, c2 : the Wolfe constants
    max_ls : most evaluations after the first

    Returns
    -------
    ``(t, slot)``: evaluate the objective at ``x + t d`` with its gradient in
    pool slot ``slot``, then call :func:`wolfe_next`.
    """
    fs[_F] = f
    fs[_GTD] = gtd
    fs[_DNORM] = d_norm
    fs[_C1] = c1
    fs[_C2] = c2
    fs[_T] = t
    fs[_TPREV] = 0.0
    fs[_FPREV] = f
    fs[_GTDPREV] = gtd
    ns[_G0] = g0
    ns[_GPREV] = g0
    ns[_GNEW] = _free_slot(g0, -1, -1)
    ns[_LSITER] = 0
    ns[_EVALS] = 0
    ns[_MAXLS] = max_ls
    ns[_PHASE] = _FIRST
    ns[_DONE] = 0
    ns[_INSUF] = 0
    ns[_NB] = 0
    return t, ns[_GNEW]


@njit(cache=CACHE, **JIT_OPTIONS)
def _set_end(fs: np.ndarray, ns: np.ndarray, i: int, t: float, f: float, gtd: float, slot: int) -> None:
    fs[_BT + i] = t
    fs[_BF + i] = f
    fs[_BGTD + i] = gtd
    ns[_BG + i] = slot


@njit(cache=CACHE, **JIT_OPTIONS)
def _order_ends(fs: np.ndarray, ns: np.ndarray) -> None:
    """The low end is the one with the lower loss (the first on ties)."""
    if fs[_BF] <= fs[_BF + ns[_NB] - 1]:
        ns[_LOW], ns[_HIGH] = 0, 1
    else:
        ns[_LOW], ns[_HIGH] = 1, 0


@njit(cache=CACHE, **JIT_OPTIONS)
def wolfe_next(fs: np.ndarray, ns: np.ndarray, f_new: float, gtd_new: float) -> tuple[bool, float, float, int]:
    """Take the loss and slope at the point :func:`wolfe_start` or the last call asked for; say what comes next.

    Returns
    -------
    ``(more, t, f, slot)``: while ``more``, evaluate at ``x + t d`` with the
    gradient in pool slot ``slot`` and call again (``f`` is unused). Otherwise
    the search is over: the step is ``t``, its loss ``f``, its gradient in
    ``slot``, and ``ns[WOLFE_EVALS]`` evaluations were made.
    """
    f, gtd, c1, c2 = fs[_F], fs[_GTD], fs[_C1], fs[_C2]
    t = fs[_T]
    phase = ns[_PHASE]
    ns[_EVALS] += 1
    if phase != _FIRST:
        ns[_LSITER] += 1
    max_ls = ns[_MAXLS]

    if phase == _ZOOM:
        low, high = ns[_LOW], ns[_HIGH]
        if f_new > (f + c1 * t * gtd) or f_new >= fs[_BF + low]:
            # Armijo fails or no lower than the lowest point: new high end
            _set_end(fs, ns, high, t, f_new, gtd_new, ns[_GNEW])
            _order_ends(fs, ns)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                ns[_DONE] = 1
            elif gtd_new * (fs[_BT + high] - fs[_BT + low]) >= 0:
                # the old low end becomes the high end
                _set_end(fs, ns, high, fs[_BT + low], fs[_BF + low], fs[_BGTD + low], ns[_BG + low])
            _set_end(fs, ns, low, t, f_new, gtd_new, ns[_GNEW])
    else:
        # bracketing: the first evaluation or an extrapolation step
        fs[_FNEW] = f_new
        fs[_GTDNEW] = gtd_new
        if ns[_LSITER] < max_ls:
            t_prev, f_prev, gtd_prev = fs[_TPREV], fs[_FPREV], fs[_GTDPREV]
            if f_new > (f + c1 * t * gtd) or (ns[_LSITER] > 1 and f_new >= f_prev):
                ns[_NB] = 2
                _set_end(fs, ns, 0, t_prev, f_prev, gtd_prev, ns[_GPREV])
                _set_end(fs, ns, 1, t, f_new, gtd_new, ns[_GNEW])
            elif abs(gtd_new) <= -c2 * gtd:
                ns[_NB] = 1
                _set_end(fs, ns, 0, t, f_new, gtd_new, ns[_GNEW])
                ns[_DONE] = 1
            elif gtd_new >= 0:
                ns[_NB] = 2
                _set_end(fs, ns, 0, t_prev, f_prev, gtd_prev, ns[_GPREV])
                _set_end(fs, ns, 1, t, f_new, gtd_new, ns[_GNEW])
            else:
                # extrapolate
                min_step = t + 0.01 * (t - t_prev)
                max_step = t * 10
                fs[_T] = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, min_step, max_step)
                fs[_TPREV], fs[_FPREV], fs[_GTDPREV] = t, f_new, gtd_new
                ns[_GPREV] = ns[_GNEW]
                ns[_GNEW] = _free_slot(ns[_G0], ns[_GPREV], -1)
                ns[_PHASE] = _EXTRAPOLATE
                return True, fs[_T], 0.0, ns[_GNEW]
        if ns[_LSITER] == max_ls:
            # out of evaluations while extrapolating: bracket [0, t] (torch's choice)
            ns[_NB] = 2
            _set_end(fs, ns, 0, 0.0, f, 0.0, ns[_G0])
            _set_end(fs, ns, 1, t, f_new, 0.0, ns[_GNEW])
        _order_ends(fs, ns)
        ns[_PHASE] = _ZOOM

    # zoom: shrink the bracket until a point satisfies the strong Wolfe conditions
    if ns[_DONE] == 0 and ns[_LSITER] < max_ls:
        b0, b1 = fs[_BT], fs[_BT + 1]
        if not abs(b1 - b0) * fs[_DNORM] < LS_TOLERANCE_CHANGE:  # (a NaN width goes on, as in torch)
            lo, hi = (b0, b1) if b0 <= b1 else (b1, b0)
            t = cubic_interpolate(b0, fs[_BF], fs[_BGTD], b1, fs[_BF + 1], fs[_BGTD + 1], lo, hi)
            hi, lo = _pymax(b0, b1), _pymin(b0, b1)
            eps = 0.1 * (hi - lo)
            if _pymin(hi - t, t - lo) < eps:
                # close to a boundary: after insufficient progress (or outside), move 10% inside
                if ns[_INSUF] != 0 or t >= hi or t <= lo:
                    t = hi - eps if abs(t - hi) < abs(t - lo) else lo + eps
                    ns[_INSUF] = 0
                else:
                    ns[_INSUF] = 1
            else:
                ns[_INSUF] = 0
            fs[_T] = t
            ns[_GNEW] = _free_slot(ns[_G0], ns[_BG], ns[_BG + 1])
            return True, t, 0.0, ns[_GNEW]
    low = ns[_LOW] if ns[_NB] == 2 else 0
    return False, fs[_BT + low], fs[_BF + low], ns[_BG + low]
