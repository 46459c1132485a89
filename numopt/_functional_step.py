"""One-call compiled optimizer state: :func:`init` and :func:`step`, re-exported by :mod:`numopt.functional`.

``init(name, x, **hyperparameters)`` returns one namedtuple, ``<Class>FunctionalState``, holding
everything an elementwise optimizer keeps for one flat parameter array: its state arrays (named
as in ``optimizer.state[p]``), the step count (``step``, an int64 array of one element, so that
compiled code can advance it), the class's per-parameter scalar state (``scalar_state``:
NAdam's ``mu_product``, ASGD's ``eta`` and ``mu``; float64 arrays of one element) and every
hyperparameter of a parameter group, with the class's defaults (``lr``, ``betas``, ``eps``, ...;
a ``None`` is stored as NaN). ``step(state, x, g)`` then does what ``optimizer.step()`` does for
that array: it counts the step, forms the per-step scalars (bias corrections, ...) with the
class's own helpers (each class names them as its ``functional_scalars``) and calls the rule's
size-aware kernel. Both from Python and from your ``@njit`` code; within a ``prange`` loop each
iteration can step a state of its own.

What is derived from where, so that a new elementwise optimizer gets this for free:

- the arrays: ``cls.rule.rule.state`` and ``cls.state_tensors`` (as :func:`init_state`);
- the hyperparameters: a parameter group of the class built on a one-element parameter
  (so its validation, its defaults and values it forces, AdamW's ``decoupled_weight_decay``);
- the kernel's scalars, by name: ``lr`` (or the ``lr`` given to ``step``), a hyperparameter,
  ``beta<k>`` (``betas[k - 1]``), ``first_step`` (``t == 1``), the class's ``maximize`` where
  it is an attribute, and the rest from ``cls.functional_scalars``.

The per-class step function is generated as source (like the rules' loops) into a file whose
name hashes it and the modules it compiles, so Numba's on-disk cache serves it.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections import namedtuple
from typing import Any

import numpy as np
from numba import types
from numba.core.errors import TypingError
from numba.extending import overload

from ._jit import JIT_OPTIONS, kernel
from ._state_arrays import _class_named, _classes
from .kernels._generate import _file_digest, _source_file
from .optimizer import scalar_source

__all__ = ["init", "step"]

#: group entries that are torch's implementation switches, not hyperparameters
_SWITCHES = frozenset({"params", "foreach", "capturable", "differentiable", "fused"})


def _dummy(cls: type, dtype: Any, hyperparameters: dict[str, Any]) -> Any:
    from .parameter import Parameter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls([Parameter(np.zeros(1, dtype))], **hyperparameters)


def _value(v: Any) -> Any:
    """A group value as the state holds it (float64, bool, tuple of float64), or None to leave it out."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    if v is None:
        return math.nan
    if isinstance(v, (tuple, list)) and v and all(isinstance(x, (int, float, np.integer, np.floating)) for x in v):
        return tuple(float(x) for x in v)
    return None


class _Plan:
    """How one class's step is formed: its fields, and the generated step function (compiled lazily)."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        rule = cls.rule.rule
        self.rule = rule
        opt = _dummy(cls, np.float64, {})
        group = opt.param_groups[0]
        hparams = {k: _value(v) for k, v in group.items() if k not in _SWITCHES}
        self.hparams = [k for k, v in hparams.items() if v is not None]
        for name in rule.scalars:  # flags a class keeps as attributes (maximize) rather than in its groups
            if name not in self.hparams and isinstance(getattr(opt, name, None), bool):
                self.hparams.append(name)
        self.extras = [k for k in self.hparams if k not in group]
        self.scalar_state = tuple(cls.scalar_state)  # (name, initial value): float64 arrays of one element
        self.fields = (*rule.state, "step", *(name for name, _ in self.scalar_state), *self.hparams)
        clash = len(set(self.fields)) != len(self.fields)
        if clash:  # pragma: no cover - a declaration error
            raise TypeError(f"{cls.__name__}: its state and hyperparameter names clash: {self.fields}")
        known = {k: hparams[k] for k in self.hparams if k in hparams}
        self.args, derived = [], []
        for name in rule.scalars:
            self.args.append(self._resolve(name, scalar_source(name, known, opt), derived))
        self.derived = derived
        self.missing = [] if not derived or cls.functional_scalars is not None else derived
        self._core: Any = None

    @staticmethod
    def _resolve(name: str, source: tuple[str, Any], derived: list[str]) -> str:
        """The step's expression for the rule's scalar ``name``, bound as the class binds it (``source``,
        from :func:`numopt.optimizer.scalar_source`; a hyperparameter or flag is a field of the state)."""
        kind, key = source
        if name == "lr":
            return "lr"
        if kind == "beta":
            return f"state.betas[{key}]"
        if kind == "first":
            return "t == 1"
        if kind != "given":
            return f"state.{name}"
        derived.append(name)
        return f"d[{len(derived) - 1}]"

    def core(self) -> Any:
        """The jitted ``(state, param, grad, lr)`` step of this class (generated and compiled on first use)."""
        if self._core is None:
            name = f"{self.cls.__name__.lower()}_functional_step"
            arrays = ", ".join(f"state.{a}" for a in self.rule.state)
            sizes = " or ".join(f"(state.{a}.size != n and state.{a}.size != 0)" for a in self.rule.state)
            kernel_module = sys.modules[self.rule.body.__module__]
            lines = [
                f"# Generated by numopt._functional_step for {self.cls.__module__}.{self.cls.__name__}: do not edit.",
                f"# rule module {kernel_module.__name__}: {_file_digest(kernel_module.__file__)}",
                f"def {name}(state, param, grad, lr):",
                "    n = param.size",
                f"    if grad.size != n or {sizes or 'False'}:",
                f"        raise ValueError('numopt.functional.step: param, grad and the state arrays of this "
                f"{self.cls.__name__} state must have one size')",
                "    t = state.step[0] + 1",
                "    state.step[0] = t",
            ]
            if self.derived:
                lines.append("    d = functional_scalars(state, lr, t)")
            lines.append(f"    loop(param, grad, {arrays}, {', '.join(self.args)})")
            src = "\n".join(lines) + "\n"
            path = _source_file(name, src, sys.modules[self.cls.__module__])
            namespace = {
                "__name__": __name__,
                "loop": self.cls.rule.auto,
                "functional_scalars": self.cls.functional_scalars,
            }
            exec(compile(src, path, "exec"), namespace)  # noqa: S102  (our own generated source)
            self._core = kernel(namespace[name], parallel=False)
        return self._core


_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = _Plan(cls)
    return plan


def _state_type(cls: type) -> type:
    """The namedtuple type of ``cls``'s functional state (a module global, so its instances pickle)."""
    name = f"{cls.__name__}FunctionalState"
    tp = globals().get(name)
    if tp is None:
        tp = globals()[name] = namedtuple(name, _plan(cls).fields)
        tp.__module__ = __name__
    return tp


def __getattr__(name: str) -> type:
    """``<Class>FunctionalState`` types, made on first use (so pickle, and Numba's cache, find them)."""
    if name.endswith("FunctionalState"):
        cls = _classes().get(name.removesuffix("FunctionalState").lower())
        if cls is not None:
            return _state_type(cls)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_BY_TYPE: dict[type, type] = {}


def init(name: str, x: Any, **hyperparameters: Any) -> tuple:
    """The whole state of one elementwise optimizer for the flat parameter array ``x``, in one namedtuple.

    Parameters
    ----------
    name : str
        An optimizer class with an elementwise rule, case-insensitive (``'adam'``, ``'adamw'``,
        ``'sgd'``, ``'rmsprop'``, ...).
    x : ndarray
        The parameters: float32 or float64, any shape (``step`` takes ``x.reshape(-1)``).
    **hyperparameters
        The class's constructor arguments (``lr``, ``betas``, ``momentum``, ...), with its defaults
        and its checks: the same values give the same updates as the class.

    Returns
    -------
    namedtuple ``<Class>FunctionalState``
        The state arrays (1-D, ``x.size`` elements of ``x``'s dtype, or empty where an option turns
        them off), ``step`` (int64 array of one element, the number of steps taken), the class's
        scalar state (NAdam's ``mu_product``, ASGD's ``eta``, ``mu``) and the hyperparameters
        (float64, bools, tuples of float64; ``None`` as NaN). Pass it to :func:`step` from Python
        or from ``@njit`` code; it is not copied there.

    Raises
    ------
    ValueError
        An unknown name, an optimizer whose per-step scalars depend on more than its
        hyperparameters, the step count and its scalar state (the schedule-free ones), or options
        that do (ADOPT's custom ``clip_lambda``, Adan's ``max_grad_norm``): use its class.
    TypeError
        ``x`` not float32/float64, or an argument the class does not take.

    Notes
    -----
    Not callable from ``@njit`` code: Numba compiles no ``**kwargs``, and the class's checks and
    defaults are Python. Make the states before the compiled loop (one per problem for a batch).

    Examples
    --------
    >>> import numpy as np
    >>> from numopt.functional import init, step
    >>> x = np.ones(3)
    >>> st = init("adam", x, lr=0.1)
    >>> step(st, x, np.ones(3))
    >>> x.round(6), int(st.step[0])
    (array([0.9, 0.9, 0.9]), 1)
    """
    cls = _class_named(name, "init: unknown optimizer")
    arr = np.asarray(x)
    if arr.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"init: x must be float32 or float64, got dtype {arr.dtype}")
    plan = _plan(cls)
    if plan.missing:
        raise ValueError(
            f"init: {cls.__name__}'s step needs per-step scalars {plan.missing} that depend on more than its "
            f"hyperparameters and the step count; use numopt.{cls.__name__}"
        )
    opt = _dummy(cls, arr.dtype, hyperparameters)  # the class's checks and defaults
    reason = cls.functional_refuses(opt) if cls.functional_refuses is not None else None
    if reason:
        raise ValueError(f"init: {reason}; use numopt.{cls.__name__}")
    group = opt.param_groups[0]
    n = int(arr.size)
    tensors = {t.name: t for t in cls.state_tensors}
    values: list[Any] = []
    for field in plan.rule.state:
        t = tensors[field]
        values.append(np.full(n if t.wanted(group) else 0, t.initial(group), arr.dtype))
    values.append(np.zeros(1, np.int64))
    values += [np.full(1, float(initial)) for _, initial in plan.scalar_state]
    for k in plan.hparams:
        values.append(_value(group[k] if k in group else getattr(opt, k)))
    tp = _state_type(cls)
    _BY_TYPE[tp] = cls
    return tp(*values)


def _class_of(tp: type) -> type | None:
    """The optimizer class of a functional state's type (also for one unpickled in a new process)."""
    cls = _BY_TYPE.get(tp)
    if cls is None:
        cls = _classes().get(tp.__name__.removesuffix("FunctionalState").lower())
        if cls is None or _state_type(cls) is not tp:
            return None
        _BY_TYPE[tp] = cls
    return cls


def _check(state: Any, param: np.ndarray, grad: np.ndarray) -> _Plan:
    cls = _class_of(type(state))
    if cls is None:
        raise TypeError(f"step: state must come from numopt.functional.init, got {type(state).__name__}")
    for label, a in (("param", param), ("grad", grad)):
        if not isinstance(a, np.ndarray) or a.ndim != 1 or not a.flags.c_contiguous:
            raise TypeError(f"step: {label} must be a 1-D C-contiguous array (x.reshape(-1))")
    dtype = state[0].dtype
    if param.dtype != dtype or grad.dtype != dtype:
        raise TypeError(f"step: param and grad must have the state's dtype {dtype}, got {param.dtype}, {grad.dtype}")
    return _plan(cls)


def step(state: Any, param: np.ndarray, grad: np.ndarray, lr: float | None = None) -> None:
    """One optimizer step on the flat array ``param``, in place, as ``optimizer.step()`` does it.

    Parameters
    ----------
    state : namedtuple from :func:`init`
        Updated in place (its arrays and its step count).
    param, grad : 1-D C-contiguous arrays of the state's dtype and size
        ``param`` is updated; ``grad`` is only read.
    lr : float, optional
        The learning rate of this step (a schedule's, e.g. :func:`numopt.functional.cosine_annealing_lr`);
        default ``state.lr``.

    Callable from Python and from ``@njit`` code, including inside ``prange`` loops (one state per
    iteration). The kernel is the size-aware one: serial under ``numopt._jit.PARALLEL_THRESHOLD``
    elements, parallel from there. Scalars are formed in float64 and cast once to the arrays' dtype.
    """
    plan = _check(state, param, grad)
    plan.core()(state, param, grad, state.lr if lr is None else float(lr))


@overload(step, jit_options=JIT_OPTIONS)
def _step_overload(state, param, grad, lr=None):  # type: ignore[no-untyped-def]  # Numba matches the impl's names
    named = isinstance(state, (types.NamedTuple, types.NamedUniTuple))
    cls = _class_of(state.instance_class) if named else None
    if cls is None:
        raise TypingError("numopt.functional.step: state must come from numopt.functional.init")
    dtype = state.types[0].dtype
    for label, a in (("param", param), ("grad", grad)):
        if not isinstance(a, types.Array) or a.ndim != 1 or a.dtype != dtype:
            raise TypingError(f"numopt.functional.step: {label} must be a 1-D array of the state's dtype {dtype}")
    core = _plan(cls).core()
    if lr is None or isinstance(lr, (types.NoneType, types.Omitted)):

        def impl(state, param, grad, lr=None):  # type: ignore[no-untyped-def]
            core(state, param, grad, state.lr)

    else:

        def impl(state, param, grad, lr=None):  # type: ignore[no-untyped-def]
            core(state, param, grad, np.float64(lr))

    return impl
