"""L-BFGS compiled whole: ``functional.lbfgs_minimize`` and the loop behind ``minimize_batch``.

The algorithm is :class:`numopt.LBFGS` with ``line_search_fn="strong_wolfe"`` under
:func:`numopt.minimize`'s scipy-style stopping rules, built from the same compiled
pieces (``numopt.kernels.lbfgs``: the gradient reductions, the history update, the
two-loop recursion and the strong-Wolfe line search), so that, given the same
objective, it takes the same steps and stops at the same point. Only the outer loop
is written here: it calls the user's ``@njit`` objective instead of a Python closure,
keeps its history in a fixed ring of ``history_size + 1`` rows, and allocates its
working memory once per call.

The functions taking the objective are not cached on disk: Numba keys a compiled
function on its argument types, and the type of an ``@njit`` function is the
function itself, so a new process compiles them again (a few seconds, once).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
from numba import njit, prange, types
from numba.core.errors import TypingError
from numba.core.registry import CPUDispatcher
from numba.extending import overload

from ._jit import CHUNK, JIT_OPTIONS
from .kernels.lbfgs import (
    POOL,
    lbfgs_axpy,
    lbfgs_direction,
    lbfgs_gather,
    lbfgs_push,
    new_wolfe_state,
    wolfe_next,
    wolfe_start,
)

__all__ = ["FG_HOWTO", "is_njit_function", "lbfgs_minimize", "run_batch", "run_one"]

# the thread-free twins: the compiled loop runs inside the caller's prange
_gather = lbfgs_gather.serial
_axpy = lbfgs_axpy.serial
_push = lbfgs_push.serial
_direction = lbfgs_direction.serial

#: scipy's L-BFGS-B defaults, as numopt.minimize's for "lbfgs"
MAXFUN = 15000
#: minimize's status codes
CONVERGED, MAX_ITER, NO_PROGRESS, NOT_FINITE = 0, 1, 2, 3

FG_HOWTO = (
    "fg must be a Numba @njit function fg(x, g, args) that writes the gradient at x into g and returns the "
    "objective, e.g.\n\n"
    "    from numba import njit\n\n"
    "    @njit\n"
    "    def fg(x, g, args):\n"
    "        g[:] = 2 * (x - args)\n"
    "        return ((x - args) ** 2).sum()\n"
)


def is_njit_function(fn: Any) -> bool:
    """Whether ``fn`` is a Numba ``@njit`` (CPU) function."""
    return isinstance(fn, CPUDispatcher)


@njit(**JIT_OPTIONS)
def run_one(
    fg: Any, x: np.ndarray, args: Any, g_out: np.ndarray, history_size: int, max_iter: int, gtol: float, ftol: float
) -> tuple[float, int, int, int]:
    """The compiled loop; ``g_out`` (empty, or ``x``'s size) receives the gradient at the returned point."""
    if history_size < 1:
        raise ValueError("lbfgs_minimize: history_size must be an int >= 1")
    if max_iter < 0:
        raise ValueError("lbfgs_minimize: max_iter must be an int >= 0")
    if not (gtol >= 0 and ftol >= 0):
        raise ValueError("lbfgs_minimize: gtol and ftol must be >= 0")
    n = x.size
    tp = x.dtype.type
    m = history_size
    max_eval = max(MAXFUN, max_iter * 5 // 4)
    # working memory, allocated once
    pool = np.empty((POOL, n), x.dtype)
    gsum = np.zeros(POOL)
    gmax = np.zeros(POOL)
    d = np.empty(n, x.dtype)
    prev = np.empty(n, x.dtype)
    x0 = np.empty(n, x.dtype)
    dirs = np.empty((m + 1, n), x.dtype)
    stps = np.empty((m + 1, n), x.dtype)
    ro = np.zeros(m + 1)
    al = np.zeros(m)
    order = np.arange(m + 1)  # order[:k]: the live rows, oldest first; order[k]: the row the next pair goes to
    partials = np.zeros((3, max(1, (n + CHUNK - 1) // CHUNK)))
    fs, ns = new_wolfe_state()
    empty = d[:0]

    gi = 0
    f = np.float64(fg(x, pool[gi], args))
    nfev = 1
    _, gsum[gi], gmax[gi] = _gather(pool[gi], pool[gi], empty, False, False, partials)  # (in place: reductions only)
    if not (math.isfinite(f) and gmax[gi] < np.inf):
        return f, 0, nfev, NOT_FINITE
    if max_iter == 0 or gmax[gi] <= gtol:
        if g_out.size == n:
            g_out[:] = pool[gi]
        return f, 0, nfev, CONVERGED if gmax[gi] <= gtol else MAX_ITER

    n_iter = 0
    k = 0
    h_diag = 1.0
    t = 1.0
    loss = f
    status = -1
    fresh = True  # no curvature pair yet: a steepest-descent step (the first iteration, or after a refresh)
    while True:
        n_iter += 1
        g = pool[gi]
        # direction
        if fresh:
            prev[:] = g
            k = 0
            h_diag = 1.0
        else:
            row = order[k]
            ys, yy = _push(g, prev, d, tp(t), dirs[row], stps[row], False, partials)
            if ys > 1e-10:
                if k == m:  # drop the oldest pair: its row takes the next one
                    oldest = order[0]
                    for i in range(m):
                        order[i] = order[i + 1]
                    order[m] = oldest
                else:
                    k += 1
                ro[row] = 1.0 / ys
                h_diag = ys / yy
        gtd, d_max = _direction(g, d, dirs, stps, order[:k], ro, al, tp(h_diag), False, partials)
        prev_loss = loss

        # step length
        if fresh:
            inv = 1.0 / gsum[gi]
            t = inv if inv < 1.0 else 1.0
        else:
            t = 1.0
        if gtd > -0.0:
            if fresh:
                break
            fresh = True  # not a descent direction: refresh the history (see below) and redo the iteration
            n_iter -= 1
            continue
        steepest = fresh
        fresh = False

        x0[:] = x
        t, slot = wolfe_start(fs, ns, t, loss, gi, gtd, d_max, 1e-4, 0.9, max_eval - nfev)
        while True:
            _axpy(x, x0, d, tp(t), False)
            f_new = np.float64(fg(x, pool[slot], args))
            nfev += 1
            gtd_new, gsum[slot], gmax[slot] = _gather(pool[slot], pool[slot], d, False, False, partials)
            if not (math.isfinite(f_new) and gmax[slot] < np.inf):
                # x back to the last iterate; the iterations counted are those completed
                x[:] = x0
                if g_out.size == n:
                    g_out[:] = pool[gi]
                return loss, n_iter - 1, nfev, NOT_FINITE
            more, t, f_end, slot = wolfe_next(fs, ns, f_new, gtd_new)
            if not more:
                break
        loss = f_end
        gi = slot
        _axpy(x, x0, d, tp(t), False)

        # minimize's rules, then LBFGS's (tolerance_grad = gtol, tolerance_change = 0)
        if ftol > 0 and (prev_loss - loss) <= ftol * max(abs(prev_loss), abs(loss), 1.0):
            status = CONVERGED
            break
        if n_iter == max_iter or nfev >= max_eval or gmax[gi] <= gtol:
            break
        if d_max * abs(t) <= 0.0 or not loss < prev_loss:
            # No progress. As scipy's L-BFGS-B does, drop the curvature history (it can hold a pair from a
            # region of wildly different curvature, which makes every later step vanish) and take a
            # steepest-descent step; stop only when that makes no progress either.
            if steepest:
                break
            fresh = True

    if g_out.size == n:
        g_out[:] = pool[gi]
    if status < 0:
        if gmax[gi] <= gtol:
            status = CONVERGED
        elif n_iter >= max_iter or nfev >= max_eval:
            status = MAX_ITER
        else:
            status = NO_PROGRESS
    return loss, n_iter, nfev, status


def _row(args: Any, b: int) -> Any:
    """Problem ``b``'s share of batched ``args`` (compiled only; see the overload)."""
    raise NotImplementedError  # pragma: no cover


@overload(_row, jit_options=JIT_OPTIONS)
def _row_impl(args, b):  # type: ignore[no-untyped-def]  (Numba matches these parameters to the impl's)
    if args is None or isinstance(args, (types.NoneType, types.Omitted)):
        return lambda args, b: None
    if isinstance(args, types.Array):
        return lambda args, b: args[b]
    if isinstance(args, types.BaseTuple):
        # a tuple of arrays: a tuple of their rows
        items = "".join(f"args[{i}][b], " for i in range(len(args)))
        namespace: dict[str, Any] = {}
        exec(f"def impl(args, b):\n    return ({items})\n", namespace)  # noqa: S102 (generated from a count)
        return namespace["impl"]
    raise TypingError(f"minimize_batch: args must be None, an array or a tuple of arrays, got {args}")


@njit(parallel=True, **JIT_OPTIONS)
def run_batch(
    fg: Any,
    xs: np.ndarray,
    args: Any,
    grads: np.ndarray,
    fun: np.ndarray,
    nit: np.ndarray,
    nfev: np.ndarray,
    status: np.ndarray,
    history_size: int,
    max_iter: int,
    gtol: float,
    ftol: float,
) -> None:
    """Minimize from every row of ``xs`` (in place), one problem per ``prange`` iteration."""
    for b in prange(xs.shape[0]):
        f, it, ev, st = run_one(fg, xs[b], _row(args, b), grads[b], history_size, max_iter, gtol, ftol)
        fun[b] = f
        nit[b] = it
        nfev[b] = ev
        status[b] = st


def lbfgs_minimize(
    fg: Any,
    x: np.ndarray,
    args: Any = None,
    history_size: int = 10,
    max_iter: int = 15000,
    gtol: float = 1e-5,
    ftol: float = 2.2e-9,
) -> tuple[float, int, int, int]:
    r"""Minimize ``fg`` from ``x`` (in place) by L-BFGS compiled whole, from Python or inside ``@njit``/``prange``.

    The algorithm of ``numopt.minimize(fun, x)`` (``numopt.LBFGS`` with
    ``line_search_fn="strong_wolfe"`` and scipy's stopping rules), built from
    the same compiled pieces: given the same objective it takes the same steps.
    Like scipy's L-BFGS-B (and unlike torch's LBFGS, which stops or repeats
    the step), an iteration that makes no progress (no descent direction, or
    no lower objective) drops the curvature history and is redone as a
    steepest-descent step.
    Its working memory (``(history_size + 7) * x.size`` numbers) is allocated
    once per call; nothing is allocated per iteration.

    Parameters
    ----------
    fg : Numba ``@njit`` function
        ``fg(x, g, args)``: writes the gradient at ``x`` into ``g`` (every
        element) and returns the objective.
    x : 1-D C-contiguous float64 or float32 array
        The starting point, overwritten with the solution.
    args : anything Numba can pass (an array, a tuple, a number), optional
        Passed to ``fg`` as is.
    history_size : int, default 10
        Curvature pairs kept (>= 1).
    max_iter : int, default 15000
        Iterations (>= 0). Evaluations are limited to ``max(15000, max_iter * 5 // 4)``.
    gtol : float, default 1e-5
        Stop when ``max|g| <= gtol``.
    ftol : float, default 2.2e-9
        Stop when ``(f_prev - f) <= ftol * max(|f_prev|, |f|, 1)`` after an
        iteration (0: off).

    Returns
    -------
    f : float
        The objective at ``x``.
    nit, nfev : int
        Iterations and evaluations of ``fg``.
    status : int
        scipy's meaning: 0 converged (``gtol`` or ``ftol``), 1 iteration or
        evaluation limit, 2 no further progress (no lower point, even by
        steepest descent after dropping the history), 3 non-finite objective or gradient: ``x`` and ``f`` are the last
        iterate with a finite objective.

    Examples
    --------
    >>> import numpy as np
    >>> from numba import njit, prange
    >>> from numopt.functional import lbfgs_minimize
    >>> @njit
    ... def fg(x, g, c):
    ...     g[:] = 2 * (x - c)
    ...     return ((x - c) ** 2).sum()
    >>> @njit(parallel=True)
    ... def solve_all(xs, cs):
    ...     out = np.empty(xs.shape[0])
    ...     for b in prange(xs.shape[0]):
    ...         out[b] = lbfgs_minimize(fg, xs[b], cs[b])[0]
    ...     return out
    >>> xs = np.zeros((4, 3))
    >>> cs = np.arange(12.0).reshape(4, 3)
    >>> bool(solve_all(xs, cs).max() < 1e-12 and np.allclose(xs, cs))
    True
    """
    if not is_njit_function(fg):
        raise TypeError(f"{FG_HOWTO}\ngot {type(fg).__name__} {fg!r}")
    if not isinstance(x, np.ndarray) or x.ndim != 1 or x.dtype not in (np.float32, np.float64):
        shape = getattr(x, "shape", None)
        raise TypeError(
            f"x must be a 1-D float64 or float32 NumPy array (updated in place), got {type(x).__name__}"
            + (f" of shape {shape} and dtype {x.dtype}" if shape is not None and hasattr(x, "dtype") else "")
        )
    if not (x.flags.c_contiguous and x.flags.writeable):
        raise ValueError("x must be C-contiguous and writeable (it is updated in place): pass np.ascontiguousarray(x)")
    history_size, max_iter = _check_counts(history_size, max_iter)
    gtol, ftol = _check_tols(gtol, ftol)
    return run_one(fg, x, args, x[:0], history_size, max_iter, gtol, ftol)


@overload(lbfgs_minimize, jit_options=JIT_OPTIONS)
def _lbfgs_minimize_njit(fg, x, args=None, history_size=10, max_iter=15000, gtol=1e-5, ftol=2.2e-9):  # type: ignore[no-untyped-def]
    if not isinstance(fg, types.Dispatcher):
        raise TypingError(f"{FG_HOWTO}\ngot {fg}")
    if not (isinstance(x, types.Array) and x.ndim == 1 and x.dtype in (types.float32, types.float64)):
        raise TypingError(f"lbfgs_minimize: x must be a 1-D float64 or float32 array, got {x}")

    def impl(fg, x, args=None, history_size=10, max_iter=15000, gtol=1e-5, ftol=2.2e-9):  # type: ignore[no-untyped-def]
        return run_one(fg, x, args, x[:0], history_size, max_iter, gtol, ftol)

    return impl


def _check_counts(history_size: Any, max_iter: Any) -> tuple[int, int]:
    for name, value, low in (("history_size", history_size, 1), ("max_iter", max_iter, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int >= {low}, got {type(value).__name__} {value!r}")
        if value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(history_size), int(max_iter)


def _check_tols(gtol: Any, ftol: Any) -> tuple[float, float]:
    out = []
    for name, value in (("gtol", gtol), ("ftol", ftol)):
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number >= 0, got {type(value).__name__} {value!r}") from None
        if not v >= 0 or math.isinf(v):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        out.append(v)
    return out[0], out[1]


def fg_parameters(fn: Any) -> list[str] | None:
    """The positional parameter names of an ``@njit`` function's Python source, or None if it takes ``*args``."""
    try:
        params = list(inspect.signature(fn.py_func).parameters.values())
    except (TypeError, ValueError, AttributeError):
        return None
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.KEYWORD_ONLY) for p in params):
        return None
    return [p.name for p in params]
