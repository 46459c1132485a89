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

from .optimizer import Optimizer
from .parameter import Parameter

__all__ = ["OptimizeResult", "minimize"]

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
        progress possible (line search found no lower point), 3 non-finite loss
        or gradient, 99 stopped by the callback.
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


def _resolve_method(method: Any) -> type[Optimizer]:
    if isinstance(method, type) and issubclass(method, Optimizer):
        return method
    methods = available_methods()
    if not isinstance(method, str):
        raise TypeError(f"method must be an optimizer name or class, got {type(method).__name__} {method!r}")
    key = method.lower().replace("-", "").replace("_", "")
    aliases = {k.replace("_", ""): v for k, v in methods.items()}
    if key not in aliases:
        raise ValueError(f"unknown method {method!r}; numopt has: {', '.join(sorted(methods))}")
    return aliases[key]


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
) -> OptimizeResult:
    r"""Minimize ``fun`` from ``x0`` with one of numopt's optimizers.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args)`` returning ``(loss, grad)`` (``jac=True``) or the loss
        alone (``jac`` a callable). ``x`` is a read-only view of the current
        point with ``x0``'s shape; ``grad`` any array of that size.
    x0 : array_like
        The starting point. float32 stays float32; anything else becomes float64.
    method : str or Optimizer subclass, default "lbfgs"
        Any optimizer numopt has, by name, case-insensitive (``"lbfgs"``,
        ``"adam"``, ``"sgd"``, ...; :func:`available_methods` lists them).
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
        (scipy's ``maxfun``; pass ``max_eval`` to limit evaluations).
    callback : callable, optional
        Called after every iteration with a copy of the current point, or, if
        its parameter is named ``intermediate_result``, with an
        :class:`OptimizeResult` (``x, fun, jac, nit, nfev``), as in scipy.
        Returning True or raising ``StopIteration`` stops the run (status 99).
    progress : bool, default False
        Show a tqdm progress bar with the current loss (needs the optional
        ``tqdm`` package).

    Returns
    -------
    OptimizeResult
        ``x, fun, jac, nit, nfev, njev, success, status, message, method``.
        A non-finite loss or gradient stops the run with ``success=False``,
        ``status=3`` and ``x`` the last iterate whose loss was finite.
    """
    cls = _resolve_method(method)
    is_lbfgs = cls.__name__ == "LBFGS"
    opts = dict(options or {})
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
    return NO_PROGRESS, "stopped: no further progress (the line search found no lower point)"
