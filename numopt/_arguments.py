"""Optimizer constructors declared once: the reference's signature as text, each argument's type from one table.

Every numopt optimizer takes its reference's constructor arguments (``torch.optim.Adam(params,
lr=1e-3, betas=(0.9, 0.999), ...)``), in the reference's order, with its defaults. A class
declares them in one statement, its ``__init__``::

    class Adam(Optimizer):
        __init__ = constructor(
            "lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *, foreach=None, ..."
        )

The text is the signature after ``params`` as Python writes it (``*`` starts the keyword-only
arguments; defaults are expressions evaluated in the class's module). :func:`constructor` turns it
into a real function: ``inspect.signature``, ``help()`` and IPython show the arguments, their
defaults and their types, which come from :data:`ARGUMENT_TYPES`, the one table of the
arguments' types (an argument it does not know is typed by its default, or by the class's
``types=``). The function hands the arguments to ``Optimizer._construct`` (checks, then
the groups). A class whose construction does more overrides ``_construct`` and calls the base's.

Static type checkers see ``__init__`` as ``Callable[..., None]``: they accept any arguments and
check none, since the signature exists only once the class is built.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["ARGUMENT_TYPES", "STORAGE_ARGUMENTS", "constructor"]

#: every optimizer constructor argument's type, by name (as annotations: text)
ARGUMENT_TYPES: dict[str, str] = {
    "params": "Any",
    # rates and decays
    "lr": "float",
    "lr_decay": "float",
    "weight_decay": "float",
    "momentum": "float",
    "dampening": "float",
    "momentum_decay": "float",
    "rho": "float",
    "alpha": "float",
    "lambd": "float",
    "t0": "float",
    "beta2_decay": "float",
    "beta3": "float | None",
    "d": "float",
    "d0": "float",
    "d_coef": "float",
    "growth_rate": "float",
    "r": "float",
    "weight_lr_power": "float",
    "trust_coefficient": "float",
    "max_grad_norm": "float",
    "initial_accumulator_value": "float",
    "t_alpha_beta3": "float | None",
    "clip_lambda": "Callable[[float], float] | None",
    "eps": "float",
    # counts
    "warmup_steps": "int",
    "n_sma_threshold": "int",
    "ns_steps": "int",
    "min_8bit_size": "int",
    # flags
    "amsgrad": "bool",
    "nesterov": "bool",
    "centered": "bool",
    "maximize": "bool",
    "decoupled_weight_decay": "bool",
    "weight_decouple": "bool",
    "fixed_decay": "bool",
    "rectify": "bool",
    "degenerated_to_sgd": "bool",
    "grad_averaging": "bool",
    "adam": "bool",
    "pre_norm": "bool",
    "bias_correction": "bool",
    "safeguard_warmup": "bool",
    # torch's implementation switches
    "foreach": "bool | None",
    "fused": "bool | None",
    "capturable": "bool",
    "differentiable": "bool",
    # choices
    "adjust_lr_fn": "str | None",
    "ns_dtype": "str",
    "state_dtype": "str | None",
    "rounding": "str",
    "compensation": "str | None",
    "seed": "int",
}

#: numopt's own storage options (:mod:`numopt.lowbit` state, bfloat16 parameters), keyword-only after the
#: reference's arguments of every optimizer declared with ``constructor(..., storage=True)``
STORAGE_ARGUMENTS = "state_dtype=None, min_8bit_size=4096, rounding='stochastic', compensation=None, seed=0"

#: arguments whose type depends on the class's default: a tuple of that many floats
_TUPLES = ("betas", "etas", "step_sizes", "ns_coefficients")


def _annotation(name: str, default: Any, owner: str, types: dict[str, str]) -> str:
    """The type of argument ``name``: the class's own (``types``), the table's, a tuple of floats by the
    default's length, or the default's own type (a bool, int, float or str)."""
    if name in types:
        return types[name]
    if name in _TUPLES and isinstance(default, tuple):
        return f"tuple[{', '.join(['float'] * len(default))}]"
    if name == "eps" and isinstance(default, tuple):  # Adafactor's (eps1, eps2)
        return "tuple[float | None, float]"
    if name in ARGUMENT_TYPES:
        return ARGUMENT_TYPES[name]
    if isinstance(default, (bool, int, float, str)):
        return type(default).__name__
    raise TypeError(
        f"{owner}: constructor argument {name!r} (default {default!r}) needs a type: constructor(..., "
        f"types={{{name!r}: ...}}) or numopt._arguments.ARGUMENT_TYPES"
    )


def constructor(
    arguments: str,
    *,
    storage: bool = False,
    types: dict[str, str] | None = None,
    convert: dict[str, Callable[[Any], Any]] | None = None,
    fixed: dict[str, Any] | None = None,
) -> Callable[..., None]:
    """An optimizer's ``__init__(self, params, <arguments>)``, called in the class body.

    Parameters
    ----------
    arguments : str
        The arguments after ``params``, as a Python signature writes them (``"lr=1e-3, *, maximize=False"``);
        every one has a default, evaluated in the calling module.
    storage : bool, default False
        Append numopt's storage options, :data:`STORAGE_ARGUMENTS` (compact state, bfloat16 parameters),
        as keyword-only arguments: for an optimizer whose rule's generated loops take them.
    types : dict, optional
        Argument name -> its type (text), for an argument that neither :data:`ARGUMENT_TYPES` nor its
        default types (a None default).
    convert : dict, optional
        Argument name -> a function applied to its value before the groups are built (``betas=tuple``).
    fixed : dict, optional
        Hyperparameters every group gets that are not arguments (AdamW's ``decoupled_weight_decay=True``).

    Returns
    -------
    callable
        ``__init__``: it passes ``{name: value}`` of every argument (then ``fixed``) to
        ``self._construct(params, hparams, **convert)``.
    """
    if storage:
        arguments = f"{arguments}{', ' if '*' in arguments else ', *, '}{STORAGE_ARGUMENTS}"
    caller = sys._getframe(1)
    module, owner = caller.f_globals["__name__"], caller.f_locals.get("__qualname__", "<class>")
    try:
        tree = ast.parse(f"def __init__(self, params, {arguments}): pass")
    except SyntaxError as e:
        raise TypeError(f"{owner}: the constructor's arguments do not parse: {e.msg} in {arguments!r}") from None
    spec = tree.body[0].args
    if spec.vararg or spec.kwarg or spec.posonlyargs:
        raise TypeError(f"{owner}: the constructor's arguments take no *args, **kwargs or '/'")
    positional, keyword = [a.arg for a in spec.args[2:]], [a.arg for a in spec.kwonlyargs]
    if len(spec.defaults) != len(positional) or None in spec.kw_defaults:
        raise TypeError(f"{owner}: every constructor argument after params needs a default")

    def value(node: ast.expr) -> Any:
        return eval(compile(ast.Expression(node), f"<{owner} arguments>", "eval"), caller.f_globals)

    defaults = [value(n) for n in spec.defaults]
    kwdefaults = {k: value(n) for k, n in zip(keyword, spec.kw_defaults)}
    names = [*positional, *keyword]
    star = ", *, " if keyword else ""
    source = (
        f"def __init__(self, params, {', '.join(positional)}{star}{', '.join(keyword)}):\n"
        f"    self._construct(params, {{{', '.join(f'{n!r}: {n}' for n in names)}, **_fixed}}, **_convert)\n"
    )
    namespace: dict[str, Any] = {"_fixed": dict(fixed or {}), "_convert": dict(convert or {})}
    exec(compile(source, f"<{owner}.__init__>", "exec"), namespace)
    init = namespace["__init__"]
    init.__defaults__ = tuple(defaults) or None
    init.__kwdefaults__ = kwdefaults or None
    init.__module__, init.__qualname__ = module, f"{owner}.__init__"
    every = {**dict(zip(positional, defaults)), **kwdefaults}
    init.__annotations__ = {
        "params": ARGUMENT_TYPES["params"],
        **{n: _annotation(n, every[n], owner, types or {}) for n in names},
        "return": "None",
    }
    init.__doc__ = f"Build the optimizer (see :class:`{owner}`): its reference's arguments and defaults."
    return init
