"""The ``Optimizer`` base class: groups, packing, state, state dicts and hooks.

Subclasses supply the algorithm through three small methods:

``_validate_hparams(h)``
    raise ``ValueError``/``TypeError`` for bad hyperparameters (called on the
    constructor's defaults and on every group added).
``_state_spec(group)``
    the state tensors the group needs, as ``(name, initial_value)`` pairs.
``_scalar_spec(group)`` (optional)
    per-parameter scalar state (like NAdam's ``mu_product``), same form; kept
    in ``flat.scalars[name]`` (float64, one entry per parameter) and shown in
    ``state[p]`` as 0-d views.
``_update(group, flat, run)``
    call the kernel on one run of a flat buffer (and ``run.advance()`` the
    step count when the algorithm counts steps).
"""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .flat import FlatBuffer, Run
from .parameter import Parameter

__all__ = [
    "Optimizer",
    "RemovableHandle",
    "register_optimizer_step_post_hook",
    "register_optimizer_step_pre_hook",
    "required",
]


class _RequiredParameter:
    """Marks a hyperparameter that every group must give (torch's ``required``)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


class RemovableHandle:
    """Returned by the ``register_*_hook`` methods; ``remove()`` unregisters the hook."""

    _next_id = itertools.count()

    def __init__(self, registry: OrderedDict) -> None:
        self._registry = registry
        self.id = next(RemovableHandle._next_id)

    def remove(self) -> None:
        self._registry.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


_global_step_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
_global_step_post_hooks: OrderedDict[int, Callable] = OrderedDict()


def _register(registry: OrderedDict, hook: Callable, prepend: bool = False) -> RemovableHandle:
    handle = RemovableHandle(registry)
    registry[handle.id] = hook
    if prepend:
        registry.move_to_end(handle.id, last=False)
    return handle


def register_optimizer_step_pre_hook(hook: Callable) -> RemovableHandle:
    """Register ``hook(optimizer, args, kwargs)`` to run before every optimizer's ``step``."""
    return _register(_global_step_pre_hooks, hook)


def register_optimizer_step_post_hook(hook: Callable) -> RemovableHandle:
    """Register ``hook(optimizer, args, kwargs)`` to run after every optimizer's ``step``."""
    return _register(_global_step_post_hooks, hook)


def _address_range(a: np.ndarray) -> tuple[int, int]:
    start = a.__array_interface__["data"][0]
    return start, start + a.nbytes


class Optimizer:
    """Base class of numopt optimizers, mirroring ``torch.optim.Optimizer``.

    Parameters
    ----------
    params : iterable of Parameter, of ``(name, Parameter)`` or of dicts
        The parameters to optimize, or parameter groups: dicts with a
        ``'params'`` entry and per-group hyperparameters.
    defaults : dict
        Default hyperparameters for groups that do not set them.

    Notes
    -----
    Each group's parameters are packed, per dtype, into one :class:`FlatBuffer`
    (one copy of the values at construction). ``p.data``, ``p.grad`` and
    ``optimizer.state[p][...]`` are views into it afterwards.
    """

    #: whether the algorithm keeps torch's per-parameter ``state['step']``
    _tracks_step: bool = True
    #: every state key the algorithm may create (for ``load_state_dict`` checks)
    _state_keys: tuple[str, ...] = ()
    #: the keys among them that are per-parameter scalars (see ``_scalar_spec``)
    _scalar_keys: tuple[str, ...] = ()

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self.state: defaultdict[Parameter, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        self._flats: list[list[FlatBuffer]] = []
        self._step_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._step_post_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._state_dict_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._state_dict_post_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._load_state_dict_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._load_state_dict_post_hooks: OrderedDict[int, Callable] = OrderedDict()

        if isinstance(params, (Parameter, np.ndarray)):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Parameters or dicts, "
                f"but got a single {type(params).__name__}; wrap it in a list"
            )
        if isinstance(params, (set, frozenset)):
            raise TypeError("params must be an ordered collection (a list), not a set")
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        try:
            for group in param_groups:
                self.add_param_group(group)
        except BaseException:
            # A later group was invalid: give the earlier groups' parameters back untouched.
            for flats in self._flats:
                for flat in flats:
                    flat.release()
            raise

    # -- algorithm hooks for subclasses ---------------------------------------
    def _validate_hparams(self, hparams: dict[str, Any]) -> None:
        """Raise if a group's hyperparameters are invalid (subclasses override)."""

    def _state_spec(self, group: dict[str, Any]) -> tuple[tuple[str, float], ...]:
        """State tensors ``group`` needs, as ``(name, initial value)`` pairs."""
        return ()

    def _scalar_spec(self, group: dict[str, Any]) -> tuple[tuple[str, float], ...]:
        """Per-parameter scalar state ``group`` needs, as ``(name, initial value)`` pairs."""
        return ()

    def _update(self, group: dict[str, Any], flat: FlatBuffer, run: Run) -> None:
        raise NotImplementedError

    # -- groups ---------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters.

        Missing hyperparameters are filled from ``defaults``; a parameter
        already in this (or another live) optimizer raises ``ValueError``.
        Everything is checked before anything is packed.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("param_group must have a 'params' entry")
        group = dict(param_group)
        raw = group["params"]
        if isinstance(raw, Parameter):
            raw = [raw]
        elif isinstance(raw, (set, frozenset)):
            raise TypeError("params must be an ordered collection (a list), not a set")
        elif isinstance(raw, np.ndarray):
            raise TypeError("optimizer params must be numopt.Parameter objects; wrap arrays with numopt.Parameter(arr)")
        raw = list(raw)
        if not raw:
            raise ValueError("optimizer got an empty parameter list")
        params: list[Parameter] = []
        names: list[str] = []
        for item in raw:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                names.append(item[0])
                item = item[1]
            if not isinstance(item, Parameter):
                raise TypeError(
                    "optimizer can only optimize numopt.Parameter objects, but one of the params is "
                    f"{type(item).__name__}; wrap arrays with numopt.Parameter(arr)"
                )
            params.append(item)
        if names and len(names) != len(params):
            raise ValueError("all optimizer params should be with/without names. Some param names are missing")
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            group.setdefault(name, default)
        self._validate_hparams(group)

        seen: set[int] = set()
        for p in params:
            if id(p) in seen:
                raise ValueError(
                    f"optimizer contains a parameter group with duplicate parameters: {p!r} is listed twice"
                )
            seen.add(id(p))
        for other in self.param_groups:
            if any(id(q) in seen for q in other["params"]):
                raise ValueError("some parameters appear in more than one parameter group")
            if ("param_names" in other) != bool(names):
                raise ValueError(
                    "all optimizer param groups should be with/without names. cannot add param group "
                    f"{'with' if names else 'without'} names to the optimizer"
                )
        for p in params:
            owner = p._flat.owner if p._flat is not None else None
            if owner is not None and owner is not self:
                raise ValueError(
                    f"{p!r} is already managed by another live optimizer ({type(owner).__name__}); "
                    "a parameter belongs to one optimizer at a time (delete the other one first)"
                )
        self._check_no_shared_memory(params)

        group["params"] = params
        if names:
            group["param_names"] = names
        flats = []
        for dtype in dict.fromkeys(p.dtype for p in params):
            flats.append(FlatBuffer([p for p in params if p.dtype == dtype], self))
        self.param_groups.append(group)
        self._flats.append(flats)

    def _check_no_shared_memory(self, new: list[Parameter]) -> None:
        """Refuse parameters whose arrays overlap (they would silently diverge once packed)."""
        spans = [(*_address_range(p._data), p) for p in new if p.size]
        for flats in self._flats:
            for flat in flats:
                if flat.size:
                    spans.append((*_address_range(flat.data), None))
        spans.sort(key=lambda s: s[0])
        for a, b in zip(spans, spans[1:]):
            if b[0] < a[1]:
                raise ValueError(
                    "two parameters share memory (the same array wrapped in two Parameters, "
                    "or views of one array); give each Parameter its own array"
                )

    # -- stepping -------------------------------------------------------------
    def _prepare(self, group: dict[str, Any], flat: FlatBuffer) -> list[Run]:
        """Runs to update for ``flat``; creates state lazily, like torch, on first use."""
        spec = self._state_spec(group)
        scalar_spec = self._scalar_spec(group)
        if flat._runs is not None and flat.spec == (spec, scalar_spec):
            return flat._runs
        for name, fill in spec:
            flat.ensure_state(name, fill)
        for name, fill in scalar_spec:
            flat.ensure_scalar(name, fill)
        flat.spec = (spec, scalar_spec)
        flat.mark_dirty()
        runs = flat.runs()
        if not (spec or scalar_spec or self._tracks_step):
            return runs
        for run in runs:
            for i in range(run.p0, run.p1):
                st = self.state[flat.params[i]]
                if self._tracks_step and "step" not in st:
                    st["step"] = flat.step_view(i)
                for name, _ in scalar_spec:
                    if name not in st:
                        st[name] = flat.scalar_view(name, i)
                for name, _ in spec:
                    if name not in st:
                        st[name] = flat.state_view(name, i)
        return runs

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model, sets the gradients and returns the loss.

        Returns
        -------
        The closure's loss, or ``None`` without a closure.
        """
        args: tuple[Any, ...] = (closure,) if closure is not None else ()
        kwargs: dict[str, Any] = {}
        for hook in itertools.chain(_global_step_pre_hooks.values(), self._step_pre_hooks.values()):
            result = hook(self, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError(
                        f"{hook} must return None or a tuple of (new_args, new_kwargs), but got {result}."
                    )
                args, kwargs = result
        closure = kwargs.get("closure", args[0] if args else None)
        loss = closure() if closure is not None else None
        for group, flats in zip(self.param_groups, self._flats):
            for flat in flats:
                for run in self._prepare(group, flat):
                    self._update(group, flat, run)
        for hook in itertools.chain(self._step_post_hooks.values(), _global_step_post_hooks.values()):
            hook(self, args, kwargs)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset gradients: to ``None`` (default), or to zeros with one memset per buffer."""
        for flats in self._flats:
            for flat in flats:
                flat.zero_grad(set_to_none)

    # -- state dicts ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Return the state in torch's layout, as copies (later steps do not change it).

        ``{'state': {index: {name: ndarray | float}}, 'param_groups': [{..., 'params': [index, ...]}]}``
        with parameters numbered in group order. ``'step'`` is a Python float.
        """
        for hook in self._state_dict_pre_hooks.values():
            hook(self)
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            packed["params"] = ids
            groups.append(packed)
        state = {}
        for p, st in self.state.items():
            if id(p) in index:
                state[index[id(p)]] = {k: self._export_state_value(k, v) for k, v in st.items()}
        sd: dict[str, Any] = {"state": state, "param_groups": groups}
        for hook in self._state_dict_post_hooks.values():
            result = hook(self, sd)
            if result is not None:
                sd = result
        return sd

    @staticmethod
    def _export_state_value(name: str, value: Any) -> Any:
        if isinstance(value, np.ndarray):
            # 'step' and per-parameter scalar state are 0-d views: exported as Python floats
            return float(value) if value.ndim == 0 and value.dtype == np.float64 else value.copy()
        return copy.deepcopy(value)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state from :meth:`state_dict` (matched by position, as in torch).

        Everything is validated before anything changes: on a ``ValueError`` the
        optimizer is left exactly as it was. State arrays are cast to their
        parameter's dtype; hyperparameters come from the loaded groups.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        state_dict = dict(state_dict)
        for hook in self._load_state_dict_pre_hooks.values():
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        for key in ("state", "param_groups"):
            if key not in state_dict:
                raise ValueError(f"state_dict is missing the key {key!r}")
        saved_groups = state_dict["param_groups"]
        saved_state = state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)) or not isinstance(saved_state, dict):
            raise ValueError("state_dict['param_groups'] must be a list and state_dict['state'] a dict")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has a different number of parameter groups "
                f"({len(saved_groups)} saved, {len(self.param_groups)} in this optimizer)"
            )
        id_map: dict[Any, Parameter] = {}
        new_groups = []
        for gi, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if not isinstance(saved, dict) or "params" not in saved:
                raise ValueError(f"param_groups[{gi}] must be a dict with a 'params' entry")
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"loaded state dict contains a parameter group that doesn't match the size of "
                    f"optimizer's group: param_groups[{gi}] has {len(saved['params'])} params saved, "
                    f"{len(group['params'])} here"
                )
            for k, p in zip(saved["params"], group["params"]):
                id_map[k] = p
            new_group = copy.deepcopy({k: v for k, v in saved.items() if k != "params"})
            for name, default in self.defaults.items():
                if name not in new_group:
                    new_group[name] = group.get(name, default)
            new_group["params"] = group["params"]
            if "param_names" in group and "param_names" not in new_group:
                new_group["param_names"] = group["param_names"]
            try:
                self._validate_hparams(new_group)
            except (TypeError, ValueError) as e:
                raise ValueError(f"param_groups[{gi}] of the loaded state dict: {e}") from None
            new_groups.append(new_group)

        staged: dict[int, dict[str, Any]] = {}
        for k, entry in saved_state.items():
            if k not in id_map:
                raise ValueError(f"state_dict['state'] has an entry for parameter {k!r}, which no group lists")
            p = id_map[k]
            if not isinstance(entry, dict):
                raise ValueError(f"state of parameter {k!r} must be a dict, got {type(entry).__name__}")
            staged[id(p)] = {name: self._import_state_value(k, p, name, v) for name, v in entry.items()}

        # Validated: apply.
        for group, new_group in zip(self.param_groups, new_groups):
            group.clear()
            group.update(new_group)
        for flats in self._flats:
            for flat in flats:
                flat.steps[:] = 0
                spec, scalar_spec = flat.spec or ((), ())
                fills = dict(spec)
                for name, arr in flat.state.items():
                    arr.fill(fills.get(name, 0.0))
                scalar_fills = dict(scalar_spec)
                for name, arr in flat.scalars.items():
                    arr.fill(scalar_fills.get(name, 0.0))
                for i, p in enumerate(flat.params):
                    self.state.pop(p, None)
                    values = staged.get(id(p))
                    if values is None:
                        continue
                    st = self.state[p]
                    for name, v in values.items():
                        if name == "step":
                            flat.steps[i] = v
                            st["step"] = flat.step_view(i)
                        elif name in self._scalar_keys:
                            flat.ensure_scalar(name)[i] = v
                            st[name] = flat.scalar_view(name, i)
                        else:
                            flat.ensure_state(name)
                            view = flat.state_view(name, i)
                            view[...] = v
                            st[name] = view
                    if "step" not in values and values:
                        flat.steps[i] = 1.0  # state exists, so the parameter has been stepped
                flat.spec = None
                flat.mark_dirty()
        for hook in self._load_state_dict_post_hooks.values():
            hook(self)

    def _import_state_value(self, k: Any, p: Parameter, name: str, value: Any) -> Any:
        where = f"state[{k!r}][{name!r}]"
        if name == "step" or name in self._scalar_keys:
            v = np.asarray(value)
            if v.size != 1 or not np.issubdtype(v.dtype, np.number):
                raise ValueError(f"{where} must be a number, got {value!r}")
            x = float(v.reshape(()))
            if not np.isfinite(x):
                raise ValueError(f"{where} must be finite, got {x}")
            if name == "step" and (x < 0 or x != int(x)):
                raise ValueError(f"{where} must be a non-negative whole number, got {x}")
            return x
        if self._state_keys and name not in self._state_keys:
            raise ValueError(
                f"{where}: unexpected state key for {type(self).__name__} (expected one of {list(self._state_keys)})"
            )
        if value is None:
            raise ValueError(f"{where} is None")
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{where} must be a floating-point array, got dtype {arr.dtype}")
        if arr.shape != p.shape:
            raise ValueError(f"{where} has shape {arr.shape}, but its parameter has shape {p.shape}")
        return arr.astype(p.dtype, copy=True)

    # -- hooks ------------------------------------------------------------------
    def register_step_pre_hook(self, hook: Callable) -> RemovableHandle:
        """``hook(optimizer, args, kwargs) -> None | (args, kwargs)`` runs before ``step``."""
        return _register(self._step_pre_hooks, hook)

    def register_step_post_hook(self, hook: Callable) -> RemovableHandle:
        """``hook(optimizer, args, kwargs)`` runs after ``step``."""
        return _register(self._step_post_hooks, hook)

    def register_state_dict_pre_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """``hook(optimizer)`` runs before ``state_dict()``."""
        return _register(self._state_dict_pre_hooks, hook, prepend)

    def register_state_dict_post_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """``hook(optimizer, state_dict) -> None | state_dict`` runs after ``state_dict()``."""
        return _register(self._state_dict_post_hooks, hook, prepend)

    def register_load_state_dict_pre_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """``hook(optimizer, state_dict) -> None | state_dict`` runs before loading."""
        return _register(self._load_state_dict_pre_hooks, hook, prepend)

    def register_load_state_dict_post_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """``hook(optimizer)`` runs after loading."""
        return _register(self._load_state_dict_post_hooks, hook, prepend)

    # -- misc -------------------------------------------------------------------
    def parameters(self) -> Iterable[Parameter]:
        """All parameters, in group order."""
        for group in self.param_groups:
            yield from group["params"]

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k not in ("params", "param_names")):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)
