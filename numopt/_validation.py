"""Hyperparameter checks shared by every optimizer, with messages that name the argument."""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real
from typing import Any

__all__ = ["check_betas", "check_bool", "check_flags", "check_nonnegative", "check_number", "check_torch_switches"]


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    label: str | None = None,
) -> float:
    """Return ``value`` as a float if it is a finite real number in the given range.

    Raises
    ------
    TypeError
        ``value`` is not a real number (bools are refused too).
    ValueError
        ``value`` is NaN, infinite or outside ``[low, high]`` (open ends as flagged).
        The message starts with torch's wording (``"Invalid learning rate: ..."``)
        and names the argument, the allowed range and the value received.
    """
    label = label or f"{name} value"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"Invalid {label}: {name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high}")
    allowed = "a finite number" + (" " + " and ".join(parts) if parts else "")
    bad = not math.isfinite(v)
    if low is not None and (v < low or (low_open and v == low)):
        bad = True
    if high is not None and (v > high or (high_open and v == high)):
        bad = True
    if bad:
        raise ValueError(f"Invalid {label}: {value!r} ({name} must be {allowed}, got {name}={value!r})")
    return v


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool (or NumPy bool), else raise ``TypeError``."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


#: torch's names for the hyperparameters it names other than ``"<name> value"`` in its messages
_LABELS = {"lr": "learning rate", "eps": "epsilon value"}


def check_nonnegative(hparams: Mapping[str, Any], *names: str) -> None:
    """Check, in order, that each ``hparams[name]`` is a finite number ``>= 0`` (torch's wording:
    ``"Invalid learning rate: ..."``, ``"Invalid epsilon value: ..."``, ``"Invalid <name> value: ..."``)."""
    for name in names:
        check_number(name, hparams[name], low=0.0, label=_LABELS.get(name))


def check_flags(hparams: Mapping[str, Any], *names: str) -> None:
    """Check, in order, that each ``hparams[name]`` is a bool."""
    for name in names:
        check_bool(name, hparams[name])


def check_betas(betas: Any, count: int = 2) -> tuple[float, ...]:
    """Return ``betas`` as ``count`` floats if they are numbers in range: ``beta1``, ``beta2`` in ``[0, 1)``
    and a third, ``beta3``, in ``[0, 1]`` (the ranges of torch and of pytorch-optimizer)."""
    if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != count:
        what = "a pair of numbers (beta1, beta2)" if count == 2 else "three numbers (beta1, beta2, beta3)"
        raise TypeError(f"betas must be {what}, got {betas!r}")
    return tuple(
        check_number(f"betas[{i}]", b, low=0.0, high=1.0, high_open=i < 2, label=f"beta parameter at index {i}")
        for i, b in enumerate(betas)
    )


def check_torch_switches(
    *, foreach: Any = None, fused: Any = None, differentiable: Any = False, capturable: Any = False
) -> None:
    """Accept torch's implementation switches that make sense here, refuse the others.

    ``foreach`` and ``fused`` ask torch for a multi-tensor or single-kernel step;
    numopt always updates a whole group in one fused pass, so any value is
    accepted. ``differentiable`` and ``capturable`` ask for autograd through the
    step and CUDA-graph capture, which numopt does not do.
    """
    for name, v in (("foreach", foreach), ("fused", fused)):
        if v is not None and not isinstance(v, bool):
            raise TypeError(f"{name} must be None, True or False, got {v!r}")
    if differentiable:
        raise ValueError(
            "differentiable=True is not supported: numopt steps are not recorded by an autograd engine (leave it False)"
        )
    if capturable:
        raise ValueError("capturable=True is not supported: numopt does not capture CUDA graphs (leave it False)")
