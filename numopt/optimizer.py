"""The ``Optimizer`` base class: groups, packing, state, state dicts and hooks.

An elementwise optimizer is declared once, on its class (see README, "Adding an
optimizer"): ``rule`` (the kernel generated from its update rule in
``numopt/kernels/<rule>.py``), ``state_tensors`` (its state arrays, their initial
values and the hyperparameters that turn them on), ``scalar_state`` (per-parameter
scalars), ``bench_kwargs`` (the settings ``python -m numopt bench`` times). Every list
elsewhere (``numopt.functional``'s exports and ``init_state``, CUDA support, bench
rows, interop keys, test tables) is derived from :func:`registered`. An optimizer
without an elementwise rule runs on CUDA parameters when it declares ``runs_on_cuda``:
every kernel its ``_update`` picks then has a CUDA twin (Lamb, LARS, Prodigy).

Subclasses supply the algorithm through small methods:

``_validate_hparams(h)``
    raise ``ValueError``/``TypeError`` for bad hyperparameters (called on the
    constructor's defaults and on every group added).
``_state_spec(group)``
    the state tensors the group needs, as ``(name, initial_value)`` pairs
    (derived from ``state_tensors`` unless a class overrides it).
``_scalar_spec(group)``
    per-parameter scalar state (like NAdam's ``mu_product``), same form; kept
    in ``flat.scalars[name]`` (float64, one entry per parameter) and shown in
    ``state[p]`` as 0-d views (derived from ``scalar_state``).
``_update(group, flat, run)``
    call the kernel on one run of a flat buffer (``run.pick(kernel)`` resolves the
    parallel, serial or CUDA loop) and ``run.advance()`` the step count when the
    algorithm counts steps. For an algorithm that keeps no ``'step'``
    (``_tracks_step = False``) the base class marks a parameter initialized (its
    count 1) once it has state, exactly as ``load_state_dict`` marks a parameter
    whose state it loads; ``run.step == 0`` then means "first step" (SGD's
    momentum buffer starts from the gradient).
``_step(closure)`` (rarely)
    the whole step between the hooks, for algorithms that are not one update per
    run (LBFGS, the distributed wrappers); ``step`` keeps the hooks (an override of
    ``step`` only documents it and calls ``super().step``).
"""

from __future__ import annotations

import copy
import inspect
import itertools
import operator
import re
import warnings
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from . import _step_clip
from ._bf16 import COMPENSATION_KEY, is_bfloat16
from ._validation import check_torch_switches
from .flat import FlatBuffer, Run, new_flat_buffer
from .parameter import TORCH_TENSOR_ADVICE, Parameter, is_torch_tensor

__all__ = [
    "LoadStateDictResult",
    "Optimizer",
    "RemovableHandle",
    "StateTensor",
    "registered",
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


class LoadStateDictResult(NamedTuple):
    """What ``load_state_dict(..., match='name', strict=False)`` could not match.

    ``missing_keys``: names of this optimizer's parameters that got no saved state;
    ``unexpected_keys``: saved names that no parameter here has.
    """

    missing_keys: list[str]
    unexpected_keys: list[str]


class _LoadPlan(NamedTuple):
    """What loading a state dict changes, worked out and validated before anything changes.

    ``groups``: the new contents of each group here (hyperparameters copied, ``params``
    the group's own list). ``state``: ``id(param)`` -> the state values to load (new
    arrays in the parameter's dtype, floats for scalars); a parameter without an entry,
    or with an empty one, gets fresh state. ``keep``: ``id(param)`` of the parameters
    whose state stays as it is (``match='name', strict=False``). ``result``: what
    ``load_state_dict`` returns.
    """

    groups: list[dict[str, Any]]
    state: dict[int, dict[str, Any]]
    keep: set[int]
    result: LoadStateDictResult


def _same(a: Any, b: Any) -> bool:
    """Equality of two hyperparameter values that never raises (arrays compare elementwise)."""
    try:
        return bool(np.all(a == b)) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else bool(a == b)
    except Exception:
        return a is b


def _hparam_snapshot(group: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy of ``group`` to tell, at the next step, whether it was edited.

    Comparing it with the live group is one C-level dict comparison (the hot path
    of a tiny model's step); list values are copied so in-place edits show too, the
    ``params`` list included (an edited list is packed again, see ``_repack_group``).
    """
    return {k: (list(v) if isinstance(v, list) else v) for k, v in group.items()}


def _is_host_array(a: Any) -> bool:
    return isinstance(a, np.ndarray) and a.size > 0


def _memory_owner(a: np.ndarray) -> np.ndarray:
    """The array at the root of ``a``'s chain of views (alive as long as the memory is)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _address_range(a: np.ndarray) -> tuple[int, int]:
    iface = getattr(a, "__cuda_array_interface__", None) or a.__array_interface__  # device or host memory
    start = iface["data"][0]
    return start, start + a.nbytes


def _no_options(group: dict[str, Any]) -> tuple:
    return ()


def _spec_key_for(tensors: tuple[StateTensor, ...]) -> Callable[[dict[str, Any]], Any]:
    """What a group's state spec depends on: the truth of each ``when`` switch and each ``fill`` value.

    Truth, not value: a schedule that moves ``momentum`` every step (OneCycleLR) must not
    grow the spec cache by one entry per step.
    """
    whens = tuple(dict.fromkeys(t.when for t in tensors if t.when is not None))
    fills = tuple(dict.fromkeys(t.fill for t in tensors if isinstance(t.fill, str)))
    if not whens and not fills:
        return _no_options
    get_whens = operator.itemgetter(*whens) if whens else _no_options
    get_fills = operator.itemgetter(*fills) if fills else _no_options
    if len(whens) == 1:
        return lambda group: (bool(get_whens(group)), get_fills(group))
    return lambda group: (tuple(map(bool, get_whens(group))), get_fills(group))


@dataclass(frozen=True)
class StateTensor:
    """One per-element state array of an optimizer, declared on its class.

    Parameters
    ----------
    name : str
        The key in ``optimizer.state[p]`` (torch's name), and the name of the
        kernel argument that takes it.
    fill : float or str, default 0.0
        Initial value, or the name of the hyperparameter that holds it
        (Adagrad's ``'initial_accumulator_value'``).
    when : str or None, default None
        The hyperparameter that turns this array on (when truthy), e.g.
        ``'amsgrad'``; ``None``: always there.
    signed : bool, default True
        Whether its values may be negative; ``False`` (``exp_avg_sq``) lets 8-bit state
        (``state_dtype='int8'``) use the unsigned map, twice as fine.
    """

    name: str
    fill: float | str = 0.0
    when: str | None = None
    signed: bool = True

    def wanted(self, hparams: dict[str, Any]) -> bool:
        """Whether a group with hyperparameters ``hparams`` keeps this array."""
        return self.when is None or bool(hparams[self.when])

    def initial(self, hparams: dict[str, Any]) -> float:
        """The array's initial value for a group with hyperparameters ``hparams``."""
        return float(hparams[self.fill]) if isinstance(self.fill, str) else float(self.fill)

    @property
    def options(self) -> tuple[str, ...]:
        """The hyperparameters this array depends on."""
        return tuple(k for k in (self.when, self.fill) if isinstance(k, str))


#: argument documentation the optimizer classes share: ``%(name)s`` in a class docstring; ``{arg}`` in a
#: text is the class's own default of constructor argument ``arg`` (see ``_render_doc``)
_SHARED_DOCS = {
    "params": "params : iterable\n        Parameters or parameter groups (dicts).",
    "lr": "lr : float, default {lr}\n        Learning rate (>= 0).",
    "eps": "eps : float, default {eps}\n        Added to the denominator for numerical stability (>= 0).",
    "betas": (
        "betas : (float, float), default {betas}\n"
        "        Decay rates of the first and second moment estimates, each in [0, 1)."
    ),
    "maximize": "maximize : bool, default False\n        Maximize the objective instead of minimizing it.",
    "l2": "weight_decay : float, default {weight_decay}\n        L2 penalty (>= 0).",
    "foreach": (
        "foreach : bool or None, default {foreach}\n        Accepted (numopt always runs one fused pass per buffer)."
    ),
    "torch_args": (
        "%(maximize)s\n"
        "    foreach, fused, capturable, differentiable : optional\n"
        "        torch's implementation switches, where the reference takes them: ``foreach`` and\n"
        "        ``fused`` are accepted (not both True; numopt always runs one fused pass per\n"
        "        buffer), ``capturable`` and ``differentiable`` must be False."
    ),
    # torch's Adam family: Adam, NAdam, RAdam
    "adam_args": (
        "%(lr)s\n"
        "    %(betas)s\n"
        "    %(eps)s\n"
        "    weight_decay : float, default {weight_decay}\n"
        "        L2 penalty, or the decoupled decay rate with ``decoupled_weight_decay`` (>= 0)."
    ),
    # the start of most Examples sections: a parameter of three ones (``example``: with a gradient of ones)
    "example_start": (
        "Examples\n"
        "    --------\n"
        "    >>> import numpy as np, numopt\n"
        "    >>> w = numopt.Parameter(np.ones(3, np.float32))"
    ),
    "example": "%(example_start)s\n    >>> w.grad = np.ones(3, np.float32)",
    # compact optimizer state (numopt.lowbit)
    "state_dtype": (
        "state_dtype : {{None, 'bfloat16', 'int8'}}, default None\n"
        "        How the per-element state is stored: None, in the parameters' dtype; ``'bfloat16'``,\n"
        "        two bytes per element (rounded to nearest even); ``'int8'``, one byte per element plus a\n"
        "        float32 scale per block of 256 (bitsandbytes' block-wise dynamic map). The math runs in\n"
        "        the parameters' dtype either way (float32 for bfloat16 parameters). See :mod:`numopt.lowbit`.\n"
        "    min_8bit_size : int, default 4096\n"
        "        With ``'int8'``, parameters with fewer elements keep full-precision state.\n"
        "    rounding : {{'stochastic', 'nearest'}}, default 'stochastic'\n"
        "        How a bfloat16 parameter (``ml_dtypes.bfloat16``) is written back after its float32 update:\n"
        "        stochastic rounding (unbiased; random bits from ``seed``, the step and the element's index:\n"
        "        reproducible, the same for any thread count) or to nearest even (which loses every update\n"
        "        smaller than half a bfloat16 step: training stalls). No effect on float32/float64 parameters.\n"
        "    compensation : {{None, 'kahan'}}, default None\n"
        "        ``'kahan'``: each bfloat16 parameter keeps what rounding lost in a bfloat16 buffer\n"
        "        (``state[p]['kahan_comp']``, 2 bytes per element) and adds it back at its next step. No\n"
        "        effect on float32/float64 parameters.\n"
        "    seed : int, default 0\n"
        "        The seed of stochastic rounding, in [0, 2**32)."
    ),
    # pytorch-optimizer's weight decay options (Lion, ADOPT, AdEMAMix)
    "decay_args": (
        "weight_decay : float, default {weight_decay}\n"
        "        Weight decay (>= 0).\n"
        "    weight_decouple : bool, default {weight_decouple}\n"
        "        Decay the parameters directly (as AdamW does) instead of through the gradient.\n"
        "    fixed_decay : bool, default {fixed_decay}\n"
        "        With ``weight_decouple``, decay by ``weight_decay`` alone, not ``lr * weight_decay``."
    ),
}


def _doc_value(v: Any) -> str:
    """A default as the docstrings write it: ``1e-3`` (not ``0.001``), ``0`` for zero, ``(0.9, 0.999)``."""
    if isinstance(v, tuple):
        return f"({', '.join(map(_doc_value, v))})"
    if isinstance(v, float) and not isinstance(v, bool):
        if v == 0:
            return "0"
        short = f"{v:.0e}"
        if abs(v) <= 0.01 and float(short) == v:
            mantissa, exponent = short.split("e")
            return f"{mantissa}e{int(exponent)}"
    return repr(v) if isinstance(v, float) else str(v)


def _render_doc(cls: type, doc: str, texts: dict[str, str]) -> str:
    """``doc`` with each ``%(name)s`` of ``texts`` replaced (texts may use other names), every ``{arg}`` in
    them filled with the class's default of constructor argument ``arg``."""
    defaults = {
        k: _doc_value(p.default)
        for k, p in inspect.signature(cls.__init__).parameters.items()  # type: ignore[misc]
        if p.default is not inspect.Parameter.empty
    }
    while "%(" in doc:
        before = doc
        for key, text in texts.items():
            if f"%({key})s" in doc:
                doc = doc.replace(f"%({key})s", text.format_map(defaults) if "{" in text else text)
        if doc == before:  # names of another mechanism (``%(schedule_args)s``) stay
            break
    return doc


#: a buffer's dtype -> an empty array of it: an optional state array that an option turns off
_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0, np.float64)}

_NO_SCALARS: dict[str, Any] = {}

# where a rule's scalar comes from (see ``scalar_source``)
_NUMBER, _FLAG, _BETA, _FIRST, _ATTRIBUTE, _GIVEN = "number", "flag", "beta", "first", "attribute", "given"


def scalar_source(name: str, hparams: dict[str, Any], owner: Any) -> tuple[str, Any]:
    """Where the scalar ``name`` of an elementwise rule comes from, for an optimizer ``owner`` whose
    groups hold ``hparams``: ``('number' | 'flag', name)`` a hyperparameter (a flag when its validated
    value is a bool), ``('beta', k - 1)`` for ``beta<k>`` (``betas[k - 1]``), ``('first', None)`` for
    ``first_step``, ``('attribute', name)`` a flag the optimizer keeps as an attribute (``maximize``
    of the pytorch-optimizer classes), else ``('given', name)``: a per-step scalar of the class.
    The one rule both ``Optimizer._update`` and ``numopt.functional.init`` bind by."""
    if name in hparams:
        return (_FLAG if isinstance(hparams[name], (bool, np.bool_)) else _NUMBER), name
    m = re.fullmatch(r"beta(\d)", name)
    if m and "betas" in hparams:
        return _BETA, int(m.group(1)) - 1
    if name == "first_step":
        return _FIRST, None
    if isinstance(getattr(owner, name, None), bool):
        return _ATTRIBUTE, name
    return _GIVEN, name


#: optimizer class -> its rule's call, generated: ``(self, group, flat, run, step, given) -> None``, the
#: arguments bound by name (see ``Optimizer._update``)
_BINDINGS: dict[type, Callable[..., None]] = {}


def _bind(opt: Any, given: dict[str, Any]) -> Callable[..., None]:
    """The update of ``opt``'s class, worked out once per class from a live instance and the names its
    ``_step_scalars`` gives: one expression per argument of the rule, compiled into one function (a step of
    a tiny model then costs what a hand-written argument list costs)."""
    cls = type(opt)
    if cls.rule is None:
        raise NotImplementedError(f"{cls.__name__} declares no elementwise rule: it must override _update")
    rule = cls.rule.rule
    when = {t.name: t.when for t in cls.state_tensors}
    args = ["run.data", "run.grad"]
    for name in rule.state:
        array = f"run.state[{name!r}]"
        args.append(array if when[name] is None else f"({array} if group[{when[name]!r}] else _EMPTY[flat.dtype])")
    optional = {p.name: p.default for p in rule._const_params if p.default is not inspect.Parameter.empty}
    for name in rule.scalars:
        kind, key = (_GIVEN, name) if name in given else scalar_source(name, opt.defaults, opt)
        if kind == _GIVEN and name not in given:
            if name not in optional:
                raise TypeError(f"{cls.__name__}: no hyperparameter nor _step_scalars gives its rule's {name!r}")
            args.append(repr(optional[name]))  # a scalar with a default that the class does not set
            continue
        args.append(
            {
                _GIVEN: f"given[{key!r}]",
                _NUMBER: f"float(group[{key!r}])",
                _FLAG: f"bool(group[{key!r}])",
                _BETA: f"float(group['betas'][{key!r}])",
                _FIRST: "step == 1",
                _ATTRIBUTE: f"bool(self.{key})",
            }[kind]
        )
    # the rule from the class: a jitted function read from an instance is a bound method
    src = f"def update(self, group, flat, run, step, given):\n    run.pick(rule)({', '.join(args)})\n"
    namespace = {"rule": cls.rule, "_EMPTY": _EMPTY}
    exec(compile(src, f"<numopt update of {cls.__name__}>", "exec"), namespace)  # noqa: S102  (generated here)
    update = _BINDINGS[cls] = namespace["update"]
    return update


#: torch's implementation switches: accepted when they ask for nothing numopt does not do
_TORCH_SWITCHES = ("foreach", "fused", "differentiable", "capturable")

#: (optimizer class, values of the hyperparameters its state declaration reads) -> its state spec
_SPEC_CACHE: dict[tuple, tuple[tuple[str, float], ...]] = {}

#: class name -> optimizer class, for every optimizer numopt ships (filled as their modules are imported)
_REGISTRY: dict[str, type] = {}


def registered(elementwise: bool = False) -> list[type]:
    """The optimizer classes numopt ships, in the order their modules were imported.

    ``elementwise=True``: only those declared with an elementwise ``rule`` (one
    generated kernel per step; these get ``numopt.functional``, CUDA and the bench).
    """
    from . import optim  # noqa: F401  (imports every optimizer module, which registers its class)

    classes = list(_REGISTRY.values())
    return [c for c in classes if c.rule is not None] if elementwise else classes


class WrapsOptimizer:
    """Mixin of an optimizer that wraps another, ``self.optimizer`` (``Lookahead``, ``DistributedOptimizer``):
    public attributes the wrapper lacks are read from the wrapped optimizer."""

    optimizer: Any

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes the wrapper does not have; private ones are never forwarded.
        inner = self.__dict__.get("optimizer")
        if inner is None or name.startswith("_"):
            raise AttributeError(name)
        return getattr(inner, name)

    def _share(self, optimizer: Any) -> None:
        """Wrap ``optimizer``: its groups and flat buffers are the wrapper's too (shared, not copied)."""
        self.optimizer = optimizer
        self.param_groups = optimizer.param_groups
        self._flats = optimizer._flats

    def _repr_around(self, head: str) -> str:
        """``head``, then the wrapped optimizer's repr indented, closed by ``)``."""
        inner = "\n".join("    " + line for line in repr(self.optimizer).splitlines())
        return f"{head},\n{inner}\n)"


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

    # -- the declaration (see the module docstring) ---------------------------------------------
    #: the kernel generated from the elementwise update rule (``numopt.kernels._generate``); None: none
    rule: Any = None
    #: whether a class without a ``rule`` updates CUDA parameters: its ``_update`` (or ``_update_all``)
    #: runs only kernels with a CUDA twin (``run.pick``; :data:`numopt.kernels.cuda.KERNELS`)
    runs_on_cuda: bool = False
    #: the per-element state arrays, in the rule's argument order
    state_tensors: tuple[StateTensor, ...] = ()
    #: per-parameter scalar state, as ``(name, initial value)`` pairs (float64, e.g. NAdam's mu_product)
    scalar_state: tuple[tuple[str, float], ...] = ()
    #: for :func:`numopt.functional.step`: a jitted ``(state, lr, t) -> tuple`` giving the rule's
    #: per-step scalars that are not a hyperparameter (``lr``, ``eps``, ``betas[i]`` as ``beta<i+1>``, ...)
    #: nor ``first_step``, in the rule's order, at step ``t`` (from 1); the class's ``_update`` must use
    #: the same formulas (one shared helper). None: the rule has no such scalars
    functional_scalars: Any = None
    #: for :func:`numopt.functional.init`: ``(optimizer) -> reason or None``, given an optimizer built
    #: with the user's arguments; a reason (text) refuses options ``functional_scalars`` does not
    #: cover (ADOPT's custom ``clip_lambda``, Adan's global-norm clipping). None: every option works
    functional_refuses: Callable[[Any], str | None] | None = None
    #: constructor arguments ``python -m numopt bench`` times this optimizer with; None: not benched
    bench_kwargs: dict[str, Any] | None = None
    #: the implementation this class follows, as an import path (``"pytorch_optimizer.Lion"``), for an
    #: optimizer torch.optim lacks; None: ``torch.optim.<class name>``. The tests check against it and
    #: ``python -m numopt bench`` times it; numopt itself never imports it.
    reference: str | None = None
    #: a group's values of the hyperparameters ``state_tensors`` read (derived; a plain callable)
    _spec_key: Callable[[dict[str, Any]], Any] = _no_options
    #: constructor arguments kept as attributes of the optimizer, not in its groups (``maximize`` of the
    #: pytorch-optimizer classes, as their reference keeps it): name -> its check, ``check(name, value)``
    _optimizer_attributes: dict[str, Callable[[str, Any], Any]] = {}
    #: whether the algorithm keeps torch's per-parameter ``state['step']``
    _tracks_step: bool = True
    #: every state key the algorithm may create (for ``load_state_dict`` checks); derived from the
    #: declaration unless a class sets it
    _state_keys: tuple[str, ...] = ()
    #: the keys among them that are per-parameter scalars (see ``_scalar_spec``)
    _scalar_keys: tuple[str, ...] = ()
    #: whether ``clip_grad_norm_``'s coefficient is applied inside the step's generated loop (derived:
    #: a class with a ``rule`` whose step reads the gradient nowhere else; a class whose step also
    #: reads it elsewhere (a reduction) sets False, and clipping then scales the gradients at once)
    _fuses_grad_scale: bool = False
    #: why ``clip_grad_norm_`` is refused for this class (empty: supported)
    _clip_refused: str = ""
    #: the clipping coefficient the next step applies (1.0: none pending; see ``clip_grad_norm_``)
    _grad_scale: float = 1.0
    #: whether the next step is skipped (a non-finite norm under ``skip_nonfinite=True``)
    _skip_next: bool = False
    #: the ``AveragedModel(self, ..., in_step=True)`` whose average this optimizer's steps update, if any
    _in_step_average: Any = None
    #: how many steps ``clip_grad_norm_(..., skip_nonfinite=True)`` made no-ops
    skipped_steps: int = 0
    #: whether the last ``step()`` was skipped for a non-finite gradient norm
    last_step_skipped: bool = False

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        """Derive the class's declaration; ``register=False`` keeps a class of ``numopt.optim`` out of the
        registry (a wrapper such as ``Lookahead``, which the registry's tables cannot build from parameters)."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        if cls.__doc__ and "%(" in cls.__doc__:
            cls.__doc__ = _render_doc(cls, cls.__doc__, _SHARED_DOCS)
        if "_state_keys" not in own and (cls.state_tensors or cls.scalar_state):
            step = ("step",) if cls._tracks_step else ()
            cls._state_keys = (*step, *(n for n, _ in cls.scalar_state), *(t.name for t in cls.state_tensors))
        cls._spec_key = _spec_key_for(cls.state_tensors)
        if "_scalar_keys" not in own and cls.scalar_state:
            cls._scalar_keys = tuple(n for n, _ in cls.scalar_state)
        if "_fuses_grad_scale" not in own:
            cls._fuses_grad_scale = cls.rule is not None and cls.rule.rule.scales_grad
        if cls.rule is not None:
            missing = set(cls.rule.rule.state) - {t.name for t in cls.state_tensors}
            if missing:
                raise TypeError(f"{cls.__name__}: the rule's state {sorted(missing)} is not in state_tensors")
        if register and cls.__module__.startswith("numopt.optim.") and not cls.__name__.startswith("_"):
            _REGISTRY[cls.__name__] = cls

    def _construct(self, params: Any, arguments: dict[str, Any], **convert: Callable[[Any], Any]) -> None:
        """Set up from the constructor's arguments (its ``locals()``): every argument but ``params`` is a default.

        The arguments the class keeps as attributes (``_optimizer_attributes``) are checked
        and set first. torch's implementation switches (``foreach``, ``fused``, ``differentiable``,
        ``capturable``) are checked, the hyperparameters validated, then each named in
        ``convert`` converted (Adam keeps ``betas`` as a tuple) before the groups are added.
        """
        defaults = {k: v for k, v in arguments.items() if k not in ("self", "params", "__class__")}
        for name, check in self._optimizer_attributes.items():  # checked and kept on the optimizer
            check(name, defaults[name])
            setattr(self, name, defaults.pop(name))
        if "state_dtype" in defaults:  # compact state (numopt.lowbit): the optimizer's, not a group's
            self._set_state_dtype(defaults.pop("state_dtype"), defaults.pop("min_8bit_size", 4096))
        if "rounding" in defaults:  # bfloat16 parameters (numopt._bf16): the optimizer's, not a group's
            self._set_bf16_options(defaults.pop("rounding"), defaults.pop("compensation"), defaults.pop("seed"))
        check_torch_switches(**{k: defaults[k] for k in _TORCH_SWITCHES if k in defaults})
        if defaults.get("fused") and defaults.get("foreach"):
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
        self._validate_hparams(defaults)
        for k, f in convert.items():
            defaults[k] = f(defaults[k])
        Optimizer.__init__(self, params, defaults)

    #: compact per-element state: 'bfloat16', 'int8', or None (the parameters' dtype); see ``numopt.lowbit``
    state_dtype: str | None = None
    #: with ``state_dtype='int8'``: parameters with fewer elements keep full-precision state
    min_8bit_size: int = 4096

    def _set_state_dtype(self, state_dtype: Any, min_8bit_size: Any) -> None:
        """Check and set ``state_dtype`` and ``min_8bit_size`` (before any group is packed)."""
        from .lowbit import check_state_dtype

        check_state_dtype(type(self), state_dtype, min_8bit_size)
        self.state_dtype = state_dtype
        self.min_8bit_size = int(min_8bit_size)

    #: how bfloat16 parameters are written back: 'stochastic' or 'nearest' (see ``numopt._bf16``)
    rounding: str = "stochastic"
    #: None, or 'kahan': a bfloat16 compensation buffer per bfloat16 parameter
    compensation: str | None = None
    #: the seed of stochastic rounding
    seed: int = 0

    def _set_bf16_options(self, rounding: Any, compensation: Any, seed: Any) -> None:
        """Check and set ``rounding``, ``compensation`` and ``seed`` (for bfloat16 parameters)."""
        from ._bf16 import check_bf16_options

        check_bf16_options(rounding, compensation, seed)
        self.rounding, self.compensation, self.seed = rounding, compensation, int(seed)

    @classmethod
    def _takes_bf16_params(cls) -> bool:
        """Whether this class updates bfloat16 parameters: those that take ``state_dtype`` (a generated
        elementwise rule whose state is shaped like the parameters)."""
        return cls.rule is not None and "state_dtype" in inspect.signature(cls.__init__).parameters

    def _state_format(self) -> tuple[str, int, frozenset[str]] | None:
        """What ``FlatBuffer.state_format`` is for this optimizer's buffers."""
        if self.state_dtype is None:
            return None
        signed = frozenset(t.name for t in self.state_tensors if t.signed)
        return self.state_dtype, self.min_8bit_size, signed

    @classmethod
    def hyperparameter_defaults(cls) -> dict[str, Any]:
        """The constructor's keyword defaults (``lr``, ``betas``, ...)."""
        return {
            k: p.default
            for k, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty
        }

    @classmethod
    def bench_streams(cls) -> tuple[int, int]:
        """``(arrays updated, arrays only read)`` by one step with ``bench_kwargs``: its memory pattern."""
        h = {**cls.hyperparameter_defaults(), **(cls.bench_kwargs or {})}
        on = {"param", "grad", *(t.name for t in cls.state_tensors if t.wanted(h))}
        updated = sum(a in on for a in cls.rule.rule.updates)
        return updated, len(on) - updated

    #: whether an edit of a group's ``params`` list is packed again at the next step (else refused)
    _repackable: bool = True
    #: whether the global step hooks (``register_optimizer_step_pre_hook``) run around ``step``;
    #: off for wrappers whose inner optimizer's step runs them
    _global_step_hooks: bool = True
    #: whether ``step`` reads ``SparseGrad`` gradients as they are (SparseAdam) instead of densifying them
    _sparse_grads: bool = False

    def _init_hooks(self) -> None:
        """No step or state-dict hooks registered yet."""
        self._step_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._step_post_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._state_dict_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._state_dict_post_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._load_state_dict_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._load_state_dict_post_hooks: OrderedDict[int, Callable] = OrderedDict()

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self.state: defaultdict[Parameter, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        self._flats: list[list[FlatBuffer]] = []
        self._init_hooks()
        #: id(group) -> the hyperparameters last validated (edits are re-validated at the next step)
        self._checked_hparams: dict[int, dict[str, Any]] = {}
        #: (weakref to the array that owned a packed parameter's memory, start, end): a later group
        #: wrapping the same memory is refused as long as that array is alive
        self._source_spans: list[tuple[weakref.ref, int, int]] = []

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
        """State tensors ``group`` needs, as ``(name, initial value)`` pairs (from ``state_tensors``).

        Called at every step: cached by what the declaration reads (see ``_spec_key_for``).
        """
        cls = type(self)
        try:
            key = (cls, cls._spec_key(group))
            return _SPEC_CACHE[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable hyperparameter value: no caching
            key = None
        spec = tuple((t.name, t.initial(group)) for t in self.state_tensors if t.wanted(group))
        if key is not None:
            _SPEC_CACHE[key] = spec
        return spec

    def _state_layout(self, flat: FlatBuffer, name: str) -> list[tuple[int, ...] | None] | None:
        """Per-parameter shapes of state ``name`` when they are not the parameters' own.

        ``None`` (the default): shaped like the parameters. Otherwise one shape per
        parameter of ``flat``, ``None`` for a parameter that has no such entry.
        """
        return None

    def _scalar_spec(self, group: dict[str, Any]) -> tuple[tuple[str, float], ...]:
        """Per-parameter scalar state ``group`` needs, as ``(name, initial value)`` pairs (``scalar_state``)."""
        return self.scalar_state

    def _count_step(self, group: dict[str, Any], run: Run) -> float:
        """Count this step for the run's parameters; return the count the rule reads (from 1).

        ``run.advance()`` for an algorithm that keeps ``'step'``; otherwise the count is left to
        the base class (see ``_update_all``) and this returns ``run.step + 1`` (1 on a parameter's
        first step). bfloat16 parameters always count their steps
        (stochastic rounding reads the count). The generic ``_update`` passes ``first_step = (count == 1)``.
        """
        return run.advance() if self._tracks_step or run.bf16 else run.step + 1.0

    def _step_scalars(self, group: dict[str, Any], step: float) -> dict[str, Any]:
        """The rule's scalars at step ``step`` that are not read from the group by name (see ``_update``).

        A mapping from the rule's scalar names (bias corrections, ...) to float64 values,
        formed with the same helpers as the class's ``functional_scalars``; a name it gives
        takes precedence over the group's value (Schedule-Free's scheduled ``lr``).
        """
        return _NO_SCALARS

    def _update(self, group: dict[str, Any], flat: FlatBuffer, run: Run) -> None:
        """One step of the class's ``rule`` over ``run``, its arguments bound by name.

        Arrays: ``param`` and ``grad`` from the run, each state array from ``run.state`` (an
        optional one whose ``when`` switch is off: an empty array). Scalars, by name (see
        :func:`scalar_source`): a hyperparameter of the group (``float()``, or ``bool()`` for a
        flag), ``beta<k>`` (``betas[k - 1]``), ``first_step``, a flag the optimizer keeps as an
        attribute (``maximize``), and the rest from :meth:`_step_scalars` (the same names at every
        step); a scalar none of these gives takes its default in the rule's constants function (Adam's
        ``decoupled_weight_decay=False``). A class whose step is not one such call overrides this.
        """
        step = self._count_step(group, run)
        given = self._step_scalars(group, step)
        (_BINDINGS.get(type(self)) or _bind(self, given))(self, group, flat, run, step, given)

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
                if is_torch_tensor(item):
                    raise TypeError(f"optimizer params are torch tensors: {TORCH_TENSOR_ADVICE}")
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
        sources = [(_memory_owner(p._data), *_address_range(p._data)) for p in params if _is_host_array(p._data)]

        group["params"] = params
        if names:
            group["param_names"] = names
        bf16 = [p for p in params if is_bfloat16(p.dtype)]
        if bf16 and not self._takes_bf16_params():
            raise TypeError(
                f"{type(self).__name__} does not update bfloat16 parameters (it has no generated elementwise rule "
                "with per-element state shaped like its parameters); use float32 parameters, or an optimizer "
                "that takes state_dtype (Adam, AdamW, SGD, Lion, ...)"
            )
        if bf16:
            _EMPTY.setdefault(bf16[0].dtype, np.empty(0, np.float32))  # an optional state array turned off
        flats = []
        for key in dict.fromkeys((p.dtype, p.is_cuda) for p in params):
            flats.append(new_flat_buffer([p for p in params if (p.dtype, p.is_cuda) == key], self))
            flats[-1].state_format = self._state_format()
        self.param_groups.append(group)
        self._flats.append(flats)
        self._checked_hparams[id(group)] = _hparam_snapshot(group)
        self._source_spans.extend((weakref.ref(owner), lo, hi) for owner, lo, hi in sources)

    def _check_no_shared_memory(self, new: list[Parameter]) -> None:
        """Refuse parameters whose arrays overlap (they would silently diverge once packed)."""
        spans = [(*_address_range(p._data), p) for p in new if p.size]
        own = []
        for flats in self._flats:
            for flat in flats:
                if flat.size:
                    own.append(_address_range(flat.data))
        spans += [(lo, hi, None) for lo, hi in own]
        # The arrays earlier groups were created from, if still alive: packing copied them, so a
        # parameter wrapping the same memory now would silently diverge from the packed one
        # (unless a buffer has since adopted that memory as its own storage, as ZeRO's shards do).
        spans += [
            (lo, hi, None)
            for ref, lo, hi in self._source_spans
            if hi > lo and ref() is not None and not any(a < hi and lo < b for a, b in own)
        ]
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
        if flat.bf16 and self.compensation == "kahan":  # a bfloat16 parameter's compensation (numopt._bf16)
            spec = (*spec, (COMPENSATION_KEY, 0.0))
        scalar_spec = self._scalar_spec(group)
        if flat._runs is not None and flat.spec == (spec, scalar_spec):
            return flat._runs
        for name, fill in spec:
            flat.ensure_state(name, fill, self._state_layout(flat, name))
        for name, fill in scalar_spec:
            flat.ensure_scalar(name, fill)
        flat.spec = (spec, scalar_spec)
        flat.mark_dirty()
        runs = flat.runs()
        counts = self._tracks_step or flat.bf16  # bfloat16 parameters count their steps (stochastic rounding)
        if not (spec or scalar_spec or counts):
            return runs
        for run in runs:
            for i in range(run.p0, run.p1):
                st = self.state[flat.params[i]]
                if counts and "step" not in st:
                    st["step"] = flat.step_view(i)
                for name, _ in scalar_spec:
                    if name not in st:
                        st[name] = flat.scalar_view(name, i)
                for name, _ in spec:
                    if name not in st and flat.state_shape(name, i) is not None:
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
        The closure's loss, or ``None`` without a closure (or when the step is skipped).

        Notes
        -----
        After :meth:`clip_grad_norm_`, the step applies the clipping coefficient as it
        reads the gradients; after one with ``skip_nonfinite=True`` that found a NaN or
        Inf norm, it changes nothing (no hooks, no closure call, no state or step count),
        counts ``skipped_steps`` and sets ``last_step_skipped``.
        """
        if self._skip_next:  # clip_grad_norm_(..., skip_nonfinite=True) found a NaN or Inf: a no-op
            self._skip_next = False
            self._grad_scale = 1.0
            self.skipped_steps += 1
            self.last_step_skipped = True
            return None
        self.last_step_skipped = False
        args: tuple[Any, ...] = (closure,) if closure is not None else ()
        kwargs: dict[str, Any] = {}
        pre = self._step_pre_hooks.values()
        post = self._step_post_hooks.values()
        if self._global_step_hooks:
            pre = itertools.chain(_global_step_pre_hooks.values(), pre)
            post = itertools.chain(post, _global_step_post_hooks.values())
        for hook in pre:
            result = hook(self, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError(
                        f"{hook} must return None or a tuple of (new_args, new_kwargs), but got {result}."
                    )
                args, kwargs = result
        loss = self._step(kwargs.get("closure", args[0] if args else None))
        for hook in post:
            hook(self, args, kwargs)
        return loss

    def _step(self, closure: Callable[[], Any] | None) -> Any:
        """The algorithm's part of :meth:`step`, which runs it between the step hooks.

        Re-validates edited hyperparameters, evaluates the closure, updates every
        group. Subclasses with another kind of step (LBFGS, the distributed
        wrappers) override this, never ``step``.
        """
        self._check_hparam_edits()
        loss = closure() if closure is not None else None
        self._update_all()
        return loss

    def _update_all(self) -> None:
        """One update of every group's runs (the algorithm's part of ``step``, without hooks or checks)."""
        scale = self._grad_scale  # a pending clipping coefficient: applied by this step's loops, once
        if scale != 1.0:
            self._grad_scale = 1.0
        average = self._in_step_average  # AveragedModel(self, ..., in_step=True): updated by the loops it can be
        fuses = average is not None and average.n_averaged > 0 and type(self)._update is Optimizer._update
        for group, flats in zip(self.param_groups, self._flats):
            for flat in flats:
                for run in self._prepare(group, flat):
                    run.scale = scale
                    run.ema = average.ema_of(flat, run) if fuses else None
                    self._update(group, flat, run)
                    if run.step == 0 and not self._tracks_step and flat.spec[0]:
                        # state now exists: mark the parameters initialized, as load_state_dict
                        # marks those whose state it loads (their 'step' counts 1 from here on)
                        run.advance()

    def _check_hparam_edits(self) -> None:
        """Validate hyperparameters edited since the last check, before anything is updated.

        ``group['lr'] = float('nan')`` (or any invalid edit) raises here, at the next
        ``step()``, instead of updating some groups and then failing, or silently
        filling the parameters with NaN.
        """
        checked = self._checked_hparams
        for gi, group in enumerate(self.param_groups):
            last = checked.get(id(group))
            try:
                if last == group:
                    continue
            except Exception:  # a value whose == is not a bool (an array): check it again
                pass
            if last is not None and last.get("params") != group.get("params"):
                self._repack_group(gi, last["params"])
            snap = _hparam_snapshot(group)
            try:
                self._validate_hparams(group)
            except (TypeError, ValueError) as e:
                raise type(e)(f"param_groups[{gi}]: {e}") from None
            checked[id(group)] = snap

    def _repack_group(self, gi: int, old: list[Parameter]) -> None:
        """Honour an edit of ``param_groups[gi]['params']`` (append, remove, replace, clear), as torch does.

        The edited list is validated and packed like a new group (``add_param_group``'s
        checks, before anything moves), in the group's place and dict; parameters that
        stay keep their state, parameters that left are unbound with their current
        values and keep their state in ``optimizer.state`` (as in torch: it comes back
        with them). If the edit cannot be packed, nothing changes and the error names
        the group.
        """
        group = self.param_groups[gi]
        where = f"param_groups[{gi}]['params'] was edited"
        if not self._repackable:
            raise ValueError(
                f"{where}, but {type(self).__name__} cannot change its parameters after construction; "
                "restore the list, or build a new optimizer over the parameters you want"
            )
        new = group["params"]
        if isinstance(new, Parameter):
            new = [new]
        if not isinstance(new, list):
            raise TypeError(f"{where} to a {type(new).__name__}; it must be a list of numopt.Parameter")
        names = group.get("param_names")
        if names is not None and len(names) != len(new):
            raise ValueError(f"{where} ({len(new)} parameters) but its 'param_names' ({len(names)}) was not: edit both")
        new_ids = {id(p) for p in new}
        # state stays keyed by parameter, as in torch: one that left keeps it, and takes it up again if it comes back
        kept = {id(p): self._copy_param_state(p) for p in new if isinstance(p, Parameter)}
        flats = self._flats[gi]
        spec = {k: v for k, v in group.items() if k != "param_names"}
        spec["params"] = list(zip(names, new)) if names is not None else list(new)
        del self.param_groups[gi], self._flats[gi]
        try:
            if new:
                self.add_param_group(spec)  # every check before anything is packed
        except (TypeError, ValueError) as e:
            self.param_groups.insert(gi, group)
            self._flats.insert(gi, flats)
            raise type(e)(f"{where} and cannot be packed again: {e}; restore or fix the edit") from None
        added = self.param_groups.pop() if new else {**spec, "params": []}
        new_flats = self._flats.pop() if new else []
        self._checked_hparams.pop(id(added), None)
        for p in old:
            if id(p) not in new_ids and p in self.state:  # unbound below: its state becomes a copy of its own
                self.state[p] = {k: np.array(v, copy=True) for k, v in self.state[p].items()}
        for flat in flats:
            flat.release()  # unbinds the parameters that left (the others are bound to the new buffers)
        group.clear()
        group.update(added)
        self.param_groups.insert(gi, group)
        self._flats.insert(gi, new_flats)
        fills = dict(self._state_spec(group))
        scalar_fills = dict(self._scalar_spec(group))
        for flat in new_flats:
            for i, p in enumerate(flat.params):
                if kept.get(id(p)):
                    self._load_param_state(flat, i, kept[id(p)], fills, scalar_fills)
            flat.spec = None
            flat.mark_dirty()

    def _copy_param_state(self, p: Parameter) -> dict[str, Any] | None:
        """A copy of ``state[p]`` (numbers as floats, arrays as host copies), or ``None`` if it has none."""
        st = self.state.get(p)
        if not st:
            return None
        return {
            k: float(np.asarray(v))
            if k == "step" or k in self._scalar_keys
            else (v.copy() if hasattr(v, "dequantize") else np.array(v, copy=True))
            for k, v in st.items()
        }

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset gradients: to ``None`` (default), or to zeros with one memset per buffer.

        A clipping coefficient or skip that :meth:`clip_grad_norm_` left for the next step
        belonged to the gradients reset here: it is dropped.
        """
        self._grad_scale = 1.0
        self._skip_next = False
        for flats in self._flats:
            for flat in flats:
                flat.zero_grad(set_to_none)

    # -- clipping inside the step -----------------------------------------------
    def clip_grad_norm_(
        self,
        max_norm: float | None,
        norm_type: float = 2.0,
        error_if_nonfinite: bool = False,
        foreach: bool | None = None,
        *,
        skip_nonfinite: bool = False,
    ) -> np.floating:
        r"""Clip the total gradient norm of this optimizer's parameters, inside the next step.

        The drop-in for ``torch.nn.utils.clip_grad_norm_(params, max_norm, ...)`` before
        ``optimizer.step()``: the norm of all gradients together is taken in one pass
        over the flat gradient buffers (fixed-order float64 partials, as in
        :func:`numopt.utils.clip_grad_norm_`: the same for any thread count), and the
        coefficient :math:`\min(1, 	ext{max\_norm} / (\|g\| + 10^{-6}))` (in the norm's
        dtype, as torch) is applied by the next :meth:`step` as it reads each gradient:
        no pass writes the gradients. Optimizers whose step reads gradients outside
        their generated loop (the non-elementwise ones) scale them at once instead.

        ``p.grad`` keeps its unclipped values until that step (call
        :meth:`apply_grad_scale_` to write the clipped values now); :meth:`zero_grad`
        drops a pending coefficient. A second call before the step sees the gradients
        as already scaled, as a second ``torch.nn.utils.clip_grad_norm_`` would.

        Parameters
        ----------
        max_norm : float or None
            Largest allowed total norm; ``None`` takes the norm without clipping (with
            ``skip_nonfinite=True``: the non-finite guard alone).
        norm_type : float, default 2.0
            Order of the norm (``inf``, ``-inf``, ``0`` as in :func:`numopt.utils.clip_grad_norm_`).
        error_if_nonfinite : bool, default False
            Raise ``RuntimeError`` when the norm is NaN or infinite (torch's message).
        foreach : bool or None
            Accepted for torch compatibility.
        skip_nonfinite : bool, default False
            When the norm is NaN or infinite, make the next :meth:`step` a no-op
            (parameters, state and step counts untouched), count it in
            ``skipped_steps`` and set ``last_step_skipped`` (a training loop can skip
            its scheduler step on it).

        Returns
        -------
        np.float32 or np.float64
            The total norm before clipping (float64 if any gradient is float64).

        Examples
        --------
        >>> import numpy as np, numopt
        >>> w = numopt.Parameter(np.zeros(2, np.float32))
        >>> opt = numopt.SGD([w], lr=1.0)
        >>> w.grad = np.array([3.0, 4.0], np.float32)
        >>> float(opt.clip_grad_norm_(1.0))
        5.0
        >>> opt.step()          # the step uses the clipped gradient (0.6, 0.8)
        >>> np.round(w.data, 4)
        array([-0.6, -0.8], dtype=float32)
        """
        return _step_clip.clip_grad_norm_(self, max_norm, norm_type, error_if_nonfinite, foreach, skip_nonfinite)

    def apply_grad_scale_(self) -> None:
        """Write the clipping coefficient a :meth:`clip_grad_norm_` left for the next step into the
        gradients now (one pass over them), so ``p.grad`` shows the clipped values; the step then uses
        them as they are. Nothing happens when no coefficient is pending."""
        _step_clip.apply_grad_scale_(self)

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
        # Parameter.name is recorded as torch's 'param_names' when every parameter has one
        # (groups built from (name, param) pairs carry 'param_names' already).
        named = all("param_names" not in g and p.name is not None for g in self.param_groups for p in g["params"])
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            if named:
                packed["param_names"] = [p.name for p in group["params"]]
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

    def _export_state_value(self, name: str, value: Any) -> Any:
        if hasattr(value, "copy_to_host"):  # state of a CUDA parameter: copied to host memory
            return value.copy_to_host()
        if hasattr(value, "dequantize"):  # compact state (numopt.lowbit): a host copy, still compact
            return value.to_host()
        if isinstance(value, np.ndarray):
            # 'step' and per-parameter scalar state are 0-d views: exported as Python floats;
            # tensor state stays an array even for a 0-d float64 parameter
            if name == "step" or name in self._scalar_keys:
                return float(value)
            return value.copy()
        return copy.deepcopy(value)

    def load_state_dict(
        self, state_dict: dict[str, Any], match: str = "position", strict: bool = True
    ) -> LoadStateDictResult:
        """Load a state from :meth:`state_dict`.

        Parameters
        ----------
        state_dict : dict
            ``{'state': ..., 'param_groups': ...}`` as :meth:`state_dict` returns it
            (or :func:`numopt.interop.torch.from_torch_state_dict` converts it).
        match : {'position', 'name'}
            ``'position'`` (torch's rule): the ``i``-th parameter of the ``g``-th
            saved group gets the state of the ``i``-th parameter of the ``g``-th
            group here; group and parameter counts must agree. ``'name'``: each
            parameter gets the saved state of the parameter with the same name
            (``param_names`` in the saved groups, ``Parameter.name`` or the
            ``(name, param)`` pairs here), whatever the group order; a group takes
            its hyperparameters from the saved group its parameters came from.
        strict : bool
            With ``match='name'``: ``True`` requires the same set of names on both
            sides; ``False`` loads the names found on both sides, leaves the other
            parameters' state as it was and reports the rest in the result.

        Returns
        -------
        LoadStateDictResult
            ``(missing_keys, unexpected_keys)``: names here without saved state,
            and saved names with no parameter here (empty lists unless
            ``match='name', strict=False``).

        Raises
        ------
        ValueError
            The state dict does not fit this optimizer: group or parameter counts,
            unknown, missing or non-array state entries, state shapes, invalid
            hyperparameters, missing or duplicate names. The message names the
            group, parameter and key. Everything is checked before anything
            changes: after an error the optimizer is exactly as it was.

        Notes
        -----
        State arrays are cast to their parameter's dtype (as torch does) and
        copied; hyperparameters come from the loaded groups, with this
        optimizer's values for keys the saved groups lack.
        """
        if match not in ("position", "name"):
            raise ValueError(f"match must be 'position' or 'name', got {match!r}")
        if not isinstance(strict, bool):
            raise TypeError(f"strict must be True or False, got {strict!r}")
        if match == "position" and not strict:
            raise ValueError("strict=False needs match='name' (matching by position always loads every parameter)")
        plan = self._plan_load(self._run_load_pre_hooks(state_dict), match, strict)
        self._apply_load(plan)
        self._run_load_post_hooks()
        return plan.result

    def _run_load_pre_hooks(self, state_dict: Any) -> Any:
        """``state_dict`` (a shallow copy) as the load-state-dict pre-hooks leave it."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        state_dict = dict(state_dict)
        for hook in self._load_state_dict_pre_hooks.values():
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    def _run_load_post_hooks(self) -> None:
        for hook in self._load_state_dict_post_hooks.values():
            hook(self)

    def _plan_load(self, state_dict: Any, match: str, strict: bool) -> _LoadPlan:
        """Validate ``state_dict`` and work out what loading it changes; changes nothing here.

        Raises ``ValueError`` for anything that does not fit (see :meth:`load_state_dict`).
        """
        saved_groups, saved_state = self._check_saved_layout(state_dict, match)
        if match == "position":
            targets, sources, missing, unexpected = self._match_by_position(saved_groups)
        else:
            targets, sources, missing, unexpected = self._match_by_name(saved_groups, strict)
        groups = self._plan_groups(saved_groups, sources, match)
        state = self._plan_state(saved_groups, saved_state, targets, groups)
        # parameters no saved entry maps to (match='name', strict=False) keep their state as it is
        keep = {id(p) for group in self.param_groups for p in group["params"]} - {id(p) for _, _, p in targets.values()}
        return _LoadPlan(groups, state, keep, LoadStateDictResult(missing, unexpected))

    def _check_saved_layout(self, state_dict: Any, match: str) -> tuple[Any, dict]:
        """The saved ``(param_groups, state)``, once their structure is checked (ids, names, group count)."""
        for key in ("state", "param_groups"):
            if key not in state_dict:
                raise ValueError(f"state_dict is missing the key {key!r}")
        saved_groups = state_dict["param_groups"]
        saved_state = state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)) or not isinstance(saved_state, dict):
            raise ValueError("state_dict['param_groups'] must be a list and state_dict['state'] a dict")
        if match == "position" and len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has a different number of parameter groups "
                f"({len(saved_groups)} saved, {len(self.param_groups)} in this optimizer)"
            )
        seen_ids: set[Any] = set()
        for sgi, saved in enumerate(saved_groups):
            if not isinstance(saved, dict) or "params" not in saved:
                raise ValueError(f"param_groups[{sgi}] of the loaded state dict must be a dict with a 'params' entry")
            ids = saved["params"]
            if not isinstance(ids, (list, tuple)):
                raise ValueError(f"param_groups[{sgi}]['params'] of the loaded state dict must be a list of ids")
            for k in ids:
                try:
                    dup = k in seen_ids
                except TypeError:
                    raise ValueError(f"param_groups[{sgi}]['params'] holds an unhashable id {k!r}") from None
                if dup:
                    raise ValueError(f"the loaded state dict lists parameter id {k!r} twice (param_groups[{sgi}])")
                seen_ids.add(k)
            names = saved.get("param_names")
            if names is not None and (
                not isinstance(names, (list, tuple))
                or len(names) != len(ids)
                or not all(isinstance(n, str) for n in names)
            ):
                raise ValueError(
                    f"param_groups[{sgi}]['param_names'] of the loaded state dict must be a list of "
                    f"{len(ids)} strings, one per entry of 'params'"
                )
        return saved_groups, saved_state

    def _plan_groups(self, saved_groups: Any, sources: list[int | None], match: str) -> list[dict[str, Any]]:
        """Each group's new contents: the hyperparameters of its saved group ``sources[gi]``, validated."""
        new_groups = []
        for gi, (group, src) in enumerate(zip(self.param_groups, sources)):
            if src is None:  # no saved group feeds this one: it keeps its hyperparameters
                new_group = copy.deepcopy({k: v for k, v in group.items() if k not in ("params", "param_names")})
            else:
                saved = saved_groups[src]
                new_group = copy.deepcopy({k: v for k, v in saved.items() if k not in ("params", "param_names")})
                if match == "position" and "param_names" in group and "param_names" in saved:
                    new_group["param_names"] = list(saved["param_names"])  # torch: saved names win
            for name, default in self.defaults.items():
                if name not in new_group:
                    new_group[name] = group.get(name, default)
            new_group["params"] = group["params"]
            if "param_names" in group and "param_names" not in new_group:
                new_group["param_names"] = group["param_names"]
            try:
                self._validate_hparams(new_group)
            except (TypeError, ValueError) as e:
                where = f"saved param_groups[{src}]" if src is not None else "its own hyperparameters"
                raise ValueError(f"param_groups[{gi}] (from {where}): {e}") from None
            new_groups.append(new_group)
        return new_groups

    def _plan_state(
        self, saved_groups: Any, saved_state: dict, targets: dict, new_groups: list[dict[str, Any]]
    ) -> dict[int, dict[str, Any]]:
        """``id(param)`` -> its saved state, checked and converted (new arrays in the parameter's dtype)."""
        staged: dict[int, dict[str, Any]] = {}
        unmatched_ids = {k for saved in saved_groups for k in saved["params"]} - targets.keys()
        for k, entry in saved_state.items():
            if k not in targets:
                if k in unmatched_ids:  # an unexpected name (strict=False): its state is not loaded
                    continue
                raise ValueError(f"state_dict['state'] has an entry for parameter {k!r}, which no group lists")
            gi, j, p = targets[k]
            label = self._param_label(gi, j)
            if not isinstance(entry, dict):
                raise ValueError(f"state[{k!r}] ({label}) must be a dict, got {type(entry).__name__}")
            values = {}
            for name, v in entry.items():
                try:
                    values[name] = self._import_state_value(k, p, name, v)
                except (TypeError, ValueError) as e:
                    raise ValueError(f"{e} ({label})") from None
            if values:
                required = self._required_state_keys(new_groups[gi], p)
                absent = [name for name in required if name not in values]
                if absent:
                    raise ValueError(
                        f"state[{k!r}] ({label}) is missing {absent} ({type(self).__name__} with these "
                        f"hyperparameters keeps {list(required)} for every parameter it has stepped)"
                    )
            staged[id(p)] = values
        return staged

    def _apply_load(self, plan: _LoadPlan) -> None:
        """Make the groups and state what ``plan`` says: assignments only, nothing to validate."""
        for group, new_group in zip(self.param_groups, plan.groups):
            group.clear()
            group.update(new_group)
        for group, flats in zip(self.param_groups, self._flats):
            fills = dict(self._state_spec(group))
            scalar_fills = dict(self._scalar_spec(group))
            for flat in flats:
                for i, p in enumerate(flat.params):
                    if id(p) not in plan.keep:
                        self._load_param_state(flat, i, plan.state.get(id(p)), fills, scalar_fills)
                flat.spec = None
                flat.mark_dirty()

    def _load_param_state(
        self,
        flat: FlatBuffer,
        i: int,
        values: dict[str, Any] | None,
        fills: dict[str, float],
        scalar_fills: dict[str, float],
    ) -> None:
        """Reset parameter ``i`` of ``flat`` to fresh state, then set the planned ``values`` (if any)."""
        p = flat.params[i]
        flat.steps[i] = 0
        for name in flat.state:
            flat.reset_state(name, i, fills.get(name, 0.0))
        for name, arr in flat.scalars.items():
            arr[i] = scalar_fills.get(name, 0.0)
        self.state.pop(p, None)
        if not values:
            return
        st = self.state[p]
        for name, v in values.items():
            if name == "step":
                flat.steps[i] = v
                st["step"] = flat.step_view(i)
            elif name in self._scalar_keys:
                flat.ensure_scalar(name, scalar_fills.get(name, 0.0))[i] = v
                st[name] = flat.scalar_view(name, i)
            else:
                flat.ensure_state(name, fills.get(name, 0.0), self._state_layout(flat, name))
                flat.assign_state(name, i, v)
                st[name] = flat.state_view(name, i)
        if "step" not in values:
            flat.steps[i] = 1.0  # state exists, so the parameter has been stepped

    def _param_label(self, gi: int, j: int) -> str:
        group = self.param_groups[gi]
        names = group.get("param_names")
        name = names[j] if names is not None else group["params"][j].name
        return f"param_groups[{gi}] parameter {j}" + (f" {name!r}" if name is not None else "")

    def _required_state_keys(self, group: dict[str, Any], p: Parameter) -> tuple[str, ...]:
        """State keys a parameter of ``group`` must have once stepped (checked by ``load_state_dict``)."""
        keys = ["step"] if self._tracks_step else []
        keys += [name for name, _ in self._scalar_spec(group)]
        for name, _ in self._state_spec(group):
            layout = self._state_layout(p._flat, name) if p._flat is not None else None
            if layout is None or layout[p._index] is not None:
                keys.append(name)
        return tuple(keys)

    def _param_names(self) -> list[list[str | None]]:
        """Each group's parameter names: ``param_names`` if the group has them, else ``Parameter.name``."""
        return [
            list(g["param_names"]) if "param_names" in g else [p.name for p in g["params"]] for g in self.param_groups
        ]

    def _match_by_position(self, saved_groups: Any) -> tuple[dict, list, list, list]:
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has a different number of parameter groups "
                f"({len(saved_groups)} saved, {len(self.param_groups)} in this optimizer)"
            )
        targets: dict[Any, tuple[int, int, Parameter]] = {}
        live_names = self._param_names()
        for gi, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"loaded state dict contains a parameter group that doesn't match the size of "
                    f"optimizer's group: param_groups[{gi}] has {len(saved['params'])} params saved, "
                    f"{len(group['params'])} here"
                )
            for j, (k, p) in enumerate(zip(saved["params"], group["params"])):
                targets[k] = (gi, j, p)
            saved_names = saved.get("param_names")
            if saved_names is not None:
                for j, (a, b) in enumerate(zip(live_names[gi], saved_names)):
                    if a is not None and a != b:
                        warnings.warn(
                            f"param_groups[{gi}] parameter {j} is named {a!r} here but {b!r} in the loaded state "
                            "dict; state is matched by position (pass match='name' to match it by name)",
                            stacklevel=4,  # _match_by_position < _plan_load < load_state_dict < caller
                        )
                        break
        return targets, list(range(len(saved_groups))), [], []

    def _match_by_name(self, saved_groups: Any, strict: bool) -> tuple[dict, list, list, list]:
        live: dict[str, tuple[int, int, Parameter]] = {}
        for gi, (group, names) in enumerate(zip(self.param_groups, self._param_names())):
            for j, (name, p) in enumerate(zip(names, group["params"])):
                if name is None:
                    raise ValueError(
                        f"match='name' needs every parameter to have a name, but param_groups[{gi}] parameter {j} "
                        "has none (create it with numopt.Parameter(..., name=...) or pass (name, param) pairs)"
                    )
                if name in live:
                    g0, j0, _ = live[name]
                    raise ValueError(
                        f"match='name' needs unique names, but {name!r} names param_groups[{g0}] parameter {j0} "
                        f"and param_groups[{gi}] parameter {j}"
                    )
                live[name] = (gi, j, p)
        saved_by_name: dict[str, tuple[int, Any]] = {}
        for sgi, saved in enumerate(saved_groups):
            names = saved.get("param_names")
            if names is None:
                raise ValueError(
                    f"match='name': param_groups[{sgi}] of the loaded state dict records no 'param_names' (it was "
                    "saved from unnamed parameters); load it with match='position'"
                )
            for name, k in zip(names, saved["params"]):
                if name in saved_by_name:
                    raise ValueError(f"the loaded state dict names two parameters {name!r}; cannot match by name")
                saved_by_name[name] = (sgi, k)
        missing = [name for name in live if name not in saved_by_name]
        unexpected = [name for name in saved_by_name if name not in live]
        if strict and (missing or unexpected):

            def show(names: list[str]) -> str:
                return repr(names[:10])[:-1] + (f", ... ({len(names)} in all)]" if len(names) > 10 else "]")

            raise ValueError(
                "the loaded state dict's parameter names differ from this optimizer's: "
                f"missing {show(missing)}, unexpected {show(unexpected)} "
                "(pass strict=False to load the names found on both sides)"
            )
        targets: dict[Any, tuple[int, int, Parameter]] = {}
        contributors: list[list[int]] = [[] for _ in self.param_groups]
        for name, (gi, j, p) in live.items():
            if name in saved_by_name:
                sgi, k = saved_by_name[name]
                targets[k] = (gi, j, p)
                if sgi not in contributors[gi]:
                    contributors[gi].append(sgi)
        sources: list[int | None] = []
        for gi, srcs in enumerate(contributors):
            if not srcs:
                sources.append(None)
                continue
            first = {k: v for k, v in saved_groups[srcs[0]].items() if k not in ("params", "param_names")}
            for other in srcs[1:]:
                hp = {k: v for k, v in saved_groups[other].items() if k not in ("params", "param_names")}
                differ = sorted(k for k in first.keys() | hp.keys() if not _same(first.get(k), hp.get(k)))
                if differ:
                    raise ValueError(
                        f"param_groups[{gi}] gets parameters from saved groups {srcs[0]} and {other}, whose "
                        f"hyperparameters differ ({', '.join(differ)}); regroup the parameters or use match='position'"
                    )
            sources.append(min(srcs))
        return targets, sources, missing, unexpected

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
        bf16 = is_bfloat16(p.dtype)
        if name == COMPENSATION_KEY and bf16 and self.compensation == "kahan":
            pass  # a bfloat16 parameter's compensation (numopt._bf16)
        elif self._state_keys and name not in self._state_keys:
            raise ValueError(
                f"{where}: unexpected state key for {type(self).__name__} (expected one of {list(self._state_keys)})"
            )
        if hasattr(value, "dequantize") and hasattr(value, "state_dtype"):  # compact state (numopt.lowbit)
            return self._import_compact(where, p, name, value)
        if not isinstance(value, (np.ndarray, np.generic)):
            hint = (
                "; a torch.optim state dict converts with numopt.interop.torch.from_torch_state_dict(sd)"
                if is_torch_tensor(value)
                else ""
            )
            raise ValueError(f"{where} must be a NumPy array, got {type(value).__name__} {str(value)[:40]}{hint}")
        arr = np.asarray(value)
        if not (np.issubdtype(arr.dtype, np.floating) or is_bfloat16(arr.dtype)):
            raise ValueError(f"{where} must be a floating-point array, got dtype {arr.dtype}")
        layout = self._state_layout(p._flat, name) if p._flat is not None else None
        expected = p.shape if layout is None else layout[p._index]
        if expected is None:
            raise ValueError(f"{where}: {type(self).__name__} keeps no {name!r} for a parameter of shape {p.shape}")
        if arr.shape != expected:
            raise ValueError(
                f"{where} has shape {arr.shape}, but its parameter has shape {p.shape}"
                + ("" if layout is None else f" (expected {expected})")
            )
        # the state of a bfloat16 parameter is float32 (its compensation bfloat16)
        return arr.astype(np.float32 if bf16 and name != COMPENSATION_KEY else p.dtype, copy=True)

    def _import_compact(self, where: str, p: Parameter, name: str, value: Any) -> Any:
        """A copy of the compact state ``value`` (``numopt.lowbit``), once its arrays fit ``p``."""
        from .lowbit import BLOCK, BFloat16State, Int8State

        if isinstance(value, BFloat16State):
            arrays = [("bits", value.bits, np.uint16, p.shape)]
        elif isinstance(value, Int8State):
            blocks = (-(-p.size // BLOCK),)
            arrays = [("codes", value.codes, np.uint8, p.shape), ("absmax", value.absmax, np.float32, blocks)]
        else:
            raise ValueError(f"{where}: unknown compact state {type(value).__name__}")
        for field, arr, dtype, shape in arrays:
            if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.shape != shape:
                got = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
                raise ValueError(f"{where}.{field} must be a {np.dtype(dtype)} array of shape {shape}, got {got}")
        return value.copy()

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

    # -- pickle / copy.deepcopy ---------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """The optimizer's attributes as plain data a pickle (or ``copy.deepcopy``) can hold.

        ``state[p]`` entries that view ``p``'s flat buffer are left out and viewed again by
        :meth:`__setstate__` (a pickled view would be a copy); the hyperparameter snapshots,
        keyed by ``id(group)``, go by position; the weak references to the arrays packed
        parameters came from are dropped, and weak caches (Adafactor's tables) come back
        empty. The buffers bind their parameters again themselves (``FlatBuffer.__setstate__``),
        before this optimizer is restored. Kernels are class attributes: never part of it.
        """
        state = self.__dict__.copy()
        kept = copy.copy(self.state)  # the same mapping type (a defaultdict(dict))
        views: list[tuple[Parameter, str, str]] = []
        for p, st in self.state.items():
            flat = p._flat if isinstance(p, Parameter) else None
            entry = {}
            for k, v in st.items():
                kind = self._flat_view_kind(flat, k, v)
                if kind is not None:
                    views.append((p, k, kind))
                    v = None
                entry[k] = v
            kept[p] = entry
        state["state"] = kept
        state["_state_views"] = views
        state["_checked_hparams"] = [self._checked_hparams.get(id(g)) for g in self.param_groups]
        state["_source_spans"] = []
        weak = (weakref.WeakKeyDictionary, weakref.WeakValueDictionary, weakref.WeakSet)
        state["_weak_caches"] = {k: type(v) for k, v in self.__dict__.items() if isinstance(v, weak)}
        for k in state["_weak_caches"]:
            state[k] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        views = state.pop("_state_views", ())
        checked = state.pop("_checked_hparams", None) or ()
        weak = state.pop("_weak_caches", {})
        self.__dict__.update(state)
        for k, cache_type in weak.items():
            setattr(self, k, cache_type())
        self._checked_hparams = {id(g): snap for g, snap in zip(self.param_groups, checked) if snap is not None}
        for flats in self._flats:
            for flat in flats:
                if flat.owner is None:  # restored without one (copy.copy shares the live original's)
                    flat._owner = weakref.ref(self)
        for p, k, kind in views:
            flat, i = p._flat, p._index
            if kind == "step":
                self.state[p][k] = flat.step_view(i)
            elif kind == "scalar":
                self.state[p][k] = flat.scalar_view(k, i)
            else:
                self.state[p][k] = flat.state_view(k, i)
        self._reserve_hook_ids()

    @staticmethod
    def _flat_view_kind(flat: FlatBuffer | None, name: str, value: Any) -> str | None:
        """Which of ``flat``'s arrays the entry ``state[p][name]`` views: 'step', 'scalar', 'state', or None."""
        if flat is not None and hasattr(flat.state.get(name), "owns"):  # compact state (numopt.lowbit)
            return "state" if flat.state[name].owns(value) else None
        if flat is None or not isinstance(value, np.ndarray) or value.base is None:
            return None
        if name == "step" and isinstance(flat.steps, np.ndarray) and np.may_share_memory(value, flat.steps):
            return "step"
        for kind, arrays in (("scalar", flat.scalars), ("state", flat.state)):
            arr = arrays.get(name)
            if isinstance(arr, np.ndarray) and np.may_share_memory(value, arr):
                return kind
        return None

    def _reserve_hook_ids(self) -> None:
        """Start new ``RemovableHandle`` ids above those of the restored hooks (no registration overwrites one)."""
        registries = (
            self._step_pre_hooks,
            self._step_post_hooks,
            self._state_dict_pre_hooks,
            self._state_dict_post_hooks,
            self._load_state_dict_pre_hooks,
            self._load_state_dict_post_hooks,
        )
        top = max((k for r in registries for k in r if isinstance(k, int)), default=-1)
        following = next(RemovableHandle._next_id)
        RemovableHandle._next_id = itertools.count(max(following, top + 1))
