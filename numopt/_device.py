"""Recognizing CUDA arrays without importing CUDA.

numopt never imports ``numba.cuda`` on its own: only when a CUDA array (a
Numba device array, or anything exposing ``__cuda_array_interface__``: CuPy
arrays, torch CUDA tensors, ...) is given to a :class:`~numopt.Parameter` does
:func:`cuda_backend` load ``numopt.kernels.cuda``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["cuda_backend", "is_cuda_array", "kernel_for"]


def is_cuda_array(x: Any) -> bool:
    """Whether ``x`` is a CUDA array (checked by attribute; imports nothing)."""
    if isinstance(x, np.ndarray):
        return False
    # Numba's device arrays (the simulator's too) set __cuda_ndarray__; the interface covers the rest.
    return bool(getattr(x, "__cuda_ndarray__", False)) or hasattr(x, "__cuda_array_interface__")


def cuda_backend() -> ModuleType:
    """The CUDA kernels and device-memory helpers (``numopt.kernels.cuda``), imported on first use."""
    try:
        from .kernels import cuda
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ImportError(
            "CUDA arrays need numba's CUDA target: pip install 'numopt[cuda]' (the numba-cuda package)"
        ) from e
    return cuda


def kernel_for(cpu_kernel: Any, array: Any) -> Any:
    """The kernel to run on ``array``: ``cpu_kernel`` for a host array, its CUDA twin for a device array.

    The twin takes the same arguments (device arrays instead of host arrays): the
    CUDA loop generated from the same rule for a generated kernel (``.rule``), else
    the one registered in :data:`numopt.kernels.cuda.KERNELS`.
    """
    if isinstance(array, np.ndarray):
        return cpu_kernel
    rule = getattr(cpu_kernel, "rule", None)
    if rule is not None:
        cuda_backend()  # the clear ImportError when the CUDA target is missing
        return rule.cuda()
    cuda = cuda_backend()
    return cuda.KERNELS[cuda.kernel_key(cpu_kernel)]
