"""Launching CUDA kernels with the CPU kernels' signatures, and the registry that pairs them.

Every CUDA kernel here mirrors one CPU kernel of ``numopt.kernels``: same
argument names and order, same arithmetic. :func:`elementwise` wraps a
``numba.cuda`` kernel in a :class:`Launcher`, a plain callable that takes the
CPU kernel's arguments (defaults included), picks the launch configuration
and launches; it is recorded in :data:`KERNELS` under the CPU kernel's
qualified name, which is how a device flat buffer finds the CUDA twin of the
kernel an optimizer's ``_update`` calls.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import cuda
from numba.core import config

from ..._jit import CACHE

__all__ = [
    "KERNELS",
    "SIMULATOR",
    "Launcher",
    "elementwise",
    "jit",
    "kernel_key",
    "launch_config",
    "register",
]

#: whether kernels run in Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``): Python, no GPU
SIMULATOR: bool = bool(config.ENABLE_CUDASIM)

#: threads per block on a real GPU: 8 warps, a good fit for a memory-bound grid-stride loop
THREADS: int = 256
#: resident blocks per multiprocessor aimed for; past that, threads loop (grid-stride) instead of more blocks
BLOCKS_PER_SM: int = 8
#: the simulator runs every thread as a Python thread: a tiny grid keeps tests fast and still strides
SIM_BLOCKS, SIM_THREADS = 1, 2
#: the same for the 8-bit state kernels (a thread block per quantization block of 256 elements on a GPU,
#: one thread per element): a few blocks of a few threads, each thread looping over its share of a block
SIM_Q8_BLOCKS, SIM_Q8_THREADS = 2, 4

#: CPU kernel key (``module.name``) -> the CUDA launcher with the same signature
KERNELS: dict[str, Callable[..., None]] = {}

_sm_count: int | None = None


def jit(fn: Callable) -> Any:
    """Compile ``fn`` as a CUDA kernel with numopt's flags (on-disk cache as ``NUMOPT_CACHE``; no fastmath)."""
    if SIMULATOR:
        return cuda.jit(fn)
    return cuda.jit(fn, cache=CACHE, fastmath=False)


def launch_config(n: int) -> tuple[int, int]:
    """``(blocks, threads)`` for a grid-stride loop over ``n`` elements.

    Enough blocks to fill the device (``BLOCKS_PER_SM`` per multiprocessor),
    fewer for small arrays; each thread then strides over the rest, so one
    launch covers any size.
    """
    if SIMULATOR:
        return SIM_BLOCKS, SIM_THREADS
    global _sm_count
    if _sm_count is None:
        _sm_count = int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
    blocks = min((n + THREADS - 1) // THREADS, _sm_count * BLOCKS_PER_SM)
    return max(blocks, 1), THREADS


def kernel_key(cpu_kernel: Any) -> str:
    """The registry key of a CPU kernel (a Numba dispatcher): ``'numopt.kernels.adam.adam_step'``."""
    fn = getattr(cpu_kernel, "py_func", cpu_kernel)
    return f"{fn.__module__}.{fn.__qualname__}"


_EMPTY: dict[np.dtype, Any] = {}


def _device_arg(a: Any) -> Any:
    """Pass device arrays and scalars through; swap an empty host placeholder for an empty device array.

    The optimizers pass ``np.empty(0)`` for state they do not use (e.g. no
    momentum). A non-empty host array would make Numba copy it to the device
    and back at every launch, so it is refused.
    """
    if isinstance(a, np.ndarray):
        if a.size:
            raise TypeError(
                f"a CUDA kernel got a host array of shape {a.shape}; every array argument must live on the device"
            )
        empty = _EMPTY.get(a.dtype)
        if empty is None:
            empty = _EMPTY[a.dtype] = cuda.device_array(0, a.dtype)
        return empty
    return a


#: trailing arguments of a CPU loop that its CUDA twin does not take: they must keep their defaults
#: (the average updated inside an optimizer's step, ``AveragedModel(..., in_step=True)``, is host-only)
HOST_ONLY = ("ema", "ema_weight")


class Launcher:
    """A CUDA kernel callable with its CPU twin's signature.

    ``size_of(args)`` gives the number of elements the grid covers (by default
    the first argument's size); nothing is launched for zero elements. The CPU
    twin's trailing :data:`HOST_ONLY` arguments are accepted at their defaults only.
    ``cpu=None``: a kernel without a CPU twin of the same arguments, called with its
    own. ``config(n)``: the ``(blocks, threads)`` of a launch over ``n`` (by default
    :func:`launch_config`'s grid-stride grid).
    """

    def __init__(
        self,
        kernel: Any,
        py_func: Callable,
        cpu: Any,
        size_of: Callable[[tuple], int],
        config: Callable[[int], tuple[int, int]] | None = None,
    ) -> None:
        gpu_sig = inspect.signature(py_func)
        cpu_sig = gpu_sig if cpu is None else inspect.signature(getattr(cpu, "py_func", cpu))
        cpu_names, gpu_names = list(cpu_sig.parameters), list(gpu_sig.parameters)
        extra = cpu_names[len(gpu_names) :]
        if cpu_names[: len(gpu_names)] != gpu_names or any(n not in HOST_ONLY for n in extra):
            raise TypeError(
                f"CUDA kernel {py_func.__name__}{gpu_sig} does not take the arguments of its CPU twin "
                f"{kernel_key(cpu)}{cpu_sig}"
            )
        self.kernel = kernel
        self.cpu = cpu
        self.__signature__ = cpu_sig
        self.__name__ = getattr(cpu, "py_func", cpu).__name__ if cpu is not None else py_func.__name__
        self.__qualname__ = self.__name__
        head = f"CUDA twin of :func:`{kernel_key(cpu)}` (same arguments, device arrays)." if cpu is not None else ""
        self.__doc__ = f"{head}\n\n{py_func.__doc__ or ''}"
        self._nargs = len(gpu_names)
        self._host_only = {n: cpu_sig.parameters[n].default for n in extra}
        self._size_of = size_of
        self._config = config or launch_config

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs or len(args) != self._nargs:
            bound = self.__signature__.bind(*args, **kwargs)
            bound.apply_defaults()
            args = bound.args
            if self._host_only:
                for (name, default), given in zip(self._host_only.items(), args[self._nargs :]):
                    if given is not default and given != default:
                        raise TypeError(f"{self.__name__}: {name} is not taken on the device (host parameters only)")
                args = args[: self._nargs]
        args = tuple(_device_arg(a) for a in args)
        n = self._size_of(args)
        if n == 0:
            return
        blocks, threads = self._config(n)
        self.kernel[blocks, threads](*args)

    def __repr__(self) -> str:
        return f"<CUDA kernel {self.__name__}{self.__signature__}>"


def register(cpu: Any, launcher: Callable[..., None]) -> Callable[..., None]:
    """Record ``launcher`` as the CUDA twin of the CPU kernel ``cpu``."""
    KERNELS[kernel_key(cpu)] = launcher
    return launcher


def elementwise(cpu: Any, size_of: Callable[[tuple], int] | None = None) -> Callable[[Callable], Launcher]:
    """Decorate the Python body of a CUDA kernel: compile it, wrap it as a :class:`Launcher`, register it.

    The body is a grid-stride loop ``for i in range(cuda.grid(1), n, cuda.gridsize(1))``
    doing, per element, what the CPU kernel ``cpu`` does.
    """

    def deco(py_func: Callable) -> Launcher:
        launcher = Launcher(jit(py_func), py_func, cpu, size_of or (lambda args: args[0].size))
        register(cpu, launcher)
        return launcher

    return deco
