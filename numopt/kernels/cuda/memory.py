"""Device memory for flat buffers: allocation, fill, device-side copies, CUDA-array conversion.

The only array operations the CUDA path uses, so that the simulator (whose
fake device arrays wrap NumPy and would accept much more) and a real GPU see
the same calls: ``cuda.device_array``, ``copy_to_device``, ``copy_to_host``,
slicing, ``reshape``, and the fill kernel below.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from ..._device import is_cuda_array as is_device
from ._launch import jit, launch_config

__all__ = [
    "as_device",
    "copy_into",
    "detached",
    "empty",
    "fill_",
    "full",
    "is_device",
    "to_device",
    "to_host",
    "zeros_like",
]


def as_device(x: Any) -> Any:
    """``x`` as a Numba device array, without copying (CuPy arrays, torch CUDA tensors, ... are wrapped)."""
    if getattr(x, "__cuda_ndarray__", False):
        return x
    if hasattr(x, "__cuda_array_interface__"):
        return cuda.as_cuda_array(x)
    raise TypeError(f"expected a CUDA array (with __cuda_array_interface__), got {type(x).__name__}")


def is_readonly(x: Any) -> bool:
    """Whether the CUDA array ``x`` is marked read-only by its ``__cuda_array_interface__``."""
    iface = getattr(x, "__cuda_array_interface__", None)
    return bool(iface is not None and iface["data"][1])


def empty(size: int, dtype: Any) -> Any:
    """An uninitialized 1-D device array."""
    return cuda.device_array(size, np.dtype(dtype))


@jit
def _fill(arr, value):
    n = arr.size
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        arr[i] = value


def fill_(arr: Any, value: float) -> None:
    """Set every element of the C-contiguous device array ``arr`` to ``value`` (one kernel, no host copy)."""
    if arr.size == 0:
        return
    flat = arr if arr.ndim == 1 else arr.reshape(arr.size)
    blocks, threads = launch_config(flat.size)
    _fill[blocks, threads](flat, flat.dtype.type(value))


def full(size: int, value: float, dtype: Any) -> Any:
    """A 1-D device array filled with ``value``."""
    arr = empty(size, dtype)
    fill_(arr, value)
    return arr


def zeros_like(arr: Any) -> Any:
    """A zero-filled device array with the shape and dtype of ``arr``."""
    out = cuda.device_array(arr.shape, arr.dtype)
    fill_(out, 0)
    return out


def copy_into(dst: Any, src: Any) -> None:
    """Copy ``src`` (a CUDA array: device to device; or a host array: host to device) into ``dst``.

    Shapes and dtypes must match; nothing is converted.
    """
    if is_device(src):
        src = as_device(src)
    else:
        src = np.asarray(src, order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
    if tuple(src.shape) != tuple(dst.shape) or src.dtype != dst.dtype:
        raise ValueError(f"cannot copy a {src.dtype} array of shape {src.shape} into {dst.dtype} {dst.shape}")
    if dst.size:
        dst.copy_to_device(src)


def to_device(x: np.ndarray) -> Any:
    """A new device array holding a copy of the host array ``x`` (host to device)."""
    return cuda.to_device(np.ascontiguousarray(x))


def detached(arr: Any) -> Any:
    """A new device array holding a copy of ``arr`` (device to device)."""
    out = cuda.device_array(arr.shape, arr.dtype)
    if arr.size:
        out.copy_to_device(arr)
    return out


def to_host(arr: Any) -> np.ndarray:
    """A NumPy copy of the device array ``arr``."""
    return as_device(arr).copy_to_host()
