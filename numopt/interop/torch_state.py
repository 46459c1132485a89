"""State-dict conversion between ``torch.optim`` and numopt (the half of :mod:`numopt.interop.torch`
behind :func:`~numopt.interop.torch.from_torch_state_dict` and
:func:`~numopt.interop.torch.to_torch_state_dict`; the value types are described there).

torch is imported inside these functions only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._bf16 import is_bfloat16
from ..optimizer import registered

__all__ = ["SCALAR_STATE_KEYS", "from_torch_state_dict", "to_torch_state_dict"]

#: per-parameter state that torch keeps as 0-d tensors and numopt as Python floats
#: state keys that hold per-parameter numbers rather than arrays (torch keeps them in 0-d tensors)
SCALAR_STATE_KEYS: frozenset[str] = frozenset({"step", *(name for cls in registered() for name, _ in cls.scalar_state)})
#: torch optimizers that count 'step' in a Python int rather than a tensor
_INT_STEP = frozenset({"SparseAdam"})


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is installed wherever the tests run
        raise ImportError("numopt.interop.torch needs PyTorch: pip install torch") from e
    return torch


def _nested(value: Any, leaf: Any) -> Any:
    """``leaf`` applied to every value inside nested dicts, lists and tuples (rebuilt as the same types)."""
    if isinstance(value, dict):
        return {k: _nested(v, leaf) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_nested(v, leaf) for v in value)
    return leaf(value)


def _tensor_to_numpy(t: Any, torch: Any, scalar: bool = False) -> Any:
    """A tensor -> a NumPy array (a copy); a one-element tensor -> a Python number where ``scalar``."""
    t = t.detach()
    if t.is_sparse or getattr(t, "layout", torch.strided) != torch.strided:
        t = t.to_dense()
    t = t.cpu()
    if t.dtype in (torch.bfloat16,):  # no NumPy dtype: widen, exactly
        t = t.float()
    if scalar:
        if t.numel() != 1:
            raise ValueError(f"expected a single number, got a tensor of shape {tuple(t.shape)}")
        return t.item()
    return t.numpy().copy()


def _to_numpy(value: Any, torch: Any, scalar: bool = False) -> Any:
    """Tensors -> NumPy arrays (copies), recursively; a 0-d tensor -> a Python number where ``scalar``."""
    if isinstance(value, torch.Tensor):
        return _tensor_to_numpy(value, torch, scalar)
    return _nested(value, lambda v: _tensor_to_numpy(v, torch) if isinstance(v, torch.Tensor) else v)


def _to_torch(value: Any, torch: Any) -> Any:
    """NumPy arrays -> tensors (copies), recursively; NumPy scalars -> Python numbers."""

    def leaf(v: Any) -> Any:
        if isinstance(v, np.ndarray) and is_bfloat16(v.dtype):  # ml_dtypes.bfloat16 -> torch.bfloat16, bit for bit
            return torch.from_numpy(np.array(v.view(np.int16), copy=True, order="C")).view(torch.bfloat16)
        if isinstance(v, np.ndarray):
            a = v if v.dtype.isnative else v.astype(v.dtype.newbyteorder("="))
            return torch.from_numpy(np.array(a, copy=True, order="C"))
        if isinstance(v, np.generic):
            return v.item()
        return v

    return _nested(value, leaf)


def _hparam_to_python(value: Any, torch: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.detach().cpu().item()
    if isinstance(value, (list, tuple)):
        return type(value)(_hparam_to_python(v, torch) for v in value)
    return _to_numpy(value, torch)


def _check_layout(sd: Any, what: str) -> None:
    if (
        not isinstance(sd, dict)
        or not isinstance(sd.get("state"), dict)
        or not isinstance(sd.get("param_groups"), list)
    ):
        raise ValueError(f"{what} must be an optimizer state dict: a dict with 'state' (a dict) and 'param_groups'")


def from_torch_state_dict(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Convert ``torch.optim.Optimizer.state_dict()`` output to numopt's layout.

    Parameters
    ----------
    state_dict : dict
        A torch optimizer's state dict (tensors may live on any device).

    Returns
    -------
    dict
        For ``numopt.<Optimizer>.load_state_dict``: tensors become NumPy arrays
        (copies, on the CPU), ``'step'`` and the other per-parameter scalars
        (``'mu_product'``, ``'eta'``, ``'mu'``) Python floats, tensor-valued
        hyperparameters Python numbers. ``None`` state entries (an
        uninitialized momentum buffer) are dropped. Nothing is shared with
        ``state_dict``.
    """
    torch = _torch()
    _check_layout(state_dict, "from_torch_state_dict's argument")
    state: dict[Any, Any] = {}
    for k, entry in state_dict["state"].items():
        if not isinstance(entry, dict):
            state[k] = _to_numpy(entry, torch)
            continue
        state[k] = {
            name: (
                float(_to_numpy(v, torch, scalar=True))
                if name in SCALAR_STATE_KEYS and isinstance(v, (torch.Tensor, int, float))
                else _to_numpy(v, torch)
            )
            for name, v in entry.items()
            if v is not None
        }
    groups = []
    for g in state_dict["param_groups"]:
        groups.append(
            {k: (list(v) if k in ("params", "param_names") else _hparam_to_python(v, torch)) for k, v in g.items()}
        )
    out = {k: _to_numpy(v, torch) for k, v in state_dict.items() if k not in ("state", "param_groups")}
    out["state"] = state
    out["param_groups"] = groups
    return out


def to_torch_state_dict(state_dict: dict[str, Any], optimizer: Any = None) -> dict[str, Any]:
    """Convert ``numopt.<Optimizer>.state_dict()`` output to ``torch.optim``'s layout.

    Parameters
    ----------
    state_dict : dict
        A numopt optimizer's state dict.
    optimizer : torch.optim.Optimizer, its class or its name, optional
        The torch optimizer that will load the result. Only needed for
        ``SparseAdam``, which counts ``'step'`` in a Python int, not a tensor.

    Returns
    -------
    dict
        For ``torch.optim.<Optimizer>.load_state_dict``: arrays become CPU tensors
        (copies), ``'step'`` a 0-d float32 tensor (float64 when torch's default
        dtype is float64), as torch keeps it, ``'mu_product'``, ``'eta'`` and
        ``'mu'`` 0-d float64 tensors, NumPy scalars among the hyperparameters
        Python numbers. ``torch.optim``'s ``load_state_dict`` then casts the state
        tensors other than ``'step'`` to its parameters' dtype and device, as it
        does for its own state dicts. Hyperparameters that only numopt has (such as
        LBFGS's ``c1``) stay in the groups, where torch ignores them and from
        where they come back to numopt.
    """
    torch = _torch()
    _check_layout(state_dict, "to_torch_state_dict's argument")
    if optimizer is None or isinstance(optimizer, str):
        kind = optimizer
    else:
        kind = (optimizer if isinstance(optimizer, type) else type(optimizer)).__name__
    scalar_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    state: dict[Any, Any] = {}
    for k, entry in state_dict["state"].items():
        if not isinstance(entry, dict):
            state[k] = _to_torch(entry, torch)
            continue
        converted = {}
        for name, v in entry.items():
            if name in SCALAR_STATE_KEYS and (isinstance(v, (int, float, np.number)) or np.ndim(v) == 0):
                if name == "step" and kind in _INT_STEP:
                    converted[name] = int(np.asarray(v))
                    continue
                dtype = scalar_dtype if name == "step" else torch.float64
                converted[name] = torch.tensor(float(np.asarray(v)), dtype=dtype)
            elif hasattr(v, "dequantize"):  # compact state (numopt.lowbit): full precision for torch
                converted[name] = _to_torch(v.dequantize(), torch)
            else:
                converted[name] = _to_torch(v, torch)
        state[k] = converted
    groups = []
    for g in state_dict["param_groups"]:
        groups.append({k: (list(v) if k in ("params", "param_names") else _to_torch(v, torch)) for k, v in g.items()})
    out = {k: _to_torch(v, torch) for k, v in state_dict.items() if k not in ("state", "param_groups")}
    out["state"] = state
    out["param_groups"] = groups
    return out
