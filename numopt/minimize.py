"""``numopt.minimize``: ``scipy.optimize.minimize``'s calling convention over numopt's optimizers.

For code that optimizes a plain function of an array (a simulation's parameters,
a fit) rather than a model: no Parameter objects, no closures, no step loop.

>>> import numpy as np, numopt
>>> def rosen(x):
...     f = 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2
...     g = np.array([-400 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0]), 200 * (x[1] - x[0] ** 2)])
...     return f, g
>>> res = numopt.minimize(rosen, [-1.2, 1.0])
>>> bool(res.success), np.round(res.x, 5).tolist(), res.nit
(True, [1.0, 1.0], 35)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._compiled_lbfgs import (
    FG_HOWTO,
    _check_counts,
    _check_tols,
    fg_parameters,
    is_njit_function,
    run_batch,
    run_one,
)
from .optimizer import Optimizer
from .parameter import Parameter

__all__ = ["OptimizeResult", "minimize", "minimize_batch"]

#: scipy's L-BFGS-B defaults (maxiter, gtol = pgtol, ftol = factr * machine epsilon)
_LBFGS_MAXITER = 15000
_DEFAULT_MAXITER = 1000
_DEFAULT_GTOL = 1e-5
_LBFGS_FTOL = 1e7 * np.finfo(np.float64).eps
_LBFGS_MAXFUN = 15000

#: status codes (scipy's meaning where scipy has one)
CONVERGED, MAX_ITER, NO_PROGRESS, NOT_FINITE, CALLBACK_STOP = 0, 1, 2, 3, 99


class OptimizeResult(dict):
    """The result of :func:`minimize`: a dict whose keys are also attributes (as scipy's).

    Attributes
    ----------
    x : ndarray
        The solution (shape and dtype of ``x0``; float64 unless ``x0`` was float32).
    fun : float
        The loss at ``x``.
    jac : ndarray
        The gradient at ``x``.
    nit : int
        Iterations done (optimizer steps; L-BFGS iterations for ``'lbfgs'``).
    nfev, njev : int
        Calls of ``fun`` and of the gradient.
    success : bool
        Whether a convergence test (``gtol``, ``ftol``) stopped the run.
    status : int
        0 converged, 1 ``maxiter`` or the evaluation budget reached, 2 no further
        progress possible (for L-BFGS: no lower point even by steepest descent
        after its history is dropped), 3 non-finite loss or gradient, 99 stopped
        by the callback.
    message : str
        Why the run stopped.
    method : str
        The optimizer class used.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    __setattr__ = dict.__setitem__  # type: ignore[assignment]
    __delattr__ = dict.__delitem__  # type: ignore[assignment]

    def __dir__(self) -> list[str]:
        return list(self.keys())

    def __repr__(self) -> str:
        if not self:
            return f"{type(self).__name__}()"
        width = max(map(len, self.keys())) + 1
        lines = []
        for k, v in self.items():
            text = np.array2string(v, threshold=8, edgeitems=3) if isinstance(v, np.ndarray) else repr(v)
            lines.append(f"{k.rjust(width)}: {text}")
        return "\n".join(lines)


#: why a compiled run stopped, by status
_MESSAGES = {
    CONVERGED: "converged: max|grad| <= gtol or relative reduction of the loss <= ftol",
    MAX_ITER: "maximum number of iterations or function evaluations reached",
    NO_PROGRESS: "stopped: no further progress (no lower point, even by steepest descent after dropping the history)",
    NOT_FINITE: "stopped: non-finite loss or gradient at an evaluated point; x is the last iterate with a finite loss",
}
#: the options a compiled run takes (numopt.minimize with an @njit fg and method "lbfgs")
_COMPILED_OPTIONS = {"maxiter", "max_iter", "gtol", "ftol", "history_size", "line_search_fn"}
#: names that mark the second parameter of an @njit fg(x, g, args)
_GRAD_NAMES = ("g", "grad", "gradient", "out")


class _NonFinite(Exception):
    def __init__(self, what: str, value: float) -> None:
        super().__init__(what)
        self.what = what
        self.value = value


class _Stop(Exception):
    pass


def available_methods() -> dict[str, type[Optimizer]]:
    """numopt's optimizer classes by lower-case name (those that exist in this installation)."""
    from . import optim

    return {
        name.lower(): cls
        for name, cls in vars(optim).items()
        if isinstance(cls, type) and issubclass(cls, Optimizer) and cls is not Optimizer
    }


#: scipy.optimize.minimize's methods numopt does not have, by normalized name: why, and the closest numopt method
_SCIPY_REFUSED = {
    "bfgs": "numopt has no dense BFGS; its limited-memory version is 'lbfgs' (scipy's 'L-BFGS-B' without bounds)",
    "cg": "numopt has no nonlinear conjugate gradient; the closest gradient method is 'lbfgs'",
    "newtoncg": "numopt uses gradients only, no Hessians; the closest is 'lbfgs'",
    "dogleg": "numopt uses gradients only, no Hessians; the closest is 'lbfgs'",
    "trustncg": "numopt uses gradients only, no Hessians; the closest is 'lbfgs'",
    "trustkrylov": "numopt uses gradients only, no Hessians; the closest is 'lbfgs'",
    "trustexact": "numopt uses gradients only, no Hessians; the closest is 'lbfgs'",
    "tnc": "numopt has no bounded truncated Newton; the closest is 'lbfgs' (no bounds)",
    "slsqp": "numopt has no constrained methods; the closest is 'lbfgs' (unconstrained)",
    "trustconstr": "numopt has no constrained methods; the closest is 'lbfgs' (unconstrained)",
    "cobyla": "numopt has no derivative-free methods (it needs gradients); the closest is 'lbfgs'",
    "cobyqa": "numopt has no derivative-free methods (it needs gradients); the closest is 'lbfgs'",
    "neldermead": "numopt has no derivative-free methods (it needs gradients); the closest is 'lbfgs'",
    "powell": "numopt has no derivative-free methods (it needs gradients); the closest is 'lbfgs'",
}
#: scipy's names for numopt's methods (normalized: lower case, no '-' or '_')
_SCIPY_ALIASES = {"lbfgsb": "lbfgs"}
#: scipy's L-BFGS-B option names for LBFGS's
_SCIPY_LBFGS_OPTIONS = {"maxcor": "history_size", "maxfun": "max_eval", "maxls": "max_ls"}


def _resolve_method(method: Any) -> type[Optimizer]:
    if isinstance(method, type) and issubclass(method, Optimizer):
        return method
    methods = available_methods()
    if not isinstance(method, str):
        raise TypeError(f"method must be an optimizer name or class, got {type(method).__name__} {method!r}")
    key = method.lower().replace("-", "").replace("_", "")
    key = _SCIPY_ALIASES.get(key, key)
    aliases = {k.replace("_", ""): v for k, v in methods.items()}
    if key in _SCIPY_REFUSED and key not in aliases:
        raise ValueError(f"method {method!r} (scipy's) is not available: {_SCIPY_REFUSED[key]}")
    if key not in aliases:
        raise ValueError(f"unknown method {method!r}; numopt has: {', '.join(sorted(methods))}")
    return aliases[key]


def _check_bounds(bounds: Any) -> None:
    """Refuse bounds that bound anything (``None`` and all-``(None, None)`` or infinite bounds pass)."""
    if bounds is None:
        return
    lb_ub = getattr(bounds, "lb", None), getattr(bounds, "ub", None)  # scipy.optimize.Bounds
    if lb_ub != (None, None):
        lows, highs = np.broadcast_arrays(np.asarray(lb_ub[0], float), np.asarray(lb_ub[1], float))
        pairs: Any = list(zip(lows.ravel(), highs.ravel()))
    else:
        pairs = bounds
    try:
        free = all((lo is None or float(lo) == -math.inf) and (hi is None or float(hi) == math.inf) for lo, hi in pairs)
    except (TypeError, ValueError):
        free = False
    if not free:
        raise ValueError(
            "numopt.minimize does not take bounds: its L-BFGS is unconstrained (scipy's L-BFGS-B without bounds). "
            "Reparametrize (e.g. x = lo + (hi - lo) / (1 + exp(-z)) and minimize over z) or use "
            "scipy.optimize.minimize(method='L-BFGS-B', bounds=...)"
        )


def _wants_intermediate_result(callback: Callable) -> bool:
    try:
        params = inspect.signature(callback).parameters
    except (TypeError, ValueError):
        return False
    return "intermediate_result" in params


def minimize(
    fun: Callable[..., Any],
    x0: Any,
    *,
    method: str | type[Optimizer] = "lbfgs",
    jac: bool | Callable[..., Any] = True,
    args: Sequence[Any] = (),
    options: dict[str, Any] | None = None,
    callback: Callable[..., Any] | None = None,
    progress: bool = False,
    bounds: Any = None,
) -> OptimizeResult:
    r"""Minimize ``fun`` from ``x0`` with one of numopt's optimizers.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args)`` returning ``(loss, grad)`` (``jac=True``) or the loss
        alone (``jac`` a callable). ``x`` is a read-only view of the current
        point with ``x0``'s shape; ``grad`` any array of that size.

        Or a Numba ``@njit`` function ``fg(x, g, args)`` that writes the
        gradient into ``g`` and returns the loss (taken to be of this form when
        it has three parameters, unless ``args`` has two elements and its
        second parameter is not named ``g``, ``grad`` or ``out``); it gets
        ``args`` as one object, as given. With ``method="lbfgs"`` and no options
        beyond ``maxiter``, ``gtol``, ``ftol``, ``history_size`` (and
        ``line_search_fn="strong_wolfe"``), no callback and no progress bar,
        the whole run is compiled (:func:`numopt.functional.lbfgs_minimize`:
        the same iterates); otherwise ``fg`` is called from Python.
    x0 : array_like
        The starting point. float32 stays float32; anything else becomes float64.
    method : str or Optimizer subclass, default "lbfgs"
        Any optimizer numopt has, by name, case-insensitive (``"lbfgs"``,
        ``"adam"``, ``"sgd"``, ...; :func:`available_methods` lists them).
        scipy's ``"L-BFGS-B"`` is ``"lbfgs"`` (with scipy's option names
        ``maxcor``, ``maxfun``, ``maxls`` accepted); scipy's other methods are
        refused with the closest numopt method in the message.
    jac : True or callable, default True
        True: ``fun`` returns the gradient too; a callable: ``jac(x, *args)``
        returns it. (numopt does not approximate gradients by finite differences.)
    args : tuple
        Extra arguments for ``fun`` and ``jac``.
    options : dict, optional
        Constructor arguments of the optimizer (``lr``, ``history_size``,
        ``line_search_fn``, ``betas``, ...) plus:

        ``maxiter``
            iterations (optimizer steps; L-BFGS iterations). Default 15000 for
            L-BFGS (scipy's), 1000 otherwise.
        ``gtol``
            stop when ``max|grad| <= gtol`` (default 1e-5, scipy's L-BFGS-B).
        ``ftol``
            stop when ``(f_prev - f) <= ftol * max(|f_prev|, |f|, 1)`` after an
            iteration (scipy's rule; default 2.2e-9 for L-BFGS, 0 = off for
            the other methods, whose loss need not decrease every step).

        For ``"lbfgs"`` the defaults differ from ``numopt.LBFGS``'s where scipy's
        suit a deterministic problem better: ``line_search_fn="strong_wolfe"``,
        ``history_size=10``, ``tolerance_grad=gtol``, ``tolerance_change=0``
        (``ftol`` plays its role) and ``max_eval = max(15000, maxiter * 5 // 4)``
        (scipy's ``maxfun``; pass ``max_eval`` to limit evaluations). As in
        scipy's L-BFGS-B, an iteration that makes no progress (no descent
        direction, or no lower loss) drops the curvature history and is redone
        as a steepest-descent step; the run stops (status 2) only when that
        fails too. (A curvature pair from the first steps of a violent start
        can otherwise shrink every later step below the last bit of ``x``.)
    callback : callable, optional
        Called after every iteration with a copy of the current point, or, if
        its parameter is named ``intermediate_result``, with an
        :class:`OptimizeResult` (``x, fun, jac, nit, nfev``), as in scipy.
        Returning True or raising ``StopIteration`` stops the run (status 99).
    progress : bool, default False
        Show a tqdm progress bar with the current loss (needs the optional
        ``tqdm`` package).
    bounds : None
        Refused unless it bounds nothing: numopt's methods are unconstrained.

    Returns
    -------
    OptimizeResult
        ``x, fun, jac, nit, nfev, njev, success, status, message, method``.
        A non-finite loss or gradient stops the run with ``success=False``,
        ``status=3`` and ``x`` the last iterate whose loss was finite.
    """
    _check_bounds(bounds)
    cls = _resolve_method(method)
    is_lbfgs = cls.__name__ == "LBFGS"
    opts = dict(options or {})
    if is_lbfgs:
        for scipy_name, name in _SCIPY_LBFGS_OPTIONS.items():
            if scipy_name in opts and name not in opts:
                opts[name] = opts.pop(scipy_name)
    if _is_fg(fun, args, jac):
        if is_lbfgs and callback is None and not progress and set(opts) <= _COMPILED_OPTIONS:
            if opts.get("line_search_fn", "strong_wolfe") == "strong_wolfe":
                return _minimize_compiled(fun, x0, args, opts)
        fun = _python_fun(fun, args)
        args = ()
    if is_lbfgs and "maxiter" not in opts and "max_iter" in opts:
        opts["maxiter"] = opts.pop("max_iter")
    maxiter = opts.pop("maxiter", _LBFGS_MAXITER if is_lbfgs else _DEFAULT_MAXITER)
    gtol = float(opts.pop("gtol", _DEFAULT_GTOL))
    ftol = float(opts.pop("ftol", _LBFGS_FTOL if is_lbfgs else 0.0))
    if isinstance(maxiter, bool) or not isinstance(maxiter, (int, np.integer)) or maxiter < 0:
        raise ValueError(f"options['maxiter'] must be an int >= 0, got {maxiter!r}")
    maxiter = int(maxiter)
    if not (gtol >= 0 and ftol >= 0):
        raise ValueError(f"options['gtol'] and options['ftol'] must be >= 0, got gtol={gtol!r}, ftol={ftol!r}")
    if jac is not True and not callable(jac):
        raise ValueError(
            "jac must be True (fun returns (loss, grad)) or a callable returning the gradient; "
            "numopt does not approximate gradients by finite differences"
        )
    if is_lbfgs:
        opts.setdefault("line_search_fn", "strong_wolfe")
        opts.setdefault("history_size", 10)
        opts.setdefault("tolerance_grad", gtol)
        opts.setdefault("tolerance_change", 0.0)
        opts["max_iter"] = max(1, maxiter)
        opts.setdefault("max_eval", max(_LBFGS_MAXFUN, maxiter * 5 // 4))
    try:
        inspect.signature(cls).bind_partial([], **opts)
    except TypeError:
        known = [n for n in inspect.signature(cls).parameters if n != "params"]
        bad = sorted(set(opts) - set(known))
        raise TypeError(
            f"options {bad} are not arguments of numopt.{cls.__name__} (its arguments: {', '.join(known)}; "
            "minimize also takes maxiter, gtol, ftol)"
        ) from None

    start = np.array(x0, copy=True)
    if start.dtype != np.float32:
        start = start.astype(np.float64)
    start = np.ascontiguousarray(start)
    shape = start.shape
    p = Parameter(start)
    opt = cls([p], **opts)
    if is_lbfgs:
        opt._refresh_on_stall = True  # scipy's remedy for a stalled run (the compiled loop has it too)
    p.zero_grad_()
    grad_buf = p.grad
    x_view = p.data.view()
    x_view.flags.writeable = False
    args = tuple(args)

    counts = {"nfev": 0, "njev": 0}

    def evaluate() -> float:
        """One call of fun (and jac): set p.grad, return the loss; raise _NonFinite on inf/nan."""
        if jac is True:
            out = fun(x_view, *args)
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise TypeError("with jac=True, fun must return (loss, grad)")
            f, g = out
            counts["njev"] += 1
        else:
            f = fun(x_view, *args)
            g = jac(x_view, *args)
            counts["njev"] += 1
        counts["nfev"] += 1
        f = float(np.asarray(f).reshape(()))
        g = np.asarray(g)
        if g.size != start.size:
            raise ValueError(f"the gradient has {g.size} elements ({g.shape}), x has {start.size} ({shape})")
        if p.grad is not grad_buf:  # an optimizer may have reset it (zero_grad)
            p.zero_grad_()
        np.copyto(p.grad, g.reshape(shape), casting="same_kind")
        if not math.isfinite(f):
            raise _NonFinite("loss", f)
        if p.grad.size and not (np.isfinite(p.grad.max()) and np.isfinite(p.grad.min())):
            raise _NonFinite("gradient", math.nan)
        return f

    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            raise ImportError(
                "progress=True needs the optional tqdm package: pip install tqdm (or pip install 'numopt[progress]')"
            ) from None
        bar = tqdm(total=maxiter, desc=f"minimize ({cls.__name__})", unit="it")

    intermediate = callback is not None and _wants_intermediate_result(callback)
    best = {"x": start.copy(), "f": math.nan, "g": np.zeros_like(start), "nit": 0}
    status, message = MAX_ITER, "maximum number of iterations reached"

    def record(f: float, g: np.ndarray) -> bool:
        """Bookkeeping after an iteration: progress, callback, ftol; True means stop."""
        nonlocal status, message
        f_prev = best["f"]
        best["nit"] += 1
        best["f"] = f
        np.copyto(best["x"], p.data)
        np.copyto(best["g"], g.reshape(shape))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{f:.6g}", refresh=False)
        if callback is not None:
            try:
                if intermediate:
                    res = OptimizeResult(
                        x=best["x"].copy(), fun=f, jac=best["g"].copy(), nit=best["nit"], nfev=counts["nfev"]
                    )
                    stop = callback(intermediate_result=res)
                else:
                    stop = callback(best["x"].copy())
            except StopIteration:
                stop = True
            if stop is True:
                status, message = CALLBACK_STOP, "stopped by the callback"
                return True
        if ftol > 0 and (f_prev - f) <= ftol * max(abs(f_prev), abs(f), 1.0):
            status, message = CONVERGED, "converged: relative reduction of the loss <= ftol"
            return True
        return False

    try:
        f0 = evaluate()
        best["f"] = f0
        np.copyto(best["g"], p.grad)
        if maxiter == 0:
            pass
        elif is_lbfgs:
            _run_lbfgs(opt, p, evaluate, record, best, gtol)
        else:
            if _max_abs(p.grad) <= gtol:
                status, message = CONVERGED, "converged: max|grad| <= gtol"
            while status != CONVERGED and best["nit"] < maxiter:
                opt.step()
                f = evaluate()
                if record(f, p.grad):
                    break
                if _max_abs(p.grad) <= gtol:
                    status, message = CONVERGED, "converged: max|grad| <= gtol"
                    break
        if is_lbfgs and maxiter > 0:
            status, message = _lbfgs_status(opt, p, best, gtol, status, message, maxiter)
        elif maxiter == 0 and _max_abs(p.grad) <= gtol:
            status, message = CONVERGED, "converged: max|grad| <= gtol"
    except _NonFinite as e:
        status = NOT_FINITE
        value = "nan" if math.isnan(e.value) else repr(e.value)
        message = (
            f"stopped: non-finite {e.what} ({value}) at an evaluated point; x is the last iterate with a finite loss"
            if e.what == "loss"
            else "stopped: non-finite gradient at an evaluated point; x is the last iterate with a finite loss"
        )
        if best["nit"] == 0 and not math.isfinite(best["f"]):
            message = f"stopped: non-finite {e.what} at x0"
    finally:
        if bar is not None:
            bar.close()
    if is_lbfgs and status != NOT_FINITE and maxiter > 0:
        best["nit"] = int(opt.state[p].get("n_iter", best["nit"]))
    return OptimizeResult(
        x=best["x"],
        fun=float(best["f"]),
        jac=best["g"],
        nit=int(best["nit"]),
        nfev=counts["nfev"],
        njev=counts["njev"],
        success=status == CONVERGED,
        status=status,
        message=message,
        method=cls.__name__,
    )


def _max_abs(a: np.ndarray) -> float:
    return float(max(abs(a.max()), abs(a.min()))) if a.size else 0.0


def _run_lbfgs(
    opt: Any, p: Parameter, evaluate: Callable[[], float], record: Callable, best: dict[str, Any], gtol: float
) -> None:
    """One ``LBFGS.step`` does the whole run; ``record`` sees every iteration through the optimizer's hook."""
    first = [True]

    def closure() -> float:
        if first[0]:  # LBFGS.step evaluates x0 first: reuse the evaluation minimize already made
            first[0] = False
            return best["f"]
        return evaluate()

    negate = bool(opt.param_groups[0]["maximize"])  # LBFGS keeps -grad internally when maximizing

    def hook(f: float, g: np.ndarray, gmax: float) -> bool:
        return record(f, -g if negate else g)

    opt._iteration_hook = hook
    try:
        opt.step(closure)
    finally:
        opt._iteration_hook = None
    if opt._moved_since_eval:  # no line search, last iteration: the point moved without an evaluation
        f = evaluate()
        best["f"] = f
        np.copyto(best["x"], p.data)
        np.copyto(best["g"], p.grad)


def _lbfgs_status(
    opt: Any, p: Parameter, best: dict[str, Any], gtol: float, status: int, message: str, maxiter: int
) -> tuple[int, str]:
    if status in (CONVERGED, CALLBACK_STOP):
        return status, message
    if _max_abs(best["g"]) <= gtol:
        return CONVERGED, "converged: max|grad| <= gtol"
    st = opt.state[p]
    group = opt.param_groups[0]
    if st.get("n_iter", 0) >= maxiter:
        return MAX_ITER, "maximum number of iterations reached"
    if st.get("func_evals", 0) >= group["max_eval"]:
        return MAX_ITER, "maximum number of function evaluations (max_eval) reached"
    return NO_PROGRESS, _MESSAGES[NO_PROGRESS]


def _is_fg(fun: Any, args: Any, jac: Any) -> bool:
    """Whether ``fun`` is an ``@njit`` ``fg(x, g, args)`` (see minimize's docstring for the rule)."""
    if jac is not True or not is_njit_function(fun):
        return False
    names = fg_parameters(fun)
    if names is None or len(names) != 3:
        return False
    return not (isinstance(args, (tuple, list)) and len(args) == 2 and names[1] not in _GRAD_NAMES)


def _python_fun(fg: Any, args: Any) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """``fg(x, g, args)`` as minimize's ``fun(x) -> (loss, grad)``."""
    args = tuple(args) if isinstance(args, list) else args

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        g = np.empty(x.size, x.dtype)
        return fg(x.reshape(-1), g, args), g

    return fun


def _float_start(x0: Any, name: str) -> np.ndarray:
    """A C-contiguous float64 (or float32) copy of ``x0``."""
    try:
        start = np.array(x0, copy=True)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be an array of numbers: {e}") from None
    if not (np.issubdtype(start.dtype, np.number) or start.dtype == np.bool_) or np.iscomplexobj(start):
        raise TypeError(f"{name} must be an array of real numbers, got dtype {start.dtype}")
    if start.dtype != np.float32:
        start = start.astype(np.float64)
    return np.ascontiguousarray(start)


def _compiled_settings(opts: dict[str, Any], where: str) -> tuple[int, int, float, float]:
    """(history_size, maxiter, gtol, ftol) from minimize's options, checked."""
    maxiter = opts.get("maxiter", opts.get("max_iter", _LBFGS_MAXITER))
    if isinstance(maxiter, bool) or not isinstance(maxiter, (int, np.integer)) or maxiter < 0:
        raise ValueError(f"{where}['maxiter'] must be an int >= 0, got {maxiter!r}")
    history_size, maxiter = _check_counts(opts.get("history_size", 10), maxiter)
    gtol, ftol = _check_tols(opts.get("gtol", _DEFAULT_GTOL), opts.get("ftol", _LBFGS_FTOL))
    return history_size, maxiter, gtol, ftol


def _minimize_compiled(fg: Any, x0: Any, args: Any, opts: dict[str, Any]) -> OptimizeResult:
    """minimize's L-BFGS run by ``functional.lbfgs_minimize``'s compiled loop."""
    history_size, maxiter, gtol, ftol = _compiled_settings(opts, "options")
    start = _float_start(x0, "x0")
    x = start.reshape(-1)
    jac = np.empty_like(x)
    args = tuple(args) if isinstance(args, list) else args
    f, nit, nfev, status = run_one(fg, x, args, jac, history_size, maxiter, gtol, ftol)
    return OptimizeResult(
        x=start,
        fun=float(f),
        jac=jac.reshape(start.shape),
        nit=int(nit),
        nfev=int(nfev),
        njev=int(nfev),
        success=status == CONVERGED,
        status=int(status),
        message=_MESSAGES[int(status)],
        method="LBFGS",
    )


def minimize_batch(fg: Any, X0: Any, args: Any = None, **options: Any) -> OptimizeResult:
    r"""Minimize many problems of one form at once: L-BFGS compiled whole, one problem per thread task.

    Runs :func:`numopt.functional.lbfgs_minimize` from every row of ``X0`` in a
    ``prange`` loop (Numba's threads: ``numopt.set_num_threads``). Each problem
    stops on its own (a hard one does not hold the others back) and a
    non-finite objective in one never affects the others. Given the same
    objective, each problem takes the same steps as ``numopt.minimize``.

    Parameters
    ----------
    fg : Numba ``@njit`` function
        ``fg(x, g, args)``: writes the gradient at ``x`` (a 1-D row) into ``g``
        and returns the objective.
    X0 : array_like, shape ``(B, ...)``
        ``B`` starting points; problem ``b`` starts from ``X0[b]``, flattened.
    args : None, array or tuple of arrays, optional
        Per-problem data with a leading batch axis of length ``B``: problem
        ``b`` gets ``args[b]`` (for a tuple, the tuple of each array's row
        ``b``); None passes None. Data shared by every problem can be a
        broadcast view, ``np.broadcast_to(a, (B, *a.shape))``, or a global of
        ``fg``.
    **options
        ``maxiter`` (default 15000), ``gtol`` (1e-5), ``ftol`` (2.2e-9),
        ``history_size`` (10; scipy's ``maxcor`` also accepted): as for
        :func:`numopt.minimize`.

    Returns
    -------
    OptimizeResult
        Arrays over the batch: ``x`` (``X0``'s shape; float32 stays float32,
        anything else becomes float64), ``jac`` (the gradients at ``x``),
        ``fun``, ``nit``, ``nfev``, ``status`` (as :func:`numopt.minimize`: 0
        converged, 1 iteration or evaluation limit, 2 no further progress, 3
        non-finite objective or gradient, ``x`` left at the last finite
        iterate) and ``success`` (``status == 0``).

    Examples
    --------
    >>> import numpy as np, numopt
    >>> from numba import njit
    >>> @njit
    ... def fg(x, g, c):
    ...     g[:] = 2 * (x - c)
    ...     return ((x - c) ** 2).sum()
    >>> c = np.arange(6.0).reshape(3, 2)
    >>> res = numopt.minimize_batch(fg, np.zeros((3, 2)), c)
    >>> bool(np.allclose(res.x, c)), res.status.tolist()
    (True, [0, 0, 0])
    """
    if not is_njit_function(fg):
        raise TypeError(f"minimize_batch: {FG_HOWTO}\ngot {type(fg).__name__} {fg!r}")
    opts = dict(options)
    if "maxcor" in opts and "history_size" not in opts:
        opts["history_size"] = opts.pop("maxcor")
    unknown = sorted(set(opts) - (_COMPILED_OPTIONS - {"line_search_fn"}))
    if unknown:
        raise TypeError(
            f"minimize_batch: unknown options {unknown}; it takes maxiter, gtol, ftol and history_size "
            "(its L-BFGS is numopt.minimize's, with the strong-Wolfe line search)"
        )
    history_size, maxiter, gtol, ftol = _compiled_settings(opts, "minimize_batch options")
    X = _float_start(X0, "X0")
    if X.ndim < 2:
        raise ValueError(
            f"X0 must have a leading batch axis, shape (B, n) (B problems of n variables), got shape {X.shape}"
        )
    batch = X.shape[0]
    xs = X.reshape(batch, -1)
    if isinstance(args, list):
        args = tuple(args)
    items = args if isinstance(args, tuple) else (args,) if args is not None else ()
    for i, a in enumerate(items):
        what = "args" if not isinstance(args, tuple) else f"args[{i}]"
        if not isinstance(a, np.ndarray):
            raise TypeError(
                f"minimize_batch: {what} must be a NumPy array with a leading batch axis of length {batch} "
                f"(problem b gets {what}[b]), got {type(a).__name__}"
            )
        if a.ndim == 0 or a.shape[0] != batch:
            raise ValueError(
                f"minimize_batch: {what} has shape {a.shape}, but its leading axis must be the batch size "
                f"{batch} (X0 has shape {X.shape}): problem b gets {what}[b]"
            )
    grads = np.empty_like(xs)
    fun = np.empty(batch)
    nit = np.zeros(batch, np.int64)
    nfev = np.zeros(batch, np.int64)
    status = np.zeros(batch, np.int64)
    if batch:
        run_batch(fg, xs, args, grads, fun, nit, nfev, status, history_size, maxiter, gtol, ftol)
    return OptimizeResult(
        x=X,
        fun=fun,
        jac=grads.reshape(X.shape),
        nit=nit,
        nfev=nfev,
        status=status,
        success=status == CONVERGED,
        method="LBFGS",
    )
