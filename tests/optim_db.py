"""The table of optimizer configurations that drives every optimizer test.

In the spirit of torch's ``OptimizerInfo``: one row per configuration. A new
optimizer or option is one more row here, and gets parity with its reference,
state-dict round trips and the error/property checks that read this table.

Each row: the class name (in ``numopt``), the constructor kwargs, a description,
the overrides given to the second parameter group, the dtype, and the reference
the row is checked against.

The reference seam
------------------
A row's ``reference`` is a factory ``reference(params, **kwargs)`` that builds a
torch-optimizer-like object over torch tensors (``params`` as torch takes them:
tensors or group dicts; ``kwargs`` as numopt takes them). It must have torch's
``step(closure=None)``, ``param_groups``, ``state`` (keyed by tensor, with the
state entries numopt keeps) and ``state_dict()``. ``reference_name`` names it in
messages. The default is the implementation the numopt class declares it follows
(its ``reference`` attribute), else the ``torch.optim`` class of the row's name,
imported on first use (importing this table does not import torch)::

    OptimCase("Adam", {...}, "desc")                                    # torch.optim.Adam
    OptimCase("Lion", {...}, "desc")                # numopt.Lion.reference: pytorch_optimizer.Lion
    OptimCase("Y", {...}, "desc", reference=in_tests("Y"))              # tests/references/
    OptimCase("X", {...}, "desc", reference=make_x, reference_name="X by hand")  # any factory

A string is an import path (``module.attr``), resolved lazily. ``in_tests(name)``
names a small torch-ops class in ``tests/references/``. Tests that are about
torch itself (converting torch state dicts, binding torch modules) read
``torch_rows()``, the rows whose reference is torch's class of the same name.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Reference:
    """A reference optimizer class named by its import path (``"torch.optim.Adam"``), imported on first use.

    Calling it builds the optimizer; NumPy scalars among the keyword arguments go on as Python floats
    (a row's ``lr=np.float32(1e-3)`` stands in for torch's "Tensor lr").
    """

    path: str

    def resolve(self) -> type:
        module, _, attr = self.path.rpartition(".")
        try:
            return getattr(importlib.import_module(module), attr)
        except AttributeError:
            hint = ": name its rows' reference (OptimCase(..., reference=...))" if module == "torch.optim" else ""
            raise AttributeError(f"{module} has no {attr}{hint}") from None

    def __call__(self, params: Any, **kwargs: Any) -> Any:
        return self.resolve()(params, **{k: to_reference_value(v) for k, v in kwargs.items()})


def to_reference_value(v: Any) -> Any:
    """A NumPy scalar as the Python scalar a torch-style reference takes; anything else as is."""
    return v.item() if isinstance(v, np.generic) else v


def torch_optim(name: str) -> Reference:
    """``torch.optim.<name>``, imported on first use: the reference of a row that names none."""
    return Reference(f"torch.optim.{name}")


def class_reference(name: str) -> Reference:
    """The reference numopt's class ``name`` declares (its ``reference`` attribute), else ``torch.optim.<name>``."""
    import numopt

    path = getattr(getattr(numopt, name, None), "reference", None)
    return Reference(path) if path else torch_optim(name)


def in_tests(name: str) -> Reference:
    """``<name>`` of ``tests/references/``: a small torch-ops reference for an optimizer torch lacks."""
    return Reference(f"{__package__}.references.{name}")


#: parameter shapes with two runs above the serial-loop threshold (numopt._jit.CHUNK = 16384 elements)
LARGE_SHAPES: tuple[tuple[int, ...], ...] = ((130, 130), (7,), (2, 3, 4), (), (20_000,), (0, 3), (6,))


@dataclass(frozen=True)
class OptimCase:
    name: str
    kwargs: dict[str, Any]
    desc: str
    group2: dict[str, Any] = field(default_factory=dict)
    dtype: type = np.float32
    steps: int = 60
    #: builds the reference optimizer: a factory, or an import path; None: the class's ``reference``
    #: (an optimizer torch lacks names the implementation it follows), else torch.optim.<name>
    reference: Callable[..., Any] | str | None = field(default=None, kw_only=True)
    #: the parameters' shapes (None: ``reference.SHAPES``); ``LARGE_SHAPES`` puts runs above the
    #: serial-loop threshold, so the parallel loop is the one compared
    shapes: tuple[tuple[int, ...], ...] | None = field(default=None, kw_only=True)
    #: ``"elementwise"``: every element within ``tolerances``; ``"displacement"``: for rules where a
    #: sign or a threshold can flip on a last-bit difference (Lion, ADOPT's clip), the displacement
    #: ``p_t - p_0`` of each parameter within 1e-4 Frobenius-relative (state alike, its change from 0)
    compare: str = field(default="elementwise", kw_only=True)
    #: the reference in messages (default: its import path or qualified name)
    reference_name: str = field(default="", kw_only=True, compare=False)
    #: a method ``make_pair`` calls on both optimizers right after building them (None: none); the
    #: Schedule-Free optimizers start in eval mode and step only after ``"train"``
    prepare: str | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        ref = self.reference
        if ref is None:
            ref = class_reference(self.name)
        elif isinstance(ref, str):
            ref = Reference(ref)
        object.__setattr__(self, "reference", ref)
        if not self.reference_name:
            object.__setattr__(self, "reference_name", reference_name(ref))

    @property
    def id(self) -> str:
        return f"{self.name}-{self.desc}-{np.dtype(self.dtype).name}".replace(" ", "_")

    @property
    def tolerances(self) -> dict[str, float]:
        if np.dtype(self.dtype) == np.float64:
            return {"rtol": 1e-12, "atol": 1e-14}
        return {"rtol": 1e-5, "atol": 1e-6}

    @property
    def reference_is_torch(self) -> bool:
        """Whether the reference is ``torch.optim``'s class of the same name (torch-interop tests need it)."""
        return isinstance(self.reference, Reference) and self.reference == torch_optim(self.name)


def prepared(case: OptimCase | str, opt: Any) -> Any:
    """``opt`` (numopt's or the reference's) after the call the row's ``prepare`` names, if any.

    ``case`` may be a class name, for tests that build an optimizer outside the rows: the call its
    OPTIM_DB rows name then (the Schedule-Free optimizers' ``train()``).
    """
    if isinstance(case, str):
        calls = {c.prepare for c in OPTIM_DB if c.name == case}
        assert len(calls) <= 1, f"the OPTIM_DB rows of {case} name different prepare calls: {calls}"
        call = calls.pop() if calls else None
    else:
        call = case.prepare
    if call is not None:
        getattr(opt, call)()
    return opt


def reference_name(ref: Callable[..., Any]) -> str:
    if isinstance(ref, Reference):
        return ref.path
    return f"{getattr(ref, '__module__', '?')}.{getattr(ref, '__qualname__', repr(ref))}"


def reference_signature(ref: Callable[..., Any]) -> inspect.Signature:
    """The constructor signature of a reference (of the class a Reference names)."""
    return inspect.signature(ref.resolve() if isinstance(ref, Reference) else ref)


def _sgd_rows() -> list[OptimCase]:
    # torch's optim_inputs_func_sgd, plus the combinations the issue names.
    rows = [
        ({}, "default"),
        ({"lr": 1e-2}, "non-default lr"),
        ({"lr": np.float32(1e-3)}, "numpy scalar lr"),
        ({"lr": 0.05, "weight_decay": 0.5}, "weight_decay"),
        ({"lr": 0.05, "momentum": 0.9}, "momentum"),
        ({"lr": 0.05, "weight_decay": 0.1, "maximize": True}, "maximize"),
        ({"lr": 0.05, "momentum": 0.9, "dampening": 0.5}, "dampening"),
        ({"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1}, "weight_decay with momentum"),
        ({"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}, "nesterov"),
        ({"lr": 0.05, "momentum": 0.9, "nesterov": True, "dampening": 0.0}, "nesterov dampening 0"),
        (
            {"lr": 0.05, "momentum": 0.5, "dampening": 0.3, "maximize": True, "weight_decay": 0.2},
            "momentum dampening maximize wd",
        ),
        ({"lr": 0.05, "momentum": 0.9, "nesterov": True, "maximize": True}, "nesterov maximize"),
    ]
    out = [OptimCase("SGD", kw, desc, group2={"lr": 0.01, "momentum": 0.5}) for kw, desc in rows]
    out.append(
        OptimCase(
            "SGD",
            {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1},
            "momentum float64",
            group2={"lr": 0.02},
            dtype=np.float64,
        )
    )
    out.append(
        OptimCase(
            "SGD",
            {"lr": 0.05, "momentum": 0.9, "nesterov": True},
            "nesterov float64",
            group2={"weight_decay": 0.3},
            dtype=np.float64,
        )
    )
    out.append(OptimCase("SGD", {"lr": 0.05}, "group2 turns momentum on", group2={"momentum": 0.9, "dampening": 0.1}))
    return out


def _rms_family_rows() -> list[OptimCase]:
    # torch's optim_inputs_func_adagrad / _adadelta / _rmsprop (CPU configs; a NumPy scalar stands in
    # for "Tensor lr"), every option once more with per-group overrides, and float64 rows.
    adagrad = [
        ({}, "default"),
        ({"weight_decay": 0.1}, "nonzero weight_decay"),
        ({"weight_decay": 0.1, "maximize": True}, "maximize"),
        ({"lr": 0.1}, "non-default lr"),
        ({"initial_accumulator_value": 0.1, "weight_decay": 0.1}, "initial_accumulator_value"),
        ({"lr": 0.1, "lr_decay": 0.5, "weight_decay": 0.1}, "lr_decay"),
        ({"lr": np.float32(1e-3)}, "numpy scalar lr"),
        ({"lr": 0.1, "eps": 1e-3, "lr_decay": 0.01, "initial_accumulator_value": 0.5, "maximize": True}, "all"),
    ]
    adadelta = [
        ({}, "default"),
        ({"lr": 0.01}, "non-default lr"),
        ({"weight_decay": 0.1}, "nonzero weight_decay"),
        ({"maximize": True}, "maximize"),
        ({"weight_decay": 0.1, "maximize": True}, "maximize, weight_decay"),
        ({"rho": 0.95, "weight_decay": 0.9}, "rho"),
        ({"lr": np.float32(0.5), "rho": 0.5, "eps": 1e-4}, "numpy scalar lr, rho, eps"),
    ]
    rmsprop = [
        ({}, "default"),
        ({"lr": 1e-3}, "non-default lr"),
        ({"weight_decay": 0.1}, "nonzero weight_decay"),
        ({"maximize": True}, "maximize"),
        ({"weight_decay": 0.1, "centered": True}, "centered"),
        ({"maximize": True, "weight_decay": 0.1}, "maximize, weight_decay"),
        ({"weight_decay": 0.1, "centered": True, "momentum": 0.1}, "momentum"),
        (
            {"weight_decay": 0.1, "centered": True, "momentum": 0.1, "maximize": True},
            "maximize, centered, weight_decay, w/ momentum",
        ),
        ({"momentum": 0.5, "eps": 1e-3}, "momentum not centered"),
        ({"alpha": 0.3, "centered": True, "eps": 1e-2}, "small alpha centered"),
        ({"lr": np.float32(1e-3), "alpha": 0.9}, "numpy scalar lr"),
    ]
    g_adagrad = {"lr": 0.05, "lr_decay": 0.1, "weight_decay": 0.2, "eps": 1e-6, "initial_accumulator_value": 2.0}
    g_adadelta = {"lr": 0.5, "rho": 0.8, "eps": 1e-5, "weight_decay": 0.05}
    g_rmsprop = {"lr": 0.02, "alpha": 0.9, "momentum": 0.5, "centered": True}
    out = [OptimCase("Adagrad", kw, desc, group2=g_adagrad, steps=100) for kw, desc in adagrad]
    out += [OptimCase("Adadelta", kw, desc, group2=g_adadelta, steps=100) for kw, desc in adadelta]
    out += [OptimCase("RMSprop", kw, desc, group2=g_rmsprop, steps=100) for kw, desc in rmsprop]
    out += [
        OptimCase("Adagrad", {"maximize": True}, "group2 maximize", group2={"maximize": True}, steps=100),
        OptimCase("Adadelta", {"rho": 0.0}, "rho 0", group2={"rho": 1.0}, steps=100),
        OptimCase("RMSprop", {"lr": 1e-3}, "group2 momentum only", group2={"momentum": 0.9}, steps=100),
        OptimCase(
            "RMSprop",
            {"momentum": 0.5},
            "group2 centered maximize",
            group2={"centered": True, "maximize": True},
            steps=100,
        ),
    ]
    f64 = [
        ("Adagrad", {"lr": 0.1, "lr_decay": 0.5, "weight_decay": 0.1}, "lr_decay", g_adagrad),
        ("Adagrad", {"initial_accumulator_value": 0.1, "maximize": True}, "iav maximize", {"lr": 0.3, "eps": 0.0}),
        ("Adadelta", {"rho": 0.95, "weight_decay": 0.9}, "rho", g_adadelta),
        ("Adadelta", {"lr": 0.01, "maximize": True}, "maximize", {"lr": 2.0, "weight_decay": 0.3}),
        ("RMSprop", {"weight_decay": 0.1, "centered": True, "momentum": 0.1, "maximize": True}, "all", g_rmsprop),
        ("RMSprop", {"alpha": 0.3, "centered": True, "eps": 1e-2}, "small alpha centered", {"momentum": 0.9}),
        ("RMSprop", {"lr": 1e-3, "weight_decay": 0.2}, "plain", {"alpha": 0.5, "maximize": True}),
        ("RMSprop", {"momentum": 0.9}, "momentum not centered", {"momentum": 0.0, "alpha": 0.5}),
    ]
    out += [
        OptimCase(name, kw, f"{desc} float64", group2=g2, dtype=np.float64, steps=100) for name, kw, desc, g2 in f64
    ]
    return out


def _adam_family_rows() -> list[OptimCase]:
    # torch's optim_inputs_func_adam / _adamw / _adamax / _nadam / _radam (CPU configs; a NumPy
    # scalar stands in for "Tensor lr"), the options they leave out (decoupled_weight_decay on Adam,
    # beta1 < 0.5 for lerp's other branch, RAdam never rectified), per-group overrides, float64 rows.
    f64 = np.float64
    adam = [
        ({}, "default", {"lr": 0.01}),
        ({"lr": 0.01}, "non-default lr", {"betas": (0.8, 0.99)}),
        ({"lr": np.float32(0.01)}, "numpy scalar lr", {}),
        ({"weight_decay": 0.1}, "nonzero weight_decay", {"weight_decay": 0.3, "lr": 0.02}),
        ({"weight_decay": 0.1, "maximize": True}, "maximize", {"maximize": False}),
        ({"weight_decay": 0.1, "amsgrad": True}, "amsgrad", {"amsgrad": False, "lr": 0.05}),
        ({"lr": 0.05, "amsgrad": True, "maximize": True}, "amsgrad maximize", {"eps": 1e-3}),
        ({"lr": 0.05, "betas": (0.3, 0.9), "eps": 1e-6}, "small beta1", {"betas": (0.0, 0.5)}),
        ({"lr": 0.02, "weight_decay": 0.5, "decoupled_weight_decay": True}, "decoupled_weight_decay", {}),
        (
            {"lr": 0.02},
            "group2 amsgrad decoupled",
            {"amsgrad": True, "weight_decay": 0.2, "decoupled_weight_decay": True},
        ),
    ]
    rows = [OptimCase("Adam", kw, desc, group2=g2, steps=100) for kw, desc, g2 in adam]
    rows += [
        OptimCase("Adam", {"lr": 0.02, "weight_decay": 0.1, "amsgrad": True}, "amsgrad", {"lr": 0.05}, f64, 100),
        OptimCase(
            "Adam",
            {"lr": 0.02, "maximize": True},
            "maximize decoupled",
            {"weight_decay": 0.2, "decoupled_weight_decay": True},
            f64,
            100,
        ),
    ]
    adamw = [
        ({}, "default", {"lr": 0.01}),
        ({"lr": 0.01}, "non-default lr", {"betas": (0.8, 0.99)}),
        ({"weight_decay": 0.1}, "nonzero weight_decay", {"weight_decay": 0.0}),
        ({"weight_decay": 0.1, "maximize": True}, "maximize", {"lr": 0.03}),
        ({"weight_decay": 0.1, "amsgrad": True}, "amsgrad", {"amsgrad": False}),
        ({"lr": 0.05, "weight_decay": 0.5, "betas": (0.2, 0.9)}, "small beta1", {"amsgrad": True, "lr": 0.02}),
    ]
    rows += [OptimCase("AdamW", kw, desc, group2=g2, steps=100) for kw, desc, g2 in adamw]
    rows.append(
        OptimCase("AdamW", {"lr": 0.02, "weight_decay": 0.3, "amsgrad": True}, "amsgrad", {"maximize": True}, f64, 100)
    )
    adamax = [
        ({}, "default", {"lr": 0.01}),
        ({"lr": 0.1}, "non-default lr", {"betas": (0.8, 0.99)}),
        ({"weight_decay": 0.1}, "nonzero weight_decay", {"weight_decay": 0.0, "lr": 0.02}),
        ({"maximize": True}, "maximize", {"maximize": False}),
        ({"weight_decay": 0.1, "maximize": True}, "maximize weight_decay", {"eps": 1e-3}),
        ({"lr": 0.05, "betas": (0.3, 0.5)}, "small betas", {"betas": (0.0, 0.0)}),
    ]
    rows += [OptimCase("Adamax", kw, desc, group2=g2, steps=100) for kw, desc, g2 in adamax]
    rows.append(OptimCase("Adamax", {"lr": 0.05, "weight_decay": 0.1}, "weight_decay", {"maximize": True}, f64, 100))
    nadam = [
        ({}, "default", {"lr": 0.01}),
        ({"lr": 1e-3}, "non-default lr", {"betas": (0.8, 0.99)}),
        ({"momentum_decay": 6e-3}, "non-zero momentum_decay", {"momentum_decay": 0.1}),
        ({"weight_decay": 0.1}, "weight_decay", {"weight_decay": 0.0}),
        ({"weight_decay": 0.1, "momentum_decay": 6e-3}, "weight_decay momentum_decay", {"lr": 0.02}),
        (
            {"weight_decay": 0.1, "momentum_decay": 6e-3, "decoupled_weight_decay": True},
            "decoupled_weight_decay",
            {"decoupled_weight_decay": False},
        ),
        ({"weight_decay": 0.1, "maximize": True}, "maximize", {"maximize": False}),
        ({"lr": 0.05, "betas": (0.3, 0.9)}, "small beta1", {"momentum_decay": 0.0}),
    ]
    rows += [OptimCase("NAdam", kw, desc, group2=g2, steps=100) for kw, desc, g2 in nadam]
    rows += [
        OptimCase("NAdam", {"lr": 0.02, "weight_decay": 0.1}, "weight_decay", {"momentum_decay": 6e-3}, f64, 100),
        OptimCase(
            "NAdam",
            {"lr": 0.02, "maximize": True},
            "maximize decoupled",
            {"weight_decay": 0.2, "decoupled_weight_decay": True},
            f64,
            100,
        ),
    ]
    radam = [
        ({}, "default", {"lr": 0.01}),
        ({"lr": 2e-3}, "non-default lr", {"betas": (0.8, 0.99)}),
        ({"eps": 1e-6}, "non-default eps", {"eps": 1e-3}),
        ({"weight_decay": 0.1}, "nonzero weight_decay", {"weight_decay": 0.0}),
        ({"weight_decay": 0.1, "decoupled_weight_decay": True}, "decoupled_weight_decay", {"lr": 0.02}),
        ({"weight_decay": 0.1, "maximize": True}, "maximize", {"maximize": False}),
        ({"lr": 0.02, "betas": (0.3, 0.5)}, "never rectified", {"betas": (0.9, 0.9)}),
    ]
    rows += [OptimCase("RAdam", kw, desc, group2=g2, steps=100) for kw, desc, g2 in radam]
    rows += [
        OptimCase("RAdam", {"lr": 0.02, "weight_decay": 0.1}, "weight_decay", {"betas": (0.8, 0.9)}, f64, 100),
        OptimCase(
            "RAdam",
            {"lr": 0.02, "maximize": True},
            "maximize decoupled",
            {"weight_decay": 0.2, "decoupled_weight_decay": True},
            f64,
            100,
        ),
    ]
    return rows


def _other_rows() -> list[OptimCase]:
    # torch's optim_inputs_func_rprop / _asgd (CPU configs), per-group overrides and float64 rows.
    # Adafactor (torch divides by zero on empty parameters) and SparseAdam (sparse gradients only)
    # have dedicated parity tests in tests/test_other_optimizers.py.
    f64 = np.float64
    rprop = [
        ({}, "default", {"lr": 0.05}),
        ({"lr": 2e-4}, "non-default lr", {"etas": (0.3, 1.1)}),
        ({"etas": (0.5, 1.5)}, "non-default etas", {"step_sizes": (1e-3, 0.02)}),
        ({"step_sizes": (2e-6, 100)}, "non-default step_sizes", {"maximize": True}),
        ({"maximize": True}, "maximize", {"lr": 0.1, "etas": (0.9, 2.0)}),
        ({"lr": np.float32(0.03), "step_sizes": (1e-2, 0.05)}, "numpy scalar lr, tight clamp", {}),
    ]
    rows = [OptimCase("Rprop", kw, desc, group2=g2, steps=100) for kw, desc, g2 in rprop]
    rows += [
        OptimCase("Rprop", {"etas": (0.5, 1.5)}, "etas", {"step_sizes": (1e-4, 0.5)}, f64, 100),
        OptimCase("Rprop", {"lr": 0.1, "maximize": True}, "maximize", {"etas": (0.2, 1.3)}, f64, 100),
    ]
    asgd = [
        ({}, "default", {"lr": 0.05}),
        ({"lambd": 0.1}, "non-default lambd", {"alpha": 0.5}),
        ({"lr": 0.02}, "non-default lr", {"t0": 3.0}),
        ({"t0": 100}, "t0", {"lambd": 0.05, "t0": 10}),
        ({"maximize": True}, "maximize", {"weight_decay": 0.2}),
        ({"weight_decay": 0.1}, "nonzero weight_decay", {"maximize": True}),
        ({"weight_decay": 0.1, "maximize": True}, "maximize, nonzero weight_decay", {"lr": 0.1}),
        ({"lr": 0.05, "lambd": 0.01, "alpha": 1.0, "t0": 5.0}, "averaging from step 6", {"t0": 0.0}),
        ({"lr": np.float32(0.03), "t0": 20.5, "weight_decay": 0.05}, "numpy scalar lr, fractional t0", {}),
    ]
    rows += [OptimCase("ASGD", kw, desc, group2=g2, steps=100) for kw, desc, g2 in asgd]
    rows += [
        OptimCase("ASGD", {"lr": 0.05, "lambd": 0.01, "t0": 5.0}, "averaging", {"weight_decay": 0.1}, f64, 100),
        OptimCase("ASGD", {"lr": 0.02, "maximize": True, "t0": 30}, "maximize", {"lambd": 0.5, "alpha": 0.3}, f64, 100),
    ]
    return rows


def _beyond_torch_rows() -> list[OptimCase]:
    # Optimizers torch.optim declines, each against the pinned third-party class it follows.
    # Each class names its reference (numopt.Lion.reference: pytorch_optimizer.Lion, pytorch-optimizer
    # 4.1.0, pinned in the test extras); the rows take it from there.
    rows = [
        ({}, "default"),
        ({"lr": 3e-3, "betas": (0.8, 0.95)}, "non-default lr and betas"),
        ({"lr": 1e-3, "weight_decay": 0.5}, "decoupled weight_decay"),
        ({"lr": 1e-3, "weight_decay": 0.5, "fixed_decay": True}, "fixed_decay"),
        ({"lr": 1e-3, "weight_decay": 0.1, "weight_decouple": False}, "coupled weight_decay"),
        ({"lr": 1e-3, "maximize": True, "weight_decay": 0.1}, "maximize"),
    ]
    out = [OptimCase("Lion", kw, desc, group2={"lr": 5e-4}) for kw, desc in rows]
    out.append(OptimCase("Lion", {"lr": 1e-3, "weight_decay": 0.1}, "float64", dtype=np.float64))
    out.append(OptimCase("Lion", {"lr": 1e-3, "weight_decay": 0.1}, "large", shapes=LARGE_SHAPES))
    out += _adopt_rows() + _ademamix_rows() + _adan_rows() + _schedulefree_rows() + _prodigy_rows()
    out += _lamb_lars_rows()
    # issue 16: every row is compared with its reference at each of 100 steps
    return [replace(case, steps=100) for case in out]


def _tight_clip(step: int) -> float:
    """An ADOPT clip schedule that clips most normalized gradients (module level: optimizers with it pickle)."""
    return 0.3


def _adopt_rows() -> list[OptimCase]:
    # numopt.ADOPT.reference: pytorch_optimizer.ADOPT. Its first step only records v; later steps clip
    # g / max(sqrt(v), eps) to [-step**0.25, step**0.25] (a continuous clamp: elementwise comparison holds).
    rows = [
        ({}, "default"),
        ({"lr": 3e-3, "betas": (0.8, 0.95), "eps": 1e-3}, "non-default lr, betas and eps"),
        ({"lr": 1e-2, "weight_decay": 0.1}, "coupled weight_decay"),
        ({"lr": 1e-2, "weight_decay": 0.5, "weight_decouple": True}, "decoupled weight_decay"),
        ({"lr": 1e-2, "weight_decay": 0.05, "weight_decouple": True, "fixed_decay": True}, "fixed_decay"),
        ({"lr": 1e-2, "maximize": True, "weight_decay": 0.1}, "maximize"),
        ({"lr": 1e-2, "clip_lambda": None}, "no clipping"),
        ({"lr": 1e-2, "clip_lambda": _tight_clip}, "tight clip"),
    ]
    out = [OptimCase("ADOPT", kw, desc, group2={"lr": 5e-3}) for kw, desc in rows]
    out.append(OptimCase("ADOPT", {"lr": 1e-2, "weight_decay": 0.1}, "float64", dtype=np.float64))
    out.append(OptimCase("ADOPT", {"lr": 1e-2, "weight_decay": 0.1}, "large", shapes=LARGE_SHAPES))
    return out


def _ademamix_rows() -> list[OptimCase]:
    # numopt.AdEMAMix.reference: pytorch_optimizer.AdEMAMix
    rows = [
        ({}, "default"),
        ({"lr": 3e-3, "betas": (0.8, 0.95, 0.99), "alpha": 2.0, "eps": 1e-6}, "non-default lr, betas, alpha, eps"),
        ({"lr": 1e-2, "t_alpha_beta3": 20.0}, "alpha and beta3 warm-up"),
        ({"lr": 1e-2, "t_alpha_beta3": 100, "betas": (0.9, 0.999, 1.0)}, "warm-up towards beta3 = 1"),
        ({"lr": 1e-2, "weight_decay": 0.1}, "coupled weight_decay"),
        ({"lr": 1e-2, "weight_decay": 0.5, "weight_decouple": True}, "decoupled weight_decay"),
        ({"lr": 1e-2, "weight_decay": 0.05, "weight_decouple": True, "fixed_decay": True}, "fixed_decay"),
        ({"lr": 1e-2, "maximize": True, "weight_decay": 0.1}, "maximize"),
    ]
    out = [OptimCase("AdEMAMix", kw, desc, group2={"lr": 5e-3, "alpha": 1.0}) for kw, desc in rows]
    kw = {"lr": 1e-2, "weight_decay": 0.1, "t_alpha_beta3": 30.0}
    out.append(OptimCase("AdEMAMix", kw, "float64", dtype=np.float64))
    out.append(OptimCase("AdEMAMix", kw, "large", shapes=LARGE_SHAPES))
    return out


def _adan_rows() -> list[OptimCase]:
    # numopt.Adan.reference: pytorch_optimizer.Adan
    out: list[OptimCase] = []
    # pytorch_optimizer.Adan cannot clip with a 0-d parameter (it multiplies a 0-d gradient in place by a
    # 1-element norm tensor): its clipping rows take the usual shapes with a (1,) parameter in place of ().
    clip_shapes = ((5, 3), (7,), (2, 3, 4), (1,), (4, 1), (0, 3), (6,))
    large_clip_shapes = tuple((1,) if s == () else s for s in LARGE_SHAPES)
    adan = [
        ({}, "default", None),
        ({"lr": 3e-3, "betas": (0.9, 0.8, 0.95), "eps": 1e-6}, "non-default lr betas eps", None),
        ({"lr": 1e-2, "weight_decay": 0.5}, "proximal weight_decay", None),
        ({"lr": 1e-2, "weight_decay": 0.5, "weight_decouple": True}, "decoupled weight_decay", None),
        ({"lr": 1e-2, "maximize": True, "weight_decay": 0.1}, "maximize", None),
        ({"lr": 1e-2, "max_grad_norm": 1.0}, "max_grad_norm clipping", clip_shapes),
        ({"lr": 1e-2, "max_grad_norm": 1e3}, "max_grad_norm above the norm", clip_shapes),
        (
            {"lr": 1e-2, "maximize": True, "max_grad_norm": 0.5, "weight_decouple": True},
            "maximize clipped",
            clip_shapes,
        ),
    ]
    g2 = {"lr": 5e-3, "betas": (0.95, 0.9, 0.999), "weight_decay": 0.05}
    out += [OptimCase("Adan", kw, desc, group2=g2, shapes=shapes) for kw, desc, shapes in adan]
    out.append(OptimCase("Adan", {"lr": 1e-2, "weight_decay": 0.1}, "float64", dtype=np.float64))
    # (float64 with clipping is in tests/test_adan.py: the reference forms its clipping factor in float32)
    out.append(OptimCase("Adan", {"lr": 1e-2, "weight_decay": 0.1}, "large", shapes=LARGE_SHAPES))
    large = {"lr": 1e-2, "weight_decay": 0.1, "weight_decouple": True, "max_grad_norm": 5.0}
    out.append(OptimCase("Adan", large, "large clipped", shapes=large_clip_shapes))
    return out


def _schedulefree_rows() -> list[OptimCase]:
    # schedulefree 1.4.1's SGDScheduleFree / AdamWScheduleFree (numopt's classes name them): both start
    # in eval mode, so every row puts both sides in train mode first (tests/test_schedulefree.py
    # switches between the modes).
    sgd = [
        ({}, "default"),
        ({"lr": 0.1, "momentum": 0.8}, "non-default lr and momentum"),
        ({"lr": 0.1, "weight_decay": 0.5}, "weight_decay"),
        ({"lr": 0.1, "warmup_steps": 10}, "warmup_steps"),
        ({"lr": 0.1, "r": 1.0, "weight_lr_power": 0.0}, "r and weight_lr_power"),
        ({"lr": 0.1, "warmup_steps": 7, "r": 0.5, "weight_lr_power": 1.5, "weight_decay": 0.1}, "every option"),
    ]
    adamw = [
        ({}, "default"),
        ({"lr": 1e-2, "betas": (0.8, 0.95), "eps": 1e-6}, "non-default lr betas eps"),
        ({"lr": 1e-2, "weight_decay": 0.5}, "weight_decay"),
        ({"lr": 1e-2, "warmup_steps": 10}, "warmup_steps"),
        ({"lr": 1e-2, "r": 1.0, "weight_lr_power": 0.0}, "r and weight_lr_power"),
        ({"lr": 1e-2, "warmup_steps": 7, "r": 0.5, "weight_lr_power": 1.5, "weight_decay": 0.1}, "every option"),
    ]
    train = {"prepare": "train"}
    f64 = np.float64
    out = [OptimCase("SGDScheduleFree", kw, desc, {"lr": 0.05, "warmup_steps": 5}, **train) for kw, desc in sgd]
    out += [
        OptimCase("SGDScheduleFree", {"lr": 0.1, "weight_decay": 0.1}, "float64", {"momentum": 0.5}, f64, **train),
        OptimCase("SGDScheduleFree", {"lr": 0.1, "warmup_steps": 5}, "large", shapes=LARGE_SHAPES, **train),
    ]
    out += [OptimCase("AdamWScheduleFree", kw, desc, {"lr": 5e-3, "warmup_steps": 5}, **train) for kw, desc in adamw]
    out += [
        OptimCase(
            "AdamWScheduleFree", {"lr": 1e-2, "weight_decay": 0.1}, "float64", {"betas": (0.5, 0.9)}, f64, **train
        ),
        OptimCase("AdamWScheduleFree", {"lr": 1e-2, "warmup_steps": 5}, "large", shapes=LARGE_SHAPES, **train),
    ]
    return out


def _prodigy_rows() -> list[OptimCase]:
    # numopt.Prodigy against pytorch_optimizer.Prodigy. The second group overrides only what the reference
    # reads per group (eps, weight decay, safeguard_warmup): lr, betas, d, d0 come from the first group there.
    f64 = np.float64
    rows = [
        ({}, "default", {"weight_decay": 0.1}),
        (
            {"lr": 0.5, "d0": 1e-2, "betas": (0.8, 0.99), "d_coef": 2.0, "weight_decay": 0.1},
            "lr betas d_coef weight_decay",
            {"eps": None, "safeguard_warmup": True},
        ),
        (
            {"bias_correction": True, "d_coef": 5.0, "safeguard_warmup": True, "eps": None},
            "bias_correction safeguard_warmup atan2",
            {"safeguard_warmup": False, "eps": 1e-4},
        ),
        (
            {"d0": 1e-3, "weight_decay": 0.1, "weight_decouple": False},
            "coupled weight_decay",
            {"weight_decouple": True},
        ),
    ]
    out = [OptimCase("Prodigy", kw, desc, group2=g2) for kw, desc, g2 in rows]
    # With maximize, d grows 1e5-fold in 60 steps. The reference reduces <g, p0 - p> and sum |s| in float32
    # (numopt: float64, then rounded to float32) and its float32 sqrt (MKL) is 1 ulp off in 17% of elements;
    # d then differs by up to 7.5e-7 relative, which cancellation in s (beta3 * s + (d / d0) * d_lr * g)
    # lifts above rtol 1e-5 on single elements of s (measured: 1.3e-5 at step 19). Displacement, measured:
    # at most 7.5e-6 Frobenius-relative (tolerance 1e-4).
    # growth_rate with beta3 = 0.9, the same cause: at step 87 (of 100) one element of s in 24 cancels to
    # 0.046 among values of ~20 and differs by 5.6e-5 relative (2.6e-6 absolute; the parameters agree).
    out.append(
        OptimCase(
            "Prodigy",
            {"d0": 1e-2, "beta3": 0.9, "growth_rate": 1.05},
            "growth_rate beta3 (displacement: see above)",
            group2={"eps": None},
            compare="displacement",
        )
    )
    out.append(
        OptimCase(
            "Prodigy",
            {"maximize": True, "weight_decay": 0.1, "fixed_decay": True},
            "maximize fixed_decay (displacement: see above)",
            group2={"eps": 1e-6},
            compare="displacement",
        )
    )
    out += [
        OptimCase("Prodigy", {"d0": 1e-3, "weight_decay": 0.1}, "float64", group2={"eps": None}, dtype=f64),
        OptimCase(
            "Prodigy",
            {
                "d0": 1e-2,
                "bias_correction": True,
                "growth_rate": 1.1,
                "maximize": True,
                "fixed_decay": True,
                "weight_decay": 0.1,
            },
            "growth_rate maximize float64",
            group2={"safeguard_warmup": True},
            dtype=f64,
        ),
        OptimCase("Prodigy", {"d0": 1e-3}, "large", shapes=LARGE_SHAPES),
    ]
    return out


def _lamb_lars_rows() -> list[OptimCase]:
    # numopt.Lamb / numopt.LARS: pytorch_optimizer.Lamb / LARS
    out: list[OptimCase] = []
    lamb = [
        ({}, "default"),
        ({"lr": 3e-3, "betas": (0.8, 0.95), "eps": 1e-5}, "non-default lr, betas and eps"),
        ({"lr": 1e-2, "weight_decay": 0.5}, "decoupled weight_decay"),
        # (weight_decay 0.1: at 0.5 the parameters shrink below 1e-23 by step 75, where the reference's
        # float32 squares underflow, its norm is 0 and its trust ratio falls back to 1; numopt's float64
        # squares keep the true ratio)
        ({"lr": 1e-2, "weight_decay": 0.1, "fixed_decay": True}, "fixed_decay"),
        ({"lr": 1e-2, "weight_decay": 0.1, "weight_decouple": False}, "coupled weight_decay"),
        ({"lr": 1e-2, "grad_averaging": False}, "no grad_averaging"),
        ({"lr": 1e-2, "adam": True, "weight_decay": 0.1}, "adam"),
        ({"lr": 1e-2, "pre_norm": True, "max_grad_norm": 0.0}, "pre_norm without clipping"),
        ({"lr": 1e-2, "pre_norm": True, "max_grad_norm": 50.0}, "pre_norm under max_grad_norm"),
        ({"lr": 1e-2, "foreach": False, "weight_decay": 0.1, "weight_decouple": False}, "per-parameter path"),
        ({"lr": 1e-2, "foreach": False, "adam": True}, "per-parameter path adam"),
        ({"lr": 1e-2, "rectify": True, "degenerated_to_sgd": True, "betas": (0.9, 0.99)}, "rectify"),
        (
            {"lr": 1e-2, "rectify": True, "degenerated_to_sgd": True, "weight_decay": 0.1, "n_sma_threshold": 8},
            "rectify with decay and threshold",
        ),
        ({"lr": 1e-2, "maximize": True, "weight_decay": 0.1}, "maximize"),
    ]
    out += [OptimCase("Lamb", kw, desc, group2={"lr": 5e-3}) for kw, desc in lamb]
    # active clipping: numopt adds the squared norms exactly (the same factor for any parameter order),
    # the reference in float32, so the factor can differ by a float32 ulp; the 0-d parameter's trust
    # ratio |p| / |u| amplifies that when its momentum cancels (its step, |p| * step size, does not)
    out.append(OptimCase("Lamb", {"lr": 1e-2, "pre_norm": True}, "pre_norm clipping", compare="displacement"))
    # float64: no active clipping (its factor is float32, through torch's float32 sqrt, which is not always
    # correctly rounded: one float32 ulp off is beyond float64 tolerances)
    out.append(OptimCase("Lamb", {"lr": 1e-2, "weight_decay": 0.1}, "float64", dtype=np.float64))
    out.append(
        OptimCase(
            "Lamb", {"lr": 1e-2, "rectify": True, "degenerated_to_sgd": True}, "float64 rectify", dtype=np.float64
        )
    )
    out.append(OptimCase("Lamb", {"lr": 1e-2, "weight_decay": 0.1, "pre_norm": True}, "large", shapes=LARGE_SHAPES))
    out.append(OptimCase("Lamb", {"lr": 1e-2, "foreach": False}, "large per-parameter path", shapes=LARGE_SHAPES))
    lars = [
        ({}, "default"),
        ({"lr": 0.1, "weight_decay": 0.1, "trust_coefficient": 0.02}, "weight_decay and trust_coefficient"),
        ({"lr": 0.1, "momentum": 0.0, "trust_coefficient": 0.02}, "no momentum"),
        ({"lr": 0.1, "momentum": 0.8, "dampening": 0.3, "trust_coefficient": 0.02}, "dampening"),
        ({"lr": 0.1, "nesterov": True, "weight_decay": 0.01, "trust_coefficient": 0.02}, "nesterov"),
        ({"lr": 0.1, "maximize": True, "weight_decay": 0.1, "trust_coefficient": 0.02}, "maximize"),
    ]
    out += [OptimCase("LARS", kw, desc, group2={"lr": 0.05, "momentum": 0.5}) for kw, desc in lars]
    out.append(
        OptimCase("LARS", {"lr": 0.1, "weight_decay": 0.1, "trust_coefficient": 0.02}, "float64", dtype=np.float64)
    )
    out.append(
        OptimCase(
            "LARS",
            {"lr": 0.1, "weight_decay": 0.1, "nesterov": True, "trust_coefficient": 0.02},
            "large",
            shapes=LARGE_SHAPES,
        )
    )
    return out


OPTIM_DB: list[OptimCase] = []
OPTIM_DB += _sgd_rows()
# Adam family rows:
OPTIM_DB += _adam_family_rows()
# RMS family rows:
OPTIM_DB += _rms_family_rows()
# Other optimizers rows:
OPTIM_DB += _other_rows()
# Optimizers torch declines:
OPTIM_DB += _beyond_torch_rows()


def torch_rows() -> list[OptimCase]:
    """The rows whose reference is ``torch.optim``'s class of the same name: what torch-interop tests
    (torch state dicts in and out of numopt) run on. The other rows have no torch twin to convert to."""
    return [c for c in OPTIM_DB if c.reference_is_torch]


def reference_for(name: str) -> Callable[..., Any]:
    """The reference of class ``name``: its OPTIM_DB rows' (they agree), else ``torch.optim.<name>``.

    For the dedicated tests of a class (compilation, sparse gradients, options outside the table)
    that build the reference optimizer themselves.
    """
    refs = []
    for c in OPTIM_DB:
        if c.name == name and c.reference not in refs:
            refs.append(c.reference)
    assert len(refs) <= 1, f"the OPTIM_DB rows of {name} name different references: {refs}"
    return refs[0] if refs else torch_optim(name)


@dataclass(frozen=True)
class ErrorCase:
    """Constructor kwargs that must raise ``error`` with a message matching ``match``."""

    name: str
    kwargs: dict[str, Any]
    error: type
    match: str


ERROR_DB: list[ErrorCase] = [
    ErrorCase("SGD", {"lr": -0.1}, ValueError, "Invalid learning rate: -0.1 .*lr must be"),
    ErrorCase("SGD", {"lr": float("nan")}, ValueError, "Invalid learning rate"),
    ErrorCase("SGD", {"lr": "0.1"}, TypeError, "lr must be a real number"),
    ErrorCase("SGD", {"momentum": -0.5}, ValueError, "Invalid momentum value: -0.5"),
    ErrorCase("SGD", {"weight_decay": -1.0}, ValueError, "Invalid weight_decay value: -1.0"),
    ErrorCase("SGD", {"nesterov": True}, ValueError, "Nesterov momentum requires a momentum and zero dampening"),
    ErrorCase("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, ValueError, "zero dampening"),
    ErrorCase("SGD", {"maximize": 1}, TypeError, "maximize must be True or False"),
    ErrorCase("SGD", {"differentiable": True}, ValueError, "differentiable=True is not supported"),
    ErrorCase("SGD", {"foreach": "yes"}, TypeError, "foreach must be None, True or False"),
    # Adam family errors:
    ErrorCase("Adam", {"lr": -0.1}, ValueError, "Invalid learning rate: -0.1 .*lr must be"),
    ErrorCase("Adam", {"eps": -1e-8}, ValueError, "Invalid epsilon value: -1e-08 .*eps must be"),
    ErrorCase(
        "Adam", {"lr": 1e-2, "betas": (1.0, 0.0)}, ValueError, r"Invalid beta parameter at index 0: 1.0 .*betas\[0\]"
    ),
    ErrorCase("Adam", {"betas": (0.9, 1.0)}, ValueError, r"Invalid beta parameter at index 1: 1.0 .*< 1.0"),
    ErrorCase("Adam", {"betas": (-0.1, 0.9)}, ValueError, "Invalid beta parameter at index 0: -0.1"),
    ErrorCase("Adam", {"betas": (float("nan"), 0.9)}, ValueError, "Invalid beta parameter at index 0: nan"),
    ErrorCase("Adam", {"betas": 0.9}, TypeError, r"betas must be a pair of numbers \(beta1, beta2\), got 0.9"),
    ErrorCase("Adam", {"betas": (0.9, 0.99, 0.999)}, TypeError, "betas must be a pair"),
    ErrorCase("Adam", {"betas": (0.9, "0.99")}, TypeError, r"betas\[1\] must be a real number"),
    ErrorCase("Adam", {"lr": 1e-2, "weight_decay": -1}, ValueError, "Invalid weight_decay value: -1"),
    ErrorCase("Adam", {"amsgrad": 1}, TypeError, "amsgrad must be True or False"),
    ErrorCase("Adam", {"decoupled_weight_decay": "yes"}, TypeError, "decoupled_weight_decay must be True or False"),
    ErrorCase("Adam", {"maximize": None}, TypeError, "maximize must be True or False"),
    ErrorCase(
        "Adam", {"foreach": True, "fused": True}, RuntimeError, "`fused` and `foreach` cannot be `True` together"
    ),
    ErrorCase("Adam", {"capturable": True}, ValueError, "capturable=True is not supported"),
    ErrorCase("Adam", {"differentiable": True}, ValueError, "differentiable=True is not supported"),
    ErrorCase("AdamW", {"lr": 1e-2, "betas": (1.0, 0.0)}, ValueError, "Invalid beta parameter at index 0: 1.0"),
    ErrorCase("AdamW", {"lr": 1e-2, "weight_decay": -1}, ValueError, "Invalid weight_decay value: -1"),
    ErrorCase(
        "AdamW", {"decoupled_weight_decay": False}, TypeError, "unexpected keyword argument 'decoupled_weight_decay'"
    ),
    ErrorCase(
        "AdamW", {"fused": True, "foreach": True}, RuntimeError, "`fused` and `foreach` cannot be `True` together"
    ),
    ErrorCase("Adamax", {"lr": 1e-2, "betas": (0.0, 1.0)}, ValueError, "Invalid beta parameter at index 1: 1.0"),
    ErrorCase("Adamax", {"lr": -1e-3}, ValueError, "Invalid learning rate: -0.001"),
    ErrorCase("Adamax", {"eps": -1.0}, ValueError, "Invalid epsilon value: -1.0"),
    ErrorCase("Adamax", {"weight_decay": float("inf")}, ValueError, "Invalid weight_decay value: inf"),
    ErrorCase("Adamax", {"capturable": True}, ValueError, "capturable=True is not supported"),
    ErrorCase("Adamax", {"fused": False}, TypeError, "unexpected keyword argument 'fused'"),
    ErrorCase("NAdam", {"lr": 1e-2, "betas": (1.0, 0.0)}, ValueError, "Invalid beta parameter at index 0: 1.0"),
    ErrorCase("NAdam", {"lr": 1e-2, "momentum_decay": -0.2}, ValueError, "Invalid momentum_decay value: -0.2"),
    ErrorCase("NAdam", {"weight_decay": -0.1}, ValueError, "Invalid weight_decay value: -0.1"),
    ErrorCase("NAdam", {"decoupled_weight_decay": 1}, TypeError, "decoupled_weight_decay must be True or False"),
    ErrorCase("NAdam", {"differentiable": True}, ValueError, "differentiable=True is not supported"),
    ErrorCase("RAdam", {"lr": 1e-2, "betas": (1.0, 0.0)}, ValueError, "Invalid beta parameter at index 0: 1.0"),
    ErrorCase("RAdam", {"lr": 1e-2, "weight_decay": -1}, ValueError, "Invalid weight_decay value: -1"),
    ErrorCase("RAdam", {"lr": float("nan")}, ValueError, "Invalid learning rate: nan"),
    ErrorCase("RAdam", {"eps": "1e-8"}, TypeError, "eps must be a real number"),
    ErrorCase("RAdam", {"maximize": 0}, TypeError, "maximize must be True or False"),
    ErrorCase("RAdam", {"capturable": True}, ValueError, "capturable=True is not supported"),
    # RMS family errors:
    ErrorCase("Adagrad", {"lr": -0.1}, ValueError, "Invalid learning rate: -0.1 .*lr must be"),
    ErrorCase("Adagrad", {"lr": 1e-2, "lr_decay": -0.5}, ValueError, "Invalid lr_decay value: -0.5 .*lr_decay must be"),
    ErrorCase("Adagrad", {"weight_decay": -1.0}, ValueError, "Invalid weight_decay value: -1.0"),
    ErrorCase(
        "Adagrad", {"initial_accumulator_value": -0.1}, ValueError, "Invalid initial_accumulator_value value: -0.1"
    ),
    ErrorCase("Adagrad", {"eps": -1e-10}, ValueError, "Invalid epsilon value: -1e-10 .*eps must be"),
    ErrorCase("Adagrad", {"eps": float("inf")}, ValueError, "Invalid epsilon value"),
    ErrorCase("Adagrad", {"maximize": "no"}, TypeError, "maximize must be True or False"),
    ErrorCase("Adagrad", {"differentiable": True}, ValueError, "differentiable=True is not supported"),
    ErrorCase("Adagrad", {"fused": True, "foreach": True}, RuntimeError, "`fused` and `foreach` cannot be `True`"),
    ErrorCase("Adagrad", {"fused": 1}, TypeError, "fused must be None, True or False"),
    ErrorCase("Adadelta", {"lr": 1e-2, "rho": 1.1}, ValueError, "Invalid rho value: 1.1 .*rho must be .*<= 1.0"),
    ErrorCase("Adadelta", {"rho": -0.1}, ValueError, "Invalid rho value: -0.1"),
    ErrorCase("Adadelta", {"lr": -1.0}, ValueError, "Invalid learning rate: -1.0"),
    ErrorCase("Adadelta", {"eps": -1e-6}, ValueError, "Invalid epsilon value: -1e-06"),
    ErrorCase("Adadelta", {"weight_decay": -0.1}, ValueError, "Invalid weight_decay value: -0.1"),
    ErrorCase("Adadelta", {"capturable": True}, ValueError, "capturable=True is not supported"),
    ErrorCase("Adadelta", {"foreach": 0}, TypeError, "foreach must be None, True or False"),
    ErrorCase("RMSprop", {"lr": 1e-2, "momentum": -1.0}, ValueError, "Invalid momentum value: -1.0 .*momentum must be"),
    ErrorCase("RMSprop", {"lr": -0.01}, ValueError, "Invalid learning rate: -0.01"),
    ErrorCase("RMSprop", {"alpha": -0.5}, ValueError, "Invalid alpha value: -0.5"),
    ErrorCase("RMSprop", {"eps": -1e-8}, ValueError, "Invalid epsilon value: -1e-08"),
    ErrorCase("RMSprop", {"weight_decay": -0.1}, ValueError, "Invalid weight_decay value: -0.1"),
    ErrorCase("RMSprop", {"centered": 1}, TypeError, "centered must be True or False"),
    ErrorCase("RMSprop", {"capturable": True}, ValueError, "capturable=True is not supported"),
    ErrorCase("RMSprop", {"differentiable": True}, ValueError, "differentiable=True is not supported"),
    # Other optimizers errors:
    ErrorCase("Rprop", {"lr": -0.1}, ValueError, "Invalid learning rate: -0.1 .*lr must be"),
    ErrorCase("Rprop", {"lr": 1e-2, "etas": (1.0, 0.5)}, ValueError, "Invalid eta values: 1.0, 0.5"),
    ErrorCase("Rprop", {"etas": (0.5, 1.0)}, ValueError, "Invalid eta values: 0.5, 1.0 .*0 < etaminus < 1 < etaplus"),
    ErrorCase("Rprop", {"etas": (0.0, 1.2)}, ValueError, "Invalid eta values: 0.0, 1.2"),
    ErrorCase("Rprop", {"etas": 0.5}, TypeError, "etas must be a pair of numbers"),
    ErrorCase("Rprop", {"step_sizes": (float("nan"), 50)}, ValueError, "Invalid minimal step size: nan"),
    ErrorCase("Rprop", {"step_sizes": (1e-6, float("inf"))}, ValueError, "Invalid maximal step size: inf"),
    ErrorCase("Rprop", {"step_sizes": (1e-6,)}, TypeError, "step_sizes must be a pair of numbers"),
    ErrorCase("Rprop", {"capturable": True}, ValueError, "capturable=True is not supported"),
    ErrorCase("Rprop", {"differentiable": True}, ValueError, "differentiable=True is not supported"),
    ErrorCase("Rprop", {"maximize": None}, TypeError, "maximize must be True or False"),
    ErrorCase("ASGD", {"lr": -0.01}, ValueError, "Invalid learning rate: -0.01"),
    ErrorCase("ASGD", {"lr": 1e-2, "weight_decay": -0.5}, ValueError, "Invalid weight_decay value: -0.5"),
    ErrorCase("ASGD", {"lambd": float("nan")}, ValueError, "Invalid lambd value: nan"),
    ErrorCase("ASGD", {"t0": "1e6"}, TypeError, "t0 must be a real number"),
    ErrorCase("ASGD", {"alpha": float("inf")}, ValueError, "Invalid alpha value: inf"),
    ErrorCase("ASGD", {"capturable": True}, ValueError, "capturable=True is not supported"),
    ErrorCase("ASGD", {"foreach": "no"}, TypeError, "foreach must be None, True or False"),
    ErrorCase("Adafactor", {"lr": -0.1}, ValueError, "Invalid learning rate: -0.1"),
    ErrorCase("Adafactor", {"eps": (-1e-30, 1e-3)}, ValueError, "Invalid epsilon1 value: -1e-30 .*eps\\[0\\] must be"),
    ErrorCase("Adafactor", {"eps": (None, -1e-3)}, ValueError, "Invalid epsilon2 value: -0.001"),
    ErrorCase("Adafactor", {"eps": 1e-3}, TypeError, "eps must be a pair"),
    ErrorCase("Adafactor", {"d": 0.0}, ValueError, "Invalid clipping threshold d: 0.0 .*d must be .*>= 1.0"),
    ErrorCase("Adafactor", {"beta2_decay": 0.8}, ValueError, "Invalid beta2_decay value: 0.8 .*<= 0.0"),
    ErrorCase("Adafactor", {"weight_decay": -0.1}, ValueError, "Invalid weight_decay value: -0.1"),
    ErrorCase("Adafactor", {"maximize": 0}, TypeError, "maximize must be True or False"),
    ErrorCase("SparseAdam", {"lr": 0.0}, ValueError, "Invalid learning rate: 0.0 .*lr must be .*> 0.0"),
    ErrorCase("SparseAdam", {"eps": 0.0}, ValueError, "Invalid epsilon value: 0.0"),
    ErrorCase("SparseAdam", {"lr": 1e-2, "betas": (1.0, 0.0)}, ValueError, "Invalid beta parameter at index 0: 1.0"),
    ErrorCase("SparseAdam", {"betas": (0.9, -0.1)}, ValueError, "Invalid beta parameter at index 1: -0.1"),
    ErrorCase("SparseAdam", {"betas": (0.9,)}, TypeError, "betas must be a pair of numbers"),
    # Optimizers torch declines:
    ErrorCase("ADOPT", {"lr": -0.1}, ValueError, "Invalid learning rate: -0.1 .*lr must be"),
    ErrorCase("ADOPT", {"betas": (1.0, 0.9)}, ValueError, r"Invalid beta parameter at index 0: 1.0 .*betas\[0\]"),
    ErrorCase("ADOPT", {"betas": (0.9, 0.99, 0.999)}, TypeError, "betas must be a pair"),
    ErrorCase("ADOPT", {"eps": -1e-6}, ValueError, "Invalid epsilon value: -1e-06 .*eps must be"),
    ErrorCase("ADOPT", {"weight_decay": -1.0}, ValueError, "Invalid weight_decay value: -1.0"),
    ErrorCase("ADOPT", {"weight_decouple": 1}, TypeError, "weight_decouple must be True or False"),
    ErrorCase("ADOPT", {"fixed_decay": "no"}, TypeError, "fixed_decay must be True or False"),
    ErrorCase(
        "ADOPT", {"clip_lambda": 2.0}, TypeError, r"clip_lambda must be a callable \(step -> clip value\) or None"
    ),
    ErrorCase("ADOPT", {"maximize": 1}, TypeError, "maximize must be True or False"),
    ErrorCase("ADOPT", {"foreach": "yes"}, TypeError, "foreach must be None, True or False"),
    ErrorCase("AdEMAMix", {"lr": float("nan")}, ValueError, "Invalid learning rate: nan"),
    ErrorCase("AdEMAMix", {"betas": (0.9, 0.999)}, TypeError, r"betas must be three numbers \(beta1, beta2, beta3\)"),
    ErrorCase("AdEMAMix", {"betas": (0.9, 1.0, 0.9999)}, ValueError, r"Invalid beta parameter at index 1: 1.0 .*< 1.0"),
    ErrorCase("AdEMAMix", {"betas": (0.9, 0.999, 1.5)}, ValueError, r"Invalid beta parameter at index 2: 1.5 .*<= 1.0"),
    ErrorCase("AdEMAMix", {"alpha": -1.0}, ValueError, "Invalid alpha value: -1.0 .*alpha must be"),
    ErrorCase("AdEMAMix", {"t_alpha_beta3": 0}, ValueError, "Invalid t_alpha_beta3 value: 0 .*> 0.0"),
    ErrorCase("AdEMAMix", {"t_alpha_beta3": "10"}, TypeError, "t_alpha_beta3 must be a real number"),
    ErrorCase(
        "AdEMAMix", {"t_alpha_beta3": 10, "betas": (0.0, 0.999, 0.9999)}, ValueError, "beta1 and beta3 must be > 0"
    ),
    ErrorCase("AdEMAMix", {"eps": -1.0}, ValueError, "Invalid epsilon value: -1.0"),
    ErrorCase("AdEMAMix", {"weight_decay": -0.1}, ValueError, "Invalid weight_decay value: -0.1"),
    ErrorCase("AdEMAMix", {"weight_decouple": None}, TypeError, "weight_decouple must be True or False"),
    ErrorCase("AdEMAMix", {"maximize": "no"}, TypeError, "maximize must be True or False"),
    ErrorCase("Adan", {"lr": -0.1}, ValueError, "Invalid learning rate: -0.1 .*lr must be"),
    ErrorCase("Adan", {"betas": (1.0, 0.92, 0.99)}, ValueError, r"Invalid beta parameter at index 0: 1.0 .*< 1.0"),
    ErrorCase("Adan", {"betas": (0.98, 1.0, 0.99)}, ValueError, r"Invalid beta parameter at index 1: 1.0"),
    ErrorCase("Adan", {"betas": (0.98, 0.92, 1.5)}, ValueError, r"Invalid beta parameter at index 2: 1.5 .*<= 1.0"),
    ErrorCase("Adan", {"betas": (0.9, 0.99)}, TypeError, r"betas must be three numbers"),
    ErrorCase("Adan", {"weight_decay": -1.0}, ValueError, "Invalid weight_decay value: -1.0"),
    ErrorCase("Adan", {"max_grad_norm": -1.0}, ValueError, "Invalid max_grad_norm value: -1.0"),
    ErrorCase("Adan", {"eps": -1e-8}, ValueError, "Invalid epsilon value: -1e-08"),
    ErrorCase("Adan", {"weight_decouple": 1}, TypeError, "weight_decouple must be True or False"),
    ErrorCase("Adan", {"maximize": None}, TypeError, "maximize must be True or False"),
    ErrorCase("Adan", {"foreach": "yes"}, TypeError, "foreach must be None, True or False"),
    # Optimizers torch declines, errors:
    ErrorCase("SGDScheduleFree", {"lr": -0.1}, ValueError, "Invalid learning rate: -0.1 .*lr must be"),
    ErrorCase("SGDScheduleFree", {"momentum": 1.0}, ValueError, "Invalid momentum value: 1.0 .*> 0.0 and < 1.0"),
    ErrorCase("SGDScheduleFree", {"momentum": 0}, ValueError, "Invalid momentum value: 0 "),
    ErrorCase("SGDScheduleFree", {"weight_decay": -1.0}, ValueError, "Invalid weight_decay value: -1.0"),
    ErrorCase("SGDScheduleFree", {"warmup_steps": -1}, ValueError, "Invalid warmup_steps value: -1 .*>= 0.0"),
    ErrorCase("SGDScheduleFree", {"warmup_steps": "5"}, TypeError, "warmup_steps must be a real number"),
    ErrorCase("SGDScheduleFree", {"r": float("nan")}, ValueError, "Invalid r value: nan"),
    ErrorCase("SGDScheduleFree", {"weight_lr_power": -1.0}, ValueError, "Invalid weight_lr_power value: -1.0"),
    ErrorCase("SGDScheduleFree", {"foreach": "yes"}, TypeError, "foreach must be None, True or False"),
    ErrorCase("AdamWScheduleFree", {"lr": float("nan")}, ValueError, "Invalid learning rate: nan"),
    ErrorCase("AdamWScheduleFree", {"betas": (0.0, 0.9)}, ValueError, r"betas\[0\] must be > 0: eval\(\) divides"),
    ErrorCase("AdamWScheduleFree", {"betas": (0.9, 1.0)}, ValueError, "Invalid beta parameter at index 1: 1.0"),
    ErrorCase("AdamWScheduleFree", {"betas": 0.9}, TypeError, "betas must be a pair of numbers"),
    ErrorCase("AdamWScheduleFree", {"eps": -1e-8}, ValueError, "Invalid epsilon value: -1e-08 .*eps must be"),
    ErrorCase("AdamWScheduleFree", {"weight_decay": -0.1}, ValueError, "Invalid weight_decay value: -0.1"),
    ErrorCase("AdamWScheduleFree", {"warmup_steps": -2}, ValueError, "Invalid warmup_steps value: -2"),
    ErrorCase("AdamWScheduleFree", {"weight_lr_power": float("inf")}, ValueError, "Invalid weight_lr_power value"),
    ErrorCase("Prodigy", {"lr": -1.0}, ValueError, "Invalid learning rate: -1.0 .*lr must be"),
    ErrorCase("Prodigy", {"betas": (1.0, 0.999)}, ValueError, r"Invalid beta parameter at index 0: 1.0 .*betas\[0\]"),
    ErrorCase("Prodigy", {"betas": 0.9}, TypeError, "betas must be a pair of numbers"),
    ErrorCase("Prodigy", {"beta3": 1.5}, ValueError, "Invalid beta3 value: 1.5 .*beta3 must be .*<= 1.0"),
    ErrorCase("Prodigy", {"d0": 0.0}, ValueError, "Invalid d0 value: 0.0 .*d0 must be .*> 0.0"),
    ErrorCase("Prodigy", {"d_coef": -1.0}, ValueError, "Invalid d_coef value: -1.0 .*d_coef must be .*> 0.0"),
    ErrorCase("Prodigy", {"growth_rate": 0.0}, ValueError, "Invalid growth_rate value: 0.0 .*growth_rate must be > 0"),
    ErrorCase("Prodigy", {"growth_rate": float("nan")}, ValueError, "Invalid growth_rate value: nan"),
    ErrorCase("Prodigy", {"growth_rate": "2"}, TypeError, "growth_rate must be a real number"),
    ErrorCase("Prodigy", {"weight_decay": -0.1}, ValueError, "Invalid weight_decay value: -0.1"),
    ErrorCase("Prodigy", {"eps": -1e-8}, ValueError, "Invalid epsilon value: -1e-08 .*eps must be"),
    ErrorCase("Prodigy", {"weight_decouple": 1}, TypeError, "weight_decouple must be True or False"),
    ErrorCase("Prodigy", {"safeguard_warmup": "yes"}, TypeError, "safeguard_warmup must be True or False"),
    ErrorCase("Prodigy", {"bias_correction": None}, TypeError, "bias_correction must be True or False"),
    ErrorCase("Prodigy", {"maximize": 0}, TypeError, "maximize must be True or False"),
    ErrorCase("Prodigy", {"foreach": "no"}, TypeError, "foreach must be None, True or False"),
    ErrorCase("Lamb", {"lr": -0.1}, ValueError, "Invalid learning rate: -0.1 .*lr must be"),
    ErrorCase("Lamb", {"betas": (1.0, 0.9)}, ValueError, "Invalid beta parameter at index 0: 1.0"),
    ErrorCase("Lamb", {"weight_decay": -1.0}, ValueError, "Invalid weight_decay value: -1.0"),
    ErrorCase("Lamb", {"max_grad_norm": -1.0}, ValueError, "Invalid max_grad_norm value: -1.0 .*max_grad_norm must"),
    ErrorCase("Lamb", {"eps": -1e-6}, ValueError, "Invalid epsilon value: -1e-06"),
    ErrorCase("Lamb", {"n_sma_threshold": float("nan")}, ValueError, "Invalid n_sma_threshold value: nan"),
    ErrorCase("Lamb", {"adam": 1}, TypeError, "adam must be True or False"),
    ErrorCase("Lamb", {"rectify": "yes"}, TypeError, "rectify must be True or False"),
    ErrorCase("Lamb", {"pre_norm": None}, TypeError, "pre_norm must be True or False"),
    ErrorCase("Lamb", {"maximize": 0}, TypeError, "maximize must be True or False"),
    ErrorCase("Lamb", {"foreach": "yes"}, TypeError, "foreach must be None, True or False"),
    ErrorCase("LARS", {"lr": -0.1}, ValueError, "Invalid learning rate: -0.1"),
    ErrorCase("LARS", {"momentum": 1.0}, ValueError, "Invalid momentum value: 1.0 .*momentum must be .*< 1.0"),
    ErrorCase("LARS", {"dampening": -0.1}, ValueError, "Invalid dampening value: -0.1"),
    ErrorCase("LARS", {"weight_decay": -1.0}, ValueError, "Invalid weight_decay value: -1.0"),
    ErrorCase("LARS", {"trust_coefficient": -1e-3}, ValueError, "Invalid trust_coefficient value: -0.001"),
    ErrorCase("LARS", {"nesterov": 1}, TypeError, "nesterov must be True or False"),
    ErrorCase("LARS", {"maximize": "no"}, TypeError, "maximize must be True or False"),
]
