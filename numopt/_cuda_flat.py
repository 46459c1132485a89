"""Flat buffers in GPU memory, and running an optimizer's update rule on them.

A group's CUDA parameters are packed into a :class:`DeviceFlatBuffer`: the
same layout as a host :class:`~numopt.flat.FlatBuffer`, with ``data``,
``grad`` and every state array allocated on the device (packing is one
device-to-device copy per parameter). Step counts and per-parameter scalar
state stay on the host: they are what ``_update`` computes the per-step
scalars from, so a step launches kernels and never copies arrays between host
and device.

The optimizer classes are not aware of any of this. Their ``_update`` calls
CPU kernels by name (``adam_step(run.data, ...)``); for a device buffer,
:func:`cuda_update` gives a copy of that function whose global names for
numopt kernels are bound to the CUDA twins from
:data:`numopt.kernels.cuda.KERNELS` instead. The rule for an optimizer to
run on the GPU is therefore: ``_update`` calls its kernels directly (not
through a helper function), each of them has a CUDA twin, and the class does
not override ``step``.
"""

from __future__ import annotations

import types
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ._device import cuda_backend
from .flat import FlatBuffer, Run
from .parameter import Parameter

if TYPE_CHECKING:  # pragma: no cover
    from .optimizer import Optimizer

__all__ = ["DeviceFlatBuffer", "cuda_update"]

_KERNEL_PACKAGE = "numopt.kernels."
_REBOUND: weakref.WeakKeyDictionary[Callable, Callable] = weakref.WeakKeyDictionary()


def _names(code: types.CodeType) -> Iterator[str]:
    """Global names ``code`` and the functions nested in it (comprehensions, lambdas) may load."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def _cpu_kernel_key(obj: Any) -> str | None:
    """The registry key if ``obj`` is a numopt CPU kernel (a Numba dispatcher), else ``None``."""
    fn = getattr(obj, "py_func", None)
    module = getattr(fn, "__module__", None) or ""
    if not module.startswith(_KERNEL_PACKAGE) or module.startswith(_KERNEL_PACKAGE + "cuda"):
        return None
    return f"{module}.{fn.__qualname__}"


def cuda_update(func: Callable, owner_name: str) -> Callable:
    """``func`` (an ``_update`` function) with the numopt kernels it calls bound to their CUDA twins.

    The copy shares ``func``'s code, defaults and closure; only the globals it
    sees differ, so the arithmetic on the host (bias corrections, step
    counts) is exactly the CPU path's. Raises ``NotImplementedError`` if a
    kernel has no CUDA twin or ``func`` calls none.
    """
    rebound = _REBOUND.get(func)
    if rebound is not None:
        return rebound
    kernels = cuda_backend().KERNELS
    swapped: dict[str, Any] = {}
    for name in dict.fromkeys(_names(func.__code__)):
        key = _cpu_kernel_key(func.__globals__.get(name))
        if key is None:
            continue
        if key not in kernels:
            raise NotImplementedError(f"{owner_name} cannot update CUDA parameters: {key} has no CUDA kernel yet")
        swapped[name] = kernels[key]
    if not swapped:
        raise NotImplementedError(
            f"{owner_name} cannot update CUDA parameters: its update calls no kernel numopt can run on the GPU"
        )
    rebound = types.FunctionType(
        func.__code__, {**func.__globals__, **swapped}, func.__name__, func.__defaults__, func.__closure__
    )
    rebound.__kwdefaults__ = func.__kwdefaults__
    rebound.__qualname__ = func.__qualname__
    rebound.__doc__ = func.__doc__
    _REBOUND[func] = rebound
    return rebound


class DeviceFlatBuffer(FlatBuffer):
    """A :class:`~numopt.flat.FlatBuffer` whose arrays live in GPU memory.

    Created by the optimizer for the CUDA parameters of a group (one per
    dtype). Raises ``NotImplementedError`` before packing anything if the
    optimizer cannot run on the GPU.
    """

    is_cuda = True

    def __init__(self, params: list[Parameter], owner: Optimizer) -> None:
        self._mem = cuda_backend().memory
        from .optimizer import Optimizer

        name = type(owner).__name__
        if type(owner).step is not Optimizer.step:
            raise NotImplementedError(
                f"{name} cannot update CUDA parameters: it has its own step(), which works on host arrays"
            )
        cuda_update(type(owner)._update, name)  # fail before packing anything
        super().__init__(params, owner)

    # -- array operations on device memory -----------------------------------
    def _new_array(self, size: int, fill: float | None) -> Any:
        if fill is None:
            return self._mem.empty(size, self.dtype)
        return self._mem.full(size, fill, self.dtype)

    def _assign(self, dst: Any, src: Any) -> None:
        self._mem.copy_into(dst, src)

    def _fill(self, arr: Any, value: float) -> None:
        self._mem.fill_(arr, value)

    def release(self) -> None:
        """Unbind the parameters; each keeps its values in a device array of its own."""
        for i, p in enumerate(self.params):
            if p._flat is self:
                p._data = self._mem.detached(p._data)
                if p._grad is self._grad_views[i]:
                    p._grad = self._mem.detached(p._grad)
                p._flat = None
                p._index = -1

    def bind_update(self, update: Callable[[dict[str, Any], FlatBuffer, Run], None]) -> Callable:
        """``update`` (a bound ``_update``) running the CUDA twins of its kernels."""
        owner = update.__self__
        return types.MethodType(cuda_update(update.__func__, type(owner).__name__), owner)
