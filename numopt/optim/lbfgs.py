"""Limited-memory BFGS (``torch.optim.LBFGS``), on each group's flat parameter vector."""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import numpy as np

from .._jit import CHUNK
from .._validation import check_bool, check_number
from ..flat import FlatBuffer
from ..kernels import lbfgs as rules
from ..optimizer import LoadStateDictResult, Optimizer
from ..parameter import Parameter

__all__ = ["LBFGS"]


def _as_float(loss: Any) -> float:
    """The closure's loss as a float (a torch tensor is detached first, without a warning)."""
    detach = getattr(loss, "detach", None)
    return float(detach() if callable(detach) else loss)


#: below this many elements the kernels loop over chunks without starting threads
_PARALLEL_MIN = 1 << 17


def _safe_div(a: float, b: float) -> float:
    """``a / b`` with IEEE semantics (inf or nan for a zero ``b``), like torch's tensor division."""
    try:
        return a / b
    except ZeroDivisionError:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1.0, b)


class _GroupState:
    """L-BFGS's working memory for one parameter group: flat vectors of the group's dtype.

    The curvature pairs live in two ring buffers (``dirs`` for torch's
    ``old_dirs``, the gradient changes ``y``; ``stps`` for ``old_stps``, the
    steps ``s``) that grow by doubling up to ``history_size + 1`` rows (one row
    is scratch for the next candidate pair). ``rows`` lists the live rows,
    oldest first.
    """

    def __init__(self, n: int, dtype: np.dtype) -> None:
        self.n = n
        self.dtype = dtype
        self.parallel = n >= _PARALLEL_MIN
        self.partials = np.zeros((3, max(1, (n + CHUNK - 1) // CHUNK)), np.float64)
        self.pool: list[np.ndarray | None] = [None] * rules.POOL
        self.gmax = [0.0] * rules.POOL
        self.gsum = [0.0] * rules.POOL
        self.d: np.ndarray | None = None
        self.prev: np.ndarray | None = None
        self.x0: np.ndarray | None = None
        self.dirs = np.empty((0, n), dtype)
        self.stps = np.empty((0, n), dtype)
        self.ro = np.empty(0, np.float64)
        self.rows: list[int] = []
        self.al: np.ndarray | None = None
        self.wolfe = rules.new_wolfe_state()
        self.t: float | None = None
        self.h_diag: float | None = None
        self.prev_loss: float | None = None

    # -- gradient buffers ---------------------------------------------------
    def buffer(self, slot: int) -> int:
        """``slot``, its gradient buffer allocated on first use."""
        if self.pool[slot] is None:
            self.pool[slot] = np.empty(self.n, self.dtype)
        return slot

    # -- history ------------------------------------------------------------
    def scratch_row(self, history_size: int) -> int:
        """A ring row not holding a live pair (growing the ring if needed)."""
        cap = self.dirs.shape[0]
        if len(self.rows) + 1 > cap:
            new_cap = max(len(self.rows) + 1, min(max(2 * cap, 4), history_size + 1))
            self._regrow(new_cap)
        live = set(self.rows)
        return next(r for r in range(self.dirs.shape[0]) if r not in live)

    def _regrow(self, cap: int) -> None:
        k = len(self.rows)
        dirs = np.empty((cap, self.n), self.dtype)
        stps = np.empty((cap, self.n), self.dtype)
        ro = np.zeros(cap, np.float64)
        for new, old in enumerate(self.rows):
            dirs[new] = self.dirs[old]
            stps[new] = self.stps[old]
            ro[new] = self.ro[old]
        self.dirs, self.stps, self.ro = dirs, stps, ro
        self.rows = list(range(k))

    def set_history(self, dirs: list[np.ndarray], stps: list[np.ndarray], ro: list[float]) -> None:
        k = len(dirs)
        self.dirs = np.empty((k + 1, self.n), self.dtype)
        self.stps = np.empty((k + 1, self.n), self.dtype)
        self.ro = np.zeros(k + 1, np.float64)
        for i in range(k):
            self.dirs[i] = dirs[i]
            self.stps[i] = stps[i]
            self.ro[i] = ro[i]
        self.rows = list(range(k))

    def ensure_al(self, size: int) -> np.ndarray:
        if self.al is None or self.al.size < size:
            al = np.full(size, np.nan)
            if self.al is not None:
                al[: self.al.size] = self.al
            self.al = al
        return self.al

    # -- torch's state entries ------------------------------------------------
    def torch_state(self, history_size: int) -> dict[str, Any]:
        """The entries torch's LBFGS keeps (live views, not copies)."""
        st: dict[str, Any] = {}
        if self.d is not None:
            st["d"] = self.d
        if self.t is not None:
            st["t"] = self.t
        st["old_dirs"] = [self.dirs[r] for r in self.rows]
        st["old_stps"] = [self.stps[r] for r in self.rows]
        st["ro"] = [float(self.ro[r]) for r in self.rows]
        if self.h_diag is not None:
            st["H_diag"] = self.h_diag
        if self.prev is not None:
            st["prev_flat_grad"] = self.prev
        st["prev_loss"] = self.prev_loss
        if self.al is not None:
            al: list[float | None] = [None if math.isnan(v) else float(v) for v in self.al]
            st["al"] = (al + [None] * history_size)[: max(history_size, len(self.rows))]
        return st


def _listed_params(param_group: Any) -> list[Parameter]:
    """The Parameters a group spec lists (malformed specs are left to ``Optimizer.add_param_group``)."""
    raw = param_group.get("params", ()) if isinstance(param_group, dict) else ()
    items = [raw] if isinstance(raw, Parameter) else raw if isinstance(raw, (list, tuple)) else ()
    out = []
    for item in items:
        p = item[1] if isinstance(item, tuple) and len(item) == 2 else item
        if isinstance(p, Parameter):
            out.append(p)
    return out


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"Invalid {name}: {value!r} ({name} must be an int >= {low}, got {name}={value!r})")
    return int(value)


class LBFGS(Optimizer):
    r"""L-BFGS, with an optional strong-Wolfe line search (torch's algorithm, from minFunc).

    Each ``step(closure)`` runs up to ``max_iter`` iterations on the group's
    flat parameter vector :math:`x` (its :class:`~numopt.flat.FlatBuffer`),
    with :math:`g = \nabla f(x)` from the closure::

        d = -g                                    (first iteration)
        d = -H g                                  (two-loop recursion over the last history_size
                                                   pairs s = x_{k+1} - x_k, y = g_{k+1} - g_k
                                                   with y.s > 1e-10; H_0 = (y.s / y.y) I)
        t = min(1, 1 / sum|g|) * lr               (first iteration), else lr
        x = x + t d                               (t from the strong-Wolfe search if line_search_fn)

    and stops early when ``max|g| <= tolerance_grad``, ``g.d > -tolerance_change``,
    ``max|t d| <= tolerance_change``, ``|f - f_prev| < tolerance_change`` or after
    ``max_eval`` function evaluations. The line search brackets a step
    satisfying the strong Wolfe conditions
    ``f(x + t d) <= f(x) + c1 t g.d`` and ``|g(x + t d).d| <= -c2 g.d`` by cubic
    interpolation, then zooms into the bracket.

    The vector work (gathering the gradient, trial points, the history update
    and the two-loop recursion, the latter in ``2k + 1`` passes over memory for
    ``k`` stored pairs) is in Numba, parallel above 131072 elements. The line
    search's scalar logic stays in Python: every trial point calls your
    Python closure anyway.

    Parameters
    ----------
    params : iterable
        Parameters, or parameter groups (dicts). All parameters of a group must
        share one dtype.
    lr : float, default 1
        Learning rate (>= 0), the step length tried first.
    max_iter : int, default 20
        Iterations per ``step`` (>= 1).
    max_eval : int, optional
        Function evaluations per ``step``; default ``max_iter * 5 // 4``.
    tolerance_grad : float, default 1e-7
        Stop when the largest gradient magnitude is at most this (any finite number,
        as in torch: a negative one never stops on the gradient).
    tolerance_change : float, default 1e-9
        Stop when the loss or the parameters change less than this (any finite number,
        as in torch: a negative one never stops on the change).
    history_size : int, default 100
        Curvature pairs kept (>= 1; memory: two vectors of the group's size per pair).
        torch accepts 0 and then fails with an IndexError at its second iteration
        (it drops the oldest pair of an empty history); numopt refuses it up front.
    line_search_fn : None or "strong_wolfe", default None
        Without a line search the step is ``lr`` (after the first iteration).
    c1, c2 : float, default 1e-4, 0.9
        numopt only: the strong-Wolfe constants, ``0 < c1 < c2 < 1`` (torch hard-codes these values).
    max_ls : int, optional
        numopt only: most line-search iterations per iteration (>= 1). By default,
        as in torch, only the step's remaining evaluation budget ``max_eval``
        limits them.
    maximize : bool, default False
        numopt only: maximize the closure's value instead of minimizing it.

    Notes
    -----
    * ``step`` requires a closure that clears the gradients, recomputes the
      loss and gradients and returns the loss; it returns the first loss the
      closure computed in that step. A parameter whose ``grad`` is ``None``
      after the closure counts as having a zero gradient.
    * **Several parameter groups** (torch allows only one): each group is an
      independent L-BFGS over its own flat vector, with its own hyperparameters
      and state; ``step`` runs the groups one after another (block-coordinate),
      holding the other groups fixed, each starting with a fresh closure
      evaluation. A single group behaves exactly as torch.
    * The state is global, not per parameter; as torch, it is kept under the
      first parameter of each group: ``optimizer.state[group['params'][0]]``
      with torch's keys ``func_evals, n_iter, d, t, old_dirs, old_stps, ro,
      H_diag, prev_flat_grad, prev_loss, al``, and ``state_dict()`` has torch's
      layout.
    * Dot products are accumulated in float64 (torch: in the parameters'
      dtype), so float32 runs track torch's only approximately over many
      iterations; float64 runs match torch's loss sequence (rtol 1e-5 in the
      test-suite on Rosenbrock in 2 and 100 dimensions and least squares).

    Examples
    --------
    >>> import numpy as np, numopt
    >>> x = numopt.Parameter(np.array([-1.2, 1.0]))
    >>> opt = numopt.LBFGS([x], line_search_fn="strong_wolfe", max_iter=100)
    >>> def closure():
    ...     a, b = x.data
    ...     x.grad = np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])
    ...     return (1 - a) ** 2 + 100 * (b - a * a) ** 2
    >>> loss = opt.step(closure)
    >>> bool(np.allclose(x.data, [1.0, 1.0], atol=1e-4)), opt.state[x]["n_iter"]
    (True, 35)
    """

    _tracks_step = False
    _clip_refused = (
        "LBFGS's closure recomputes the gradients at every evaluation; clip inside the closure, after "
        "backward, with numopt.utils.clip_grad_norm_"
    )
    _repackable = False  # its history vectors are per group: build a new LBFGS over other parameters
    _state_keys = (
        "func_evals",
        "n_iter",
        "d",
        "t",
        "old_dirs",
        "old_stps",
        "ro",
        "H_diag",
        "prev_flat_grad",
        "prev_loss",
        "al",
    )

    def __init__(
        self,
        params: Any,
        lr: float = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
        *,
        c1: float = 1e-4,
        c2: float = 0.9,
        max_ls: int | None = None,
        maximize: bool = False,
    ) -> None:
        if max_eval is None and isinstance(max_iter, Integral) and not isinstance(max_iter, bool):
            max_eval = max_iter * 5 // 4
        defaults = {
            "lr": lr,
            "max_iter": max_iter,
            "max_eval": max_eval,
            "tolerance_grad": tolerance_grad,
            "tolerance_change": tolerance_change,
            "history_size": history_size,
            "line_search_fn": line_search_fn,
            "c1": c1,
            "c2": c2,
            "max_ls": max_ls,
            "maximize": maximize,
        }
        self._validate_hparams(defaults)
        self._group_states: list[_GroupState] = []
        #: set by numopt.minimize: called after every iteration; returning True stops the step
        self._iteration_hook: Callable[[float, np.ndarray, float], bool] | None = None
        #: numopt.minimize's remedy for a stalled run, as scipy's L-BFGS-B has it (torch's LBFGS stops
        #: instead): when an iteration makes no progress (no descent direction, or no lower loss), drop
        #: the curvature history and redo it as a steepest-descent step; stop only when that fails too
        self._refresh_on_stall = False
        #: True when the parameters moved after the last closure call (no line search, last iteration)
        self._moved_since_eval = False
        super().__init__(params, defaults)

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        check_number("lr", h["lr"], low=0.0, label="learning rate")
        _check_int("max_iter", h["max_iter"], 1)
        _check_int("max_eval", h["max_eval"], 1)
        check_number("tolerance_grad", h["tolerance_grad"], label="tolerance_grad value")
        check_number("tolerance_change", h["tolerance_change"], label="tolerance_change value")
        if _check_int("history_size", h["history_size"], 0) == 0:
            raise ValueError(
                "Invalid history_size: 0 (history_size must be an int >= 1: L-BFGS needs at least one "
                "curvature pair; torch accepts 0 and fails at its second iteration)"
            )
        if h["line_search_fn"] not in (None, "strong_wolfe"):
            raise ValueError(
                f"only 'strong_wolfe' is supported as line_search_fn (or None), got {h['line_search_fn']!r}"
            )
        c1 = check_number("c1", h["c1"], low=0.0, high=1.0, low_open=True, high_open=True, label="c1 value")
        c2 = check_number("c2", h["c2"], low=0.0, high=1.0, low_open=True, high_open=True, label="c2 value")
        if not c1 < c2:
            raise ValueError(f"Invalid line search constants: need 0 < c1 < c2 < 1, got c1={c1!r}, c2={c2!r}")
        if h["max_ls"] is not None:
            _check_int("max_ls", h["max_ls"], 1)
        check_bool("maximize", h["maximize"])

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (one dtype; its own L-BFGS state). ``max_eval`` follows a group's own ``max_iter``."""
        if isinstance(param_group, dict) and "max_iter" in param_group and "max_eval" not in param_group:
            max_iter = param_group["max_iter"]
            if isinstance(max_iter, Integral) and not isinstance(max_iter, bool):
                param_group = {**param_group, "max_eval": max_iter * 5 // 4}
        params = _listed_params(param_group)
        if len({p.dtype for p in params}) > 1:
            raise TypeError(
                "LBFGS needs all parameters of a group to have one dtype; put float32 and float64 "
                "parameters in separate groups"
            )
        if any(getattr(p, "is_cuda", False) for p in params):
            raise TypeError("LBFGS works on host (NumPy) parameters; CUDA parameters are not supported")
        super().add_param_group(param_group)
        flat = self._flats[-1][0]
        self._group_states.append(_GroupState(flat.size, flat.dtype))

    # -- stepping ---------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Run up to ``max_iter`` L-BFGS iterations on every group; return the closure's first loss.

        Parameters
        ----------
        closure : callable
            Required: clears the gradients, recomputes the loss and gradients
            (``p.grad``) and returns the loss.
        """
        return super().step(closure)

    def _step(self, closure: Callable[[], Any] | None) -> Any:
        if closure is None or not callable(closure):
            raise TypeError(
                "LBFGS.step needs a closure: a function that clears the gradients, recomputes the loss "
                "and the gradients and returns the loss"
            )
        self._check_hparam_edits()
        orig_loss = None
        for gi, group in enumerate(self.param_groups):
            loss = self._step_group(group, self._flats[gi][0], self._group_states[gi], closure)
            if gi == 0:
                orig_loss = loss
        return orig_loss

    def _gather(self, flat: FlatBuffer, gs: _GroupState, slot: int, d: np.ndarray, negate: bool) -> float:
        """Copy the closure's gradient into pool buffer ``slot``; return ``g . d`` (0 if ``d`` is empty)."""
        has = flat.sync_grads()
        if not all(has):
            for i, h in enumerate(has):
                if not h:
                    flat.grad[flat.offsets[i] : flat.offsets[i + 1]] = 0
        gd, gsum, gmax = rules.lbfgs_gather(flat.grad, gs.pool[slot], d, negate, gs.parallel, gs.partials)
        gs.gsum[slot] = gsum
        gs.gmax[slot] = gmax
        return gd

    def _step_group(self, group: dict[str, Any], flat: FlatBuffer, gs: _GroupState, closure: Callable) -> Any:
        lr = float(group["lr"])
        max_iter = int(group["max_iter"])
        max_eval = int(group["max_eval"])
        tolerance_grad = float(group["tolerance_grad"])
        tolerance_change = float(group["tolerance_change"])
        line_search_fn = group["line_search_fn"]
        history_size = int(group["history_size"])
        maximize = bool(group["maximize"])
        sign = -1.0 if maximize else 1.0
        tp = flat.dtype.type
        empty = gs.pool[0][:0] if gs.pool[0] is not None else np.empty(0, flat.dtype)
        hook = self._iteration_hook

        state = self.state[group["params"][0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = closure()
        loss = sign * _as_float(orig_loss)
        self._moved_since_eval = False
        current_evals = 1
        state["func_evals"] += 1
        gi = gs.buffer(0)
        self._gather(flat, gs, gi, empty, maximize)
        if gs.gmax[gi] <= tolerance_grad:
            return orig_loss

        if gs.d is None:
            gs.d = np.empty(flat.size, flat.dtype)
        d = gs.d
        t = gs.t
        h_diag = gs.h_diag
        n_iter = 0
        refresh = False  # numopt.minimize's remedy for a stalled run (see _refresh_on_stall)
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            g = gs.pool[gi]

            # direction
            steepest = refresh or state["n_iter"] == 1 or gs.prev is None or t is None
            if steepest:
                gs.rows = []
                h_diag = 1.0
                gs.prev = np.empty(flat.size, flat.dtype) if gs.prev is None else gs.prev
                np.copyto(gs.prev, g)
            else:
                row = gs.scratch_row(history_size)
                ys, yy = rules.lbfgs_push(g, gs.prev, d, tp(t), gs.dirs[row], gs.stps[row], gs.parallel, gs.partials)
                if ys > 1e-10:
                    while len(gs.rows) >= history_size:
                        gs.rows.pop(0)
                    gs.rows.append(row)
                    gs.ro[row] = 1.0 / ys
                    h_diag = ys / yy
            al = gs.ensure_al(max(history_size, len(gs.rows)))
            order = np.array(gs.rows, np.int64)
            gtd, d_max = rules.lbfgs_direction(
                g, d, gs.dirs, gs.stps, order, gs.ro, al, tp(h_diag), gs.parallel, gs.partials
            )
            prev_loss = loss

            # step length
            if refresh or state["n_iter"] == 1:
                t = min(1.0, _safe_div(1.0, gs.gsum[gi])) * lr
            else:
                t = lr

            if gtd > -tolerance_change:
                if self._refresh_on_stall and not steepest:
                    refresh = True  # not a descent direction: redo the iteration from steepest descent
                    n_iter -= 1
                    state["n_iter"] -= 1
                    continue
                break
            refresh = False

            ls_func_evals = 0
            if line_search_fn is not None:
                if gs.x0 is None:
                    gs.x0 = np.empty(flat.size, flat.dtype)
                np.copyto(gs.x0, flat.data)
                max_ls = max_eval - current_evals
                if group["max_ls"] is not None:
                    max_ls = min(max_ls, int(group["max_ls"]))
                loss, gi, t, ls_func_evals = self._strong_wolfe(
                    group, flat, gs, closure, t, loss, gi, gtd, d_max, max_ls, sign
                )
                rules.lbfgs_axpy(flat.data, gs.x0, d, tp(t), gs.parallel)
                self._moved_since_eval = False
                opt_cond = gs.gmax[gi] <= tolerance_grad
                evaluated = True
            else:
                rules.lbfgs_axpy(flat.data, flat.data, d, tp(t), gs.parallel)
                self._moved_since_eval = True
                evaluated = False
                opt_cond = False
                if n_iter != max_iter:
                    loss = sign * _as_float(closure())
                    self._moved_since_eval = False
                    self._gather(flat, gs, gi, empty, maximize)
                    opt_cond = gs.gmax[gi] <= tolerance_grad
                    ls_func_evals = 1
                    evaluated = True

            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            if hook is not None and evaluated and hook(sign * loss, gs.pool[gi], gs.gmax[gi]):
                break
            if n_iter == max_iter:
                break
            if current_evals >= max_eval:
                break
            if opt_cond:
                break
            stalled = d_max * abs(t) <= tolerance_change or abs(loss - prev_loss) < tolerance_change
            if stalled or (self._refresh_on_stall and not loss < prev_loss):
                if self._refresh_on_stall and not steepest:
                    refresh = True  # drop the curvature history; the next iteration is a steepest-descent step
                    continue
                break

        gs.t = float(t) if t is not None else None
        gs.h_diag = float(h_diag) if h_diag is not None else None
        gs.prev_loss = prev_loss if n_iter else gs.prev_loss
        state.update(gs.torch_state(history_size))
        return orig_loss

    def _strong_wolfe(
        self,
        group: dict[str, Any],
        flat: FlatBuffer,
        gs: _GroupState,
        closure: Callable,
        t: float,
        f: float,
        g0: int,
        gtd: float,
        d_norm: float,
        max_ls: int,
        sign: float,
    ) -> tuple[float, int, float, int]:
        """torch's ``_strong_wolfe`` on pool buffers (numopt.kernels.lbfgs's, shared with
        ``functional.lbfgs_minimize``); this drives it with the closure. Returns (f, slot, t, evals)."""
        maximize = bool(group["maximize"])
        tp = flat.dtype.type
        d, x0 = gs.d, gs.x0
        fs, ns = gs.wolfe
        t, slot = rules.wolfe_start(fs, ns, t, f, g0, gtd, d_norm, float(group["c1"]), float(group["c2"]), max_ls)
        while True:
            rules.lbfgs_axpy(flat.data, x0, d, tp(t), gs.parallel)
            f_new = sign * _as_float(closure())
            gtd_new = self._gather(flat, gs, gs.buffer(slot), d, maximize)
            more, t, f_end, slot = rules.wolfe_next(fs, ns, f_new, gtd_new)
            if not more:
                return f_end, slot, t, int(ns[rules.WOLFE_EVALS])

    # -- state dicts ------------------------------------------------------------
    def load_state_dict(
        self, state_dict: dict[str, Any], match: str = "position", strict: bool = True
    ) -> LoadStateDictResult:
        """Load a state from :meth:`state_dict` (or torch's LBFGS state dict converted to NumPy).

        Validated before anything changes, as for every optimizer; the state of
        each group is read from its first parameter's entry.

        ``match='name'`` pairs each group here with the saved group that has
        exactly its parameter names, in any order of groups and of parameters
        (the saved history vectors are permuted to this group's order).
        LBFGS keeps one history over a whole group's flat vector, so a group
        cannot take part of a saved group: ``strict=False`` is refused.
        """
        if match not in ("position", "name"):
            raise ValueError(f"match must be 'position' or 'name', got {match!r}")
        if not isinstance(strict, bool):
            raise TypeError(f"strict must be True or False, got {strict!r}")
        if not strict:
            raise ValueError(
                "LBFGS keeps one history over all the parameters of a group, so it cannot load part of a "
                "saved group: strict=False is not supported (regroup the parameters to match the saved groups)"
            )
        sd = self._run_load_pre_hooks(state_dict)
        if match == "name":
            sd = self._in_position_order(sd)
        staged: dict[int, tuple[dict[str, Any], _GroupState]] = {}
        groups, saved_state = sd.get("param_groups"), sd.get("state")
        if (
            isinstance(groups, (list, tuple))
            and isinstance(saved_state, dict)
            and len(groups) == len(self.param_groups)
            and all(
                isinstance(s, dict) and len(s.get("params", ())) == len(g["params"])
                for s, g in zip(groups, self.param_groups)
            )
        ):
            firsts = {s["params"][0]: gi for gi, s in enumerate(groups)}
            known = {k for s in groups for k in s["params"]}
            for k, entry in saved_state.items():
                if k not in known:
                    raise ValueError(f"state_dict['state'] has an entry for parameter {k!r}, which no group lists")
                if k not in firsts:
                    if entry:
                        raise ValueError(
                            f"state_dict['state'][{k!r}]: LBFGS keeps its state under the first parameter of "
                            "each group only"
                        )
                    continue
                gi = firsts[k]
                flat = self._flats[gi][0]
                history_size = groups[gi].get("history_size", self.param_groups[gi]["history_size"])
                staged[gi] = self._parse_state(k, entry, flat, history_size)
        # the groups, by the base class's rules; the state (kept per group, not per parameter) is staged above
        plan = self._plan_load({**sd, "state": {}}, "position", True)
        self._apply_load(plan)
        for gi, group in enumerate(self.param_groups):
            flat = self._flats[gi][0]
            entry, gs = staged.get(gi, ({}, _GroupState(flat.size, flat.dtype)))
            self._group_states[gi] = gs
            if entry:
                st = self.state[group["params"][0]]
                st.update(entry)
                st.update(gs.torch_state(int(group["history_size"])))
        self._run_load_post_hooks()
        return plan.result

    def _in_position_order(self, sd: dict[str, Any]) -> dict[str, Any]:
        """``sd`` rearranged so that its groups and each group's history follow this optimizer's order by name."""
        saved_groups, saved_state = sd.get("param_groups"), sd.get("state")
        if not isinstance(saved_groups, (list, tuple)) or not isinstance(saved_state, dict):
            raise ValueError("state_dict['param_groups'] must be a list and state_dict['state'] a dict")
        home: dict[Any, tuple[int, int]] = {}  # saved id -> (saved group, position in it)
        for sgi, saved in enumerate(saved_groups):
            if not isinstance(saved, dict) or not isinstance(saved.get("params"), (list, tuple)):
                raise ValueError(f"param_groups[{sgi}] of the loaded state dict must be a dict with a 'params' list")
            home.update({k: (sgi, j) for j, k in enumerate(saved["params"])})
        # names present, unique and the same on both sides: the base class's rules and messages
        targets = self._match_by_name(saved_groups, strict=True)[0]
        ids: list[list[Any]] = [[None] * len(g["params"]) for g in self.param_groups]
        for k, (gi, j, _) in targets.items():
            ids[gi][j] = k
        groups, state = [], {}
        for gi, (group, group_ids) in enumerate(zip(self.param_groups, ids)):
            sources = {home[k][0] for k in group_ids}
            saved = saved_groups[next(iter(sources))] if len(sources) == 1 else None
            if saved is None or len(saved["params"]) != len(group_ids):
                raise ValueError(
                    f"match='name': param_groups[{gi}] ({len(group_ids)} parameters) does not have exactly the "
                    "names of one saved group; LBFGS keeps one history per group, so groups must match whole"
                )
            order = [home[k][1] for k in group_ids]
            groups.append({**saved, "params": group_ids, "param_names": [saved["param_names"][j] for j in order]})
            entry = saved_state.get(saved["params"][0])
            if entry:
                sizes = [0] * len(order)
                for j, p in zip(order, group["params"]):
                    sizes[j] = p.size
                state[group_ids[0]] = _permute_history(entry, sizes, order)
        return {**sd, "param_groups": groups, "state": state}

    def _parse_state(
        self, k: Any, entry: Any, flat: FlatBuffer, history_size: int
    ) -> tuple[dict[str, Any], _GroupState]:
        where = f"state[{k!r}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a dict, got {type(entry).__name__}")
        unknown = set(entry) - set(self._state_keys)
        if unknown:
            raise ValueError(
                f"{where}: unexpected state keys {sorted(unknown)} for LBFGS "
                f"(expected some of {list(self._state_keys)})"
            )
        n, dtype = flat.size, flat.dtype

        def number(name: str, allow_none: bool = False) -> float | None:
            v = entry.get(name)
            if v is None and allow_none:
                return None
            arr = np.asarray(v)
            if arr.size != 1 or not np.issubdtype(arr.dtype, np.number):
                raise ValueError(f"{where}[{name!r}] must be a number, got {v!r}")
            return float(arr.reshape(()))

        def count(name: str) -> int:
            x = number(name)
            if x is None or not math.isfinite(x) or x < 0 or x != int(x):
                raise ValueError(f"{where}[{name!r}] must be a non-negative whole number, got {entry.get(name)!r}")
            return int(x)

        def vector(name: str, v: Any) -> np.ndarray:
            arr = np.asarray(v)
            if not np.issubdtype(arr.dtype, np.floating):
                raise ValueError(f"{where}[{name!r}] must be a floating-point array, got dtype {arr.dtype}")
            if arr.shape != (n,):
                raise ValueError(f"{where}[{name!r}] has shape {arr.shape}, but the group's flat vector has ({n},)")
            return arr.astype(dtype, copy=True)

        scalars: dict[str, Any] = {}
        for name in ("func_evals", "n_iter"):
            if name in entry:
                scalars[name] = count(name)
        gs = _GroupState(n, dtype)
        if entry.get("d") is not None:
            gs.d = vector("d", entry["d"])
        if entry.get("prev_flat_grad") is not None:
            gs.prev = vector("prev_flat_grad", entry["prev_flat_grad"])
        if "t" in entry:
            gs.t = number("t", allow_none=True)
        if "H_diag" in entry:
            gs.h_diag = number("H_diag", allow_none=True)
        if "prev_loss" in entry:
            gs.prev_loss = number("prev_loss", allow_none=True)
        dirs, stps, ro = entry.get("old_dirs") or [], entry.get("old_stps") or [], entry.get("ro") or []
        if not (isinstance(dirs, (list, tuple)) and isinstance(stps, (list, tuple)) and isinstance(ro, (list, tuple))):
            raise ValueError(f"{where}: 'old_dirs', 'old_stps' and 'ro' must be lists")
        if not len(dirs) == len(stps) == len(ro):
            raise ValueError(
                f"{where}: 'old_dirs', 'old_stps' and 'ro' must have one entry per stored pair, "
                f"got {len(dirs)}, {len(stps)} and {len(ro)}"
            )
        ro_values = []
        for i, r in enumerate(ro):
            arr = np.asarray(r)
            if arr.size != 1 or not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr):
                raise ValueError(f"{where}['ro'][{i}] must be a finite number, got {r!r}")
            ro_values.append(float(arr.reshape(())))
        gs.set_history(
            [vector(f"old_dirs[{i}]", v) for i, v in enumerate(dirs)],
            [vector(f"old_stps[{i}]", v) for i, v in enumerate(stps)],
            ro_values,
        )
        al = entry.get("al")
        if al is not None:
            if not isinstance(al, (list, tuple)):
                raise ValueError(f"{where}['al'] must be a list")
            values = []
            for i, v in enumerate(al):
                if v is None:
                    values.append(math.nan)
                    continue
                arr = np.asarray(v)
                if arr.size != 1 or not isinstance(arr.reshape(()).item(), Real):
                    raise ValueError(f"{where}['al'][{i}] must be a number or None, got {v!r}")
                values.append(float(arr.reshape(())))
            gs.al = np.array(values + [math.nan] * max(0, history_size - len(values)), np.float64)
        return scalars, gs


def _permute_history(entry: Any, sizes: list[int], order: list[int]) -> Any:
    """A group's LBFGS state with its flat vectors' segments (``sizes``, saved order) taken in ``order``.

    Entries that are not what :meth:`LBFGS._parse_state` accepts are passed on
    unchanged, for it to report.
    """
    if not isinstance(entry, dict):
        return entry
    bounds = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    n = int(bounds[-1])

    def permute(v: Any) -> Any:
        arr = np.asarray(v)
        if arr.shape != (n,):
            return v
        return np.concatenate([arr[bounds[j] : bounds[j + 1]] for j in order]) if order else arr.copy()

    out = dict(entry)
    for key in ("d", "prev_flat_grad"):
        if out.get(key) is not None:
            out[key] = permute(out[key])
    for key in ("old_dirs", "old_stps"):
        if isinstance(out.get(key), (list, tuple)):
            out[key] = [permute(v) for v in out[key]]
    return out
