"""Flat buffers in GPU memory.

A group's CUDA parameters are packed into a :class:`DeviceFlatBuffer`: the
same layout as a host :class:`~numopt.flat.FlatBuffer`, with ``data``,
``grad`` and every state array allocated on the device (packing is one
device-to-device copy per parameter). Step counts and per-parameter scalar
state stay on the host: they are what ``_update`` computes the per-step
scalars from, so a step launches kernels and never copies arrays between host
and device.

Compact state (``state_dtype='bfloat16'`` or ``'int8'``, :mod:`numopt.lowbit`) lives in
GPU memory too: its stores allocate device arrays for a device buffer, and the
runs pick the CUDA variants of the compact-state loops.

The optimizer classes are not aware of any of this: their ``_update`` calls
``run.pick(kernel)``, and a run of a device buffer picks the CUDA loop that
:mod:`numopt.kernels._generate` builds from the same update rule. An optimizer
can therefore run on the GPU exactly when it is declared with an elementwise
``rule`` (or, for one whose kernels are not elementwise, ``runs_on_cuda``: each
kernel it picks has a CUDA twin registered in :data:`numopt.kernels.cuda.KERNELS`)
and does not override ``_step``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._device import cuda_backend
from .flat import FlatBuffer
from .parameter import Parameter

if TYPE_CHECKING:  # pragma: no cover
    from .optimizer import Optimizer

__all__ = ["DeviceFlatBuffer"]


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
        if type(owner)._step is not Optimizer._step:
            raise NotImplementedError(
                f"{name} cannot update CUDA parameters: it has its own step(), which works on host arrays"
            )
        if type(owner).rule is None and not type(owner).runs_on_cuda:
            raise NotImplementedError(
                f"{name} cannot update CUDA parameters: its update is not an elementwise rule numopt runs on the GPU"
            )
        super().__init__(params, owner)

    # -- array operations on device memory -----------------------------------
    def _new_array(self, size: int, fill: float | None) -> Any:
        if fill is None:
            return self._mem.empty(size, self.dtype)
        return self._mem.full(size, fill, self.dtype)

    def _assign(self, dst: Any, src: Any) -> None:
        if hasattr(src, "dequantize"):  # compact state (numopt.lowbit) loaded as full precision: its values
            src = src.dequantize(dst.dtype)
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
