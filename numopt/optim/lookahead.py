"""Lookahead (``pytorch_optimizer.Lookahead``): any numopt optimizer, pulled back toward slow weights."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from numbers import Integral
from typing import Any

import numpy as np

from .._validation import check_number
from ..flat import FlatBuffer
from ..kernels.lookahead import lookahead_step
from ..optimizer import Optimizer, WrapsOptimizer

__all__ = ["Lookahead"]

_PULLBACK = ("none", "reset", "pullback")
_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0, np.float64)}


class Lookahead(WrapsOptimizer, Optimizer, register=False):  # a wrapper: not in the registry's tables
    r"""Lookahead: every ``k`` steps of a wrapped optimizer, pull its weights back toward slow weights.

    For each group, after the wrapped optimizer's step, the group's counter advances; at
    ``k`` it restarts and, for each parameter with a gradient::

        slow  <- slow + alpha * (fast - slow)      (torch's lerp(fast, slow, 1 - alpha))
        fast  <- slow
        buf   <- 0                                  (pullback_momentum='reset')
        buf, slow_buf <- lerp(buf, slow_buf, 1 - alpha)   (pullback_momentum='pullback')

    where ``buf`` is the wrapped optimizer's ``'momentum_buffer'`` (SGD's). The slow weights
    live in flat buffers aligned with the wrapped optimizer's own (one per group and dtype,
    GPU memory for CUDA parameters), and a synchronization is one fused pass per run of
    parameters with gradients.

    Same arguments, defaults and behaviour as ``pytorch_optimizer.Lookahead``
    (pytorch-optimizer 4.1.0), its reference in the tests. It wraps an optimizer
    instance (not a class with ``params=...``). An optimizer that keeps no
    ``'momentum_buffer'`` (Adam, ...) is left as it is by 'reset' and 'pullback' (the
    reference adds an unused zero ``'momentum_buffer'`` entry to its state).

    Parameters
    ----------
    optimizer : Optimizer
        The wrapped ("fast") numopt optimizer.
    k : int, default 5
        Steps of the wrapped optimizer between synchronizations (> 0).
    alpha : float, default 0.5
        Step of the slow weights toward the fast ones, in [0, 1).
    pullback_momentum : {'none', 'reset', 'pullback'}, default 'none'
        What a synchronization does to the wrapped optimizer's ``'momentum_buffer'``.

    Notes
    -----
    - ``param_groups`` is the wrapped optimizer's list (schedulers and edits of
      ``group['lr']`` reach it); each group gets a ``'counter'`` entry, as in the
      reference. ``defaults`` is ``{'lookahead_alpha', 'lookahead_k',
      'lookahead_pullback_momentum'}`` plus the wrapped optimizer's.
    - ``state[p]`` holds ``'slow_params'`` (and ``'slow_momentum'`` with 'pullback'):
      the Lookahead's own state; the wrapped optimizer's is ``optimizer.state``.
    - ``step``, ``zero_grad`` and ``add_param_group`` go through the wrapped optimizer;
      ``state_dict()`` is ``{'lookahead_state': {(group, index): {...}},
      'base_optimizer': optimizer.state_dict()}`` as in the reference (the counters are
      in the wrapped optimizer's groups), and ``load_state_dict`` takes it back.
    - ``backup_and_load_cache()`` / ``clear_and_load_backup()`` swap the slow weights
      in for evaluation and back, as in the reference.
    - Public attributes it lacks are read from the wrapped optimizer (``opt.maximize``).

    Examples
    --------
    >>> import numpy as np, numopt
    >>> w = numopt.Parameter(np.zeros(2, np.float32))
    >>> opt = numopt.Lookahead(numopt.SGD([w], lr=1.0), k=2, alpha=0.5)
    >>> for _ in range(2):
    ...     w.grad = np.array([-1.0, 1.0], np.float32)
    ...     opt.step()
    >>> w.data                 # two SGD steps to (2, -2), then halfway back to the slow weights (0, 0)
    array([ 1., -1.], dtype=float32)

    References
    ----------
    Zhang et al., "Lookahead Optimizer: k steps forward, 1 step back", NeurIPS 2019.
    """

    reference = "pytorch_optimizer.Lookahead"
    #: the wrapped optimizer's step runs the global step hooks; this one runs only its own
    _global_step_hooks = False

    def __init__(self, optimizer: Optimizer, k: int = 5, alpha: float = 0.5, pullback_momentum: str = "none") -> None:
        if not isinstance(optimizer, Optimizer):
            torch_like = type(optimizer).__module__.split(".")[0] in ("torch", "pytorch_optimizer")
            hint = " (a torch optimizer: wrap it with pytorch_optimizer.Lookahead)" if torch_like else ""
            raise TypeError(f"optimizer must be a numopt Optimizer instance, got {type(optimizer).__name__}{hint}")
        if isinstance(k, bool) or not isinstance(k, Integral):
            raise TypeError(f"k must be a positive integer, got {k!r}")
        if k <= 0:
            raise ValueError(f"Invalid k: {k} (k must be positive, got k={k})")
        check_number("alpha", alpha, low=0.0, high=1.0, high_open=True)
        if pullback_momentum not in _PULLBACK:
            raise ValueError(f"pullback_momentum must be one of {_PULLBACK}, got {pullback_momentum!r}")
        self._share(optimizer)
        self.k = int(k)
        self.alpha = float(alpha)
        self.pullback_momentum = pullback_momentum
        self.defaults = {
            "lookahead_alpha": self.alpha,
            "lookahead_k": self.k,
            "lookahead_pullback_momentum": pullback_momentum,
            **optimizer.defaults,
        }
        self.state: defaultdict[Any, dict[str, Any]] = defaultdict(dict)
        self._init_hooks()
        #: per group, per flat buffer of the wrapped optimizer: (the buffer, {name: array aligned with it})
        self._slow: list[list[tuple[FlatBuffer, dict[str, Any]]]] = []
        self._sync_buffers()

    # -- the slow buffers ---------------------------------------------------------------------
    def _names(self) -> tuple[str, ...]:
        return ("slow_params", "slow_momentum") if self.pullback_momentum == "pullback" else ("slow_params",)

    def _sync_buffers(self) -> None:
        """Give every buffer of the wrapped optimizer its slow buffers, and every group its counter.

        Buffers already covered are kept; a new one (an added group, or a group the wrapped
        optimizer packed again after an edit of its ``params``) starts from the slow values its
        parameters had, or from their current values (as the reference starts them).
        """
        if len(self._slow) == len(self._flats) and all(
            len(s) == len(f) and all(a[0] is b for a, b in zip(s, f)) for s, f in zip(self._slow, self._flats)
        ):
            return
        old = {id(flat): arrays for slows in self._slow for flat, arrays in slows}
        slow = []
        for group, flats in zip(self.param_groups, self._flats):
            group.setdefault("counter", 0)
            entries = []
            for flat in flats:
                if flat.bf16:
                    raise TypeError(
                        "Lookahead does not support bfloat16 parameters yet (its slow weights would need their own "
                        "rounding); use float32 parameters with it"
                    )
                arrays = old.get(id(flat))
                if arrays is None:
                    arrays = {}
                    for name in self._names():
                        arr = flat._new_array(flat.size, 0.0)
                        for i, p in enumerate(flat.params):
                            prev = self.state.get(p, {}).get(name)
                            src = prev if prev is not None and prev.shape == p.shape else None
                            if name == "slow_params" and src is None:
                                src = flat.data_view(i)
                            if src is not None:
                                flat._assign(flat._view(arr, i), src)
                        arrays[name] = arr
                    for i, p in enumerate(flat.params):
                        self.state[p] = {name: flat._view(a, i) for name, a in arrays.items()}
                entries.append((flat, arrays))
            slow.append(entries)
        self._slow = slow

    def _synchronize(self, gi: int) -> None:
        """One Lookahead synchronization of group ``gi``: one fused pass per run of parameters with gradients."""
        mode = self.pullback_momentum
        for flat, arrays in self._slow[gi]:
            empty = _EMPTY[flat.dtype]
            buf = flat.state.get("momentum_buffer") if mode != "none" else None
            slow_buf = arrays.get("slow_momentum")
            for run in flat.runs():
                lo, hi = run.lo, run.hi
                run.pick(lookahead_step)(
                    run.data,
                    arrays["slow_params"][lo:hi],
                    buf[lo:hi] if buf is not None else empty,
                    slow_buf[lo:hi] if slow_buf is not None and buf is not None else empty,
                    self.alpha,
                    mode == "reset",
                )

    # -- stepping ---------------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """The wrapped optimizer's step, then a synchronization of each group whose counter reaches ``k``.

        Returns the closure's loss (or ``None``).
        """
        return super().step(closure)

    def _step(self, closure: Callable[[], Any] | None) -> Any:
        self._sync_buffers()
        loss = self.optimizer.step(closure)
        self._sync_buffers()  # the step may have packed an edited group again
        checked = self.optimizer._checked_hparams
        for gi, group in enumerate(self.param_groups):
            group["counter"] = group.get("counter", 0) + 1
            if group["counter"] >= self.k:
                group["counter"] = 0
                self._synchronize(gi)
            snap = checked.get(id(group))
            if snap is not None:  # a count, not an edit: the wrapped optimizer need not check it again
                snap["counter"] = group["counter"]
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """The wrapped optimizer's ``zero_grad`` (a clipping coefficient or skip left pending is dropped)."""
        self._grad_scale = 1.0
        self._skip_next = False
        self.optimizer.zero_grad(set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the wrapped optimizer; its parameters' slow weights start from their values."""
        self.optimizer.add_param_group(param_group)
        self._sync_buffers()

    # -- evaluation with the slow weights ---------------------------------------------------------
    def backup_and_load_cache(self) -> None:
        """Back up the fast weights (``state[p]['backup_params']``) and load the slow weights, for evaluation."""
        self._sync_buffers()
        for slows in self._slow:
            for flat, arrays in slows:
                backup = flat._new_array(flat.size, None)
                flat._assign(backup, flat.data)
                flat._assign(flat.data, arrays["slow_params"])
                arrays["backup_params"] = backup
                for i, p in enumerate(flat.params):
                    self.state[p]["backup_params"] = flat._view(backup, i)

    def clear_and_load_backup(self) -> None:
        """Restore the fast weights backed up by :meth:`backup_and_load_cache`."""
        for slows in self._slow:
            for flat, arrays in slows:
                backup = arrays.pop("backup_params")
                flat._assign(flat.data, backup)
                for p in flat.params:
                    del self.state[p]["backup_params"]

    # -- state dicts ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{'lookahead_state': {(group, index): {name: ndarray}}, 'base_optimizer': optimizer.state_dict()}``.

        Copies, as the reference's layout: slow weights keyed by (group index, parameter index).
        """
        for hook in self._state_dict_pre_hooks.values():
            hook(self)
        self._sync_buffers()
        lookahead_state = {
            (gi, j): {k: self._export_state_value(k, v) for k, v in self.state[p].items()}
            for gi, group in enumerate(self.param_groups)
            for j, p in enumerate(group["params"])
            if p in self.state
        }
        sd: dict[str, Any] = {"lookahead_state": lookahead_state, "base_optimizer": self.optimizer.state_dict()}
        for hook in self._state_dict_post_hooks.values():
            result = hook(self, sd)
            if result is not None:
                sd = result
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Load a state from :meth:`state_dict`: the wrapped optimizer's, then the slow weights.

        Everything is checked before anything changes: every parameter needs its saved
        entry (keyed ``(group index, parameter index)``) with arrays of its shape.
        """
        state_dict = self._run_load_pre_hooks(state_dict)
        for key in ("lookahead_state", "base_optimizer"):
            if key not in state_dict:
                raise ValueError(f"state_dict is missing the key {key!r}")
        saved = state_dict["lookahead_state"]
        if not isinstance(saved, dict):
            raise ValueError("state_dict['lookahead_state'] must be a dict")
        self._sync_buffers()
        staged: dict[int, tuple[Any, dict[str, np.ndarray]]] = {}
        for gi, group in enumerate(self.param_groups):
            for j, p in enumerate(group["params"]):
                entry = saved.get((gi, j))
                if entry is None:
                    raise ValueError("lookahead state does not match the current parameters")
                if not isinstance(entry, dict):
                    raise ValueError(f"lookahead_state[{(gi, j)}] must be a dict, got {type(entry).__name__}")
                missing = [name for name in self._names() if name not in entry]
                if missing:
                    raise ValueError(f"lookahead_state[{(gi, j)}] is missing {missing}")
                values = {}
                for name, v in entry.items():
                    if name not in (*self._names(), "backup_params"):
                        continue  # a switch the saved wrapper had (slow_momentum): not kept here
                    arr = np.asarray(v.copy_to_host() if hasattr(v, "copy_to_host") else v)
                    if arr.shape != p.shape or not np.issubdtype(arr.dtype, np.floating):
                        raise ValueError(
                            f"lookahead_state[{(gi, j)}][{name!r}] must be a float array of shape {p.shape}, "
                            f"got {arr.dtype} {arr.shape}"
                        )
                    values[name] = arr.astype(p.dtype, copy=True)
                staged[id(p)] = (p, values)
        if len(saved) != len(staged):
            raise ValueError("lookahead state does not match the current parameters")
        self.optimizer.load_state_dict(state_dict["base_optimizer"])
        self._sync_buffers()
        for slows in self._slow:
            for flat, arrays in slows:
                arrays.pop("backup_params", None)
                for i, p in enumerate(flat.params):
                    values = staged[id(p)][1]
                    st = self.state[p]
                    st.pop("backup_params", None)
                    for name in self._names():
                        flat._assign(flat._view(arrays[name], i), values[name])
        self._run_load_post_hooks()

    # -- pickle / copy.deepcopy -------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Everything but ``state``, whose entries view the slow buffers (viewed again on unpickling)."""
        state = self.__dict__.copy()
        state["state"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.state = defaultdict(dict)
        for slows in self._slow:
            for flat, arrays in slows:
                for i, p in enumerate(flat.params):
                    self.state[p] = {name: flat._view(a, i) for name, a in arrays.items()}
        self._reserve_hook_ids()

    # -- misc -------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return self._repr_around(
            f"Lookahead(k={self.k}, alpha={self.alpha}, pullback_momentum={self.pullback_momentum!r}"
        )
