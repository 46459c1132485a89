"""Flat buffers: one contiguous array per dtype of a parameter group.

A :class:`FlatBuffer` owns the storage of some parameters: ``data``, ``grad``
and one array per optimizer state tensor, all 1-D and laid out the same way
(parameter ``i`` occupies ``offsets[i]:offsets[i + 1]``). Parameters, their
gradients and ``optimizer.state[p]`` entries are views into these arrays, so
one kernel call updates a whole group in a single pass over memory.

A *run* is a maximal range of consecutive parameters that all have a gradient
and the same step count: the unit a kernel is called on. With every gradient
present (the usual case) a buffer is a single run, and the list of runs is
cached until a gradient is assigned or set to ``None``.
"""

from __future__ import annotations

import functools
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from ._bf16 import COMPENSATION_KEY, is_bfloat16
from ._device import kernel_for
from ._jit import CHUNK
from .parameter import Parameter, SparseGrad

if TYPE_CHECKING:  # pragma: no cover
    from .optimizer import Optimizer

__all__ = ["FlatBuffer", "Run", "new_flat_buffer"]


class Run:
    """Parameters ``p0:p1`` of a buffer, elements ``lo:hi``, all at step ``step``.

    ``data``, ``grad`` and ``state[name]`` are cached slices of the buffer's arrays.
    """

    __slots__ = (
        "p0",
        "p1",
        "lo",
        "hi",
        "step",
        "data",
        "grad",
        "state",
        "_steps",
        "small",
        "cuda",
        "scale",
        "fmt",
        "blocks",
        "_flat",
        "bf16",
        "ema",
        "ema_weight",
    )

    def __init__(self, flat: FlatBuffer, p0: int, p1: int) -> None:
        self._steps = flat.steps  # not the buffer itself: buffers cache their runs (no reference cycle)
        self.p0, self.p1 = p0, p1
        self.lo, self.hi = flat.offsets[p0], flat.offsets[p1]
        self.step = float(flat.steps[p0])
        self.small = self.hi - self.lo < CHUNK
        self.cuda = flat.is_cuda
        #: bfloat16 parameters and gradients: ``data`` and ``grad`` are their bits (``uint16`` views)
        self.bf16 = flat.bf16
        self.data = flat.data[self.lo : self.hi]
        self.grad = flat.grad[self.lo : self.hi]
        if self.bf16:
            self.data, self.grad = self.data.view(np.uint16), self.grad.view(np.uint16)
        self.state = {k: flat.state_slice(k, p0, p1) for k in flat.state}
        #: the clipping coefficient this step's rule applies to the gradient (set by ``_update_all``)
        self.scale = 1.0
        #: an exponential moving average of the run's parameters that this step's rule updates as it writes
        #: them (``AveragedModel(..., in_step=True)``; set by ``_update_all``), and its weight ``1 - decay``
        self.ema: np.ndarray | None = None
        self.ema_weight = 1.0
        #: the compact form of the run's state ('bfloat16', 'int8'), or None (the buffer's dtype)
        self.fmt = flat.param_format(p0)
        #: for 'int8': the element offsets of the run's quantization blocks (see ``numopt.lowbit``)
        self.blocks = None
        self._flat = None
        if self.fmt is not None or self.bf16:
            self._flat = weakref.ref(flat)
            if self.fmt == "int8":  # (in the buffer's memory, made once per range of parameters)
                self.blocks = next(iter(flat.state.values())).blocks(p0, p1)

    def pick(self, kernel: Any) -> Any:
        """The loop of ``kernel`` to run here: its CUDA loop for a device buffer (generated from its rule, or
        its registered twin, :data:`numopt.kernels.cuda.KERNELS`), else ``kernel`` itself,
        or its thread-free twin (``kernel.serial``) for a run under ``CHUNK`` elements (the loops of
        :mod:`numopt.lowbit` for compact state or bfloat16 parameters); with an average updated inside the
        step (``ema``), that loop with ``ema`` and ``ema_weight`` bound; with a pending clipping coefficient
        (``scale``), with its ``grad_scale`` bound."""
        if self.fmt is not None or self.bf16:
            from .lowbit import pick

            loop = pick(self, kernel)
        elif self.cuda:  # a device buffer exists only for optimizers whose kernels have CUDA loops
            loop = kernel_for(kernel, self.data)
        else:
            loop = getattr(kernel, "serial", kernel) if self.small else kernel
        if self.ema is not None:  # only set for a host run of a class whose step is one call of its rule
            loop = functools.partial(loop, ema=self.ema, ema_weight=self.ema_weight)
        if self.scale == 1.0:
            return loop
        rule = getattr(kernel, "rule", None)
        if rule is None or not rule.scales_grad:
            raise RuntimeError(f"{kernel!r} cannot apply a clipping coefficient: its class must not fuse clipping")
        return functools.partial(loop, grad_scale=self.scale)

    def scratch(self, rows: int) -> np.ndarray:
        """Per-thread scratch rows for the 8-bit loop (kept by the buffer, reused every step)."""
        return self._flat().scratch(rows)

    def part(self, offsets: np.ndarray, a: int, b: int, *state: str) -> list[np.ndarray]:
        """``data``, ``grad`` and the named ``state`` arrays of the run's parameters ``p0 + a`` to ``p0 + b``.

        ``offsets`` are the buffer's parameter offsets; the whole run gives the cached slices.
        """
        arrays = [self.data, self.grad, *[self.state[name] for name in state]]
        if a == 0 and b == self.p1 - self.p0:
            return arrays
        lo, hi = offsets[self.p0 + a] - self.lo, offsets[self.p0 + b] - self.lo
        return [x[lo:hi] for x in arrays]

    def advance(self) -> float:
        """Count one more step for every parameter of the run; return the new count."""
        self.step += 1.0
        self._steps[self.p0 : self.p1] = self.step
        return self.step


class FlatBuffer:
    """Contiguous storage for the parameters of one dtype within one group.

    Packing copies each parameter's current values (and gradient, if any) into
    the buffer once, then rebinds ``p.data`` and ``p.grad`` to views of it.
    """

    def __init__(self, params: list[Parameter], owner: Optimizer) -> None:
        dtype = params[0].dtype
        self.dtype: np.dtype = dtype
        #: bfloat16 parameters (``ml_dtypes.bfloat16``): updated in float32, written back rounded
        self.bf16: bool = is_bfloat16(dtype)
        #: the dtype of the update's math and of full-precision state: float32 for bfloat16 parameters
        self.math_dtype: np.dtype = np.dtype(np.float32) if self.bf16 else dtype
        self.params: list[Parameter] = params
        offsets = [0]
        for p in params:
            offsets.append(offsets[-1] + p.size)
        self.offsets: list[int] = offsets
        self.size: int = offsets[-1]
        self.data = self._new_array(self.size, None)
        self.grad = self._new_array(self.size, 0.0)
        #: per-parameter step counts (float64, like torch's 'step' values)
        self.steps = np.zeros(len(params), np.float64)
        #: name -> 1-D state array with the layout of ``data``
        self.state: dict[str, np.ndarray] = {}
        #: name -> per-parameter scalar state (float64, one entry per parameter), e.g. NAdam's mu_product
        self.scalars: dict[str, np.ndarray] = {}
        #: name -> (offsets, shapes) of state arrays whose entries are not shaped like their parameters
        #: (e.g. Adafactor's row/column factors); a ``None`` shape: that parameter has no such entry
        self.layouts: dict[str, tuple[list[int], list[tuple[int, ...] | None]]] = {}
        self._owner = weakref.ref(owner)
        self._runs: list[Run] | None = None
        #: the optimizer's state spec the cached runs were built for
        self.spec: tuple[tuple[str, float], ...] | None = None
        #: compact state: ``(state_dtype, min_8bit_size, signed)`` with ``signed`` the state names whose
        #: values may be negative (see ``numopt.lowbit``); None: state in the buffer's dtype
        self.state_format: tuple[str, int, frozenset[str]] | None = None
        self._scratch: np.ndarray | None = None
        self._data_views = [self._view(self.data, i) for i in range(len(params))]
        self._grad_views = [self._view(self.grad, i) for i in range(len(params))]
        for i, p in enumerate(params):
            view = self._data_views[i]
            self._assign(view, p._data)  # the one copy made at packing time
            p._data = view
            p._flat = self
            p._index = i
            # p._grad stays as it is: it is copied into the flat buffer at the next step

    # -- pickle / copy.deepcopy ---------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Everything but ``data``, ``grad``, their views, the runs (a cache) and the owner (held weakly).

        ``data`` and the bound gradients are packed again from the parameters (restored
        before the buffer: their state leads nowhere back to it), so a pickle holds the
        values once. The owning optimizer's ``__setstate__`` sets ``_owner`` again.
        """
        state = {
            k: v for k, v in self.__dict__.items() if k not in ("data", "grad", "_data_views", "_grad_views", "_runs")
        }
        del state["_owner"]
        #: which gradients are views of this buffer (the others are pending arrays, or None)
        state["_bound_grads"] = [p._grad is view for p, view in zip(self.params, self._grad_views)]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        bound_grads = state.pop("_bound_grads")
        self.__dict__.update(state)
        self._owner = _no_owner
        self._runs = None
        self.data = self._new_array(self.size, None)
        self.grad = self._new_array(self.size, 0.0)
        self._data_views = [self._view(self.data, i) for i in range(len(self.params))]
        self._grad_views = [self._view(self.grad, i) for i in range(len(self.params))]
        for i, p in enumerate(self.params):
            view = self._data_views[i]
            self._assign(view, p._data)
            p._data = view
            p._flat = self
            p._index = i
            if bound_grads[i]:
                self._assign(self._grad_views[i], p._grad)
                p._grad = self._grad_views[i]

    def release(self) -> None:
        """Unbind the parameters (they keep their current values, in arrays of their own)."""
        for p in self.params:
            if p._flat is self:
                p._data = p._data.copy()
                if isinstance(p._grad, np.ndarray) and np.shares_memory(p._grad, self.grad):
                    p._grad = p._grad.copy()
                p._flat = None
                p._index = -1

    def adopt(self, data: np.ndarray, grad: np.ndarray) -> None:
        """Use existing arrays as this buffer's ``data`` and ``grad`` storage, without copying.

        Both must be 1-D, C-contiguous and writable, with this buffer's size and
        dtype (typically slices of another buffer). The parameters' ``data`` views,
        and ``grad`` views still bound, are rebound to them and read their values
        from them from now on. ``numopt.distributed`` uses it to run an optimizer
        in place on one rank's shard of a larger buffer.
        """
        for what, arr in (("data", data), ("grad", grad)):
            if (
                not isinstance(arr, np.ndarray)
                or arr.shape != (self.size,)
                or arr.dtype != self.dtype
                or not arr.flags.c_contiguous
                or not arr.flags.writeable
            ):
                raise ValueError(
                    f"adopt: {what} must be a writable, C-contiguous 1-D {self.dtype} array of size {self.size}"
                )
        old_grad_views = self._grad_views
        self.data, self.grad = data, grad
        self._data_views = [self._view(data, i) for i in range(len(self.params))]
        self._grad_views = [self._view(grad, i) for i in range(len(self.params))]
        for i, p in enumerate(self.params):
            p._data = self._data_views[i]
            if p._grad is old_grad_views[i]:
                p._grad = self._grad_views[i]
        self._runs = None  # runs cache slices of the old arrays

    # -- array operations (a DeviceFlatBuffer does these in GPU memory) -------
    #: whether the arrays live in GPU memory (see ``numopt._cuda_flat.DeviceFlatBuffer``)
    is_cuda = False

    def _new_array(self, size: int, fill: float | None) -> np.ndarray:
        """A new 1-D array of this buffer's dtype: filled with ``fill``, or uninitialized for ``None``."""
        if fill is None:
            return np.empty(size, self.dtype)
        return np.full(size, fill, self.dtype) if fill else np.zeros(size, self.dtype)

    def _assign(self, dst: np.ndarray, src: Any) -> None:
        """Copy ``src`` (same shape and dtype) into ``dst``, a view of this buffer."""
        np.copyto(dst, src)

    def _fill(self, arr: np.ndarray, value: float) -> None:
        """Set every element of ``arr``, a view of this buffer, to ``value``."""
        arr.fill(value)

    # -- views --------------------------------------------------------------
    def _view(self, arr: np.ndarray, i: int) -> np.ndarray:
        return arr[self.offsets[i] : self.offsets[i + 1]].reshape(self.params[i].shape)

    def data_view(self, i: int) -> np.ndarray:
        return self._data_views[i]

    def grad_view(self, i: int) -> np.ndarray:
        return self._grad_views[i]

    def state_view(self, name: str, i: int) -> np.ndarray:
        arr = self.state[name]
        if _is_compact(arr):  # compact state: its readable view (numopt.lowbit)
            return arr.view(i)
        layout = self.layouts.get(name)
        if layout is None:
            return self._view(self.state[name], i)
        offsets, shapes = layout
        return self.state[name][offsets[i] : offsets[i + 1]].reshape(shapes[i])

    def state_slice(self, name: str, p0: int, p1: int) -> np.ndarray:
        """The 1-D part of state array ``name`` that belongs to parameters ``p0:p1``."""
        arr = self.state[name]
        if _is_compact(arr):  # compact state (numopt.lowbit)
            return arr.slice(p0, p1)
        offsets = self.layouts[name][0] if name in self.layouts else self.offsets
        return arr[offsets[p0] : offsets[p1]]

    # -- compact state (numopt.lowbit) ------------------------------------------
    def param_format(self, i: int) -> str | None:
        """The compact form of parameter ``i``'s state ('bfloat16', 'int8'), or None (the buffer's dtype)."""
        if self.state_format is None or not self.state:
            return None
        store = next(iter(self.state.values()))
        return self.state_format[0] if store.quantized[i] else None

    def reset_state(self, name: str, i: int, fill: float) -> None:
        """Set parameter ``i``'s entry of state ``name`` to ``fill``."""
        arr = self.state[name]
        if not _is_compact(arr):
            self._fill(self.state_slice(name, i, i + 1), fill)
        else:
            arr.reset(i, fill)

    def assign_state(self, name: str, i: int, value: Any) -> None:
        """Set parameter ``i``'s entry of state ``name`` from ``value`` (converted to its storage)."""
        arr = self.state[name]
        if not _is_compact(arr):
            self._assign(self.state_view(name, i), value)
        else:
            arr.assign(i, value)

    def scratch(self, rows: int) -> np.ndarray:
        """Per-thread scratch rows for the 8-bit loop, allocated once."""
        if self._scratch is None or self._scratch.shape[1] < rows:
            from .lowbit import new_scratch

            self._scratch = new_scratch(self.math_dtype, rows)
        return self._scratch

    def step_view(self, i: int) -> np.ndarray:
        """Parameter ``i``'s step count as a writable 0-d view."""
        return self.steps[i : i + 1].reshape(())

    @property
    def owner(self) -> Optimizer | None:
        return self._owner()

    # -- state --------------------------------------------------------------
    def ensure_state(
        self, name: str, fill: float = 0.0, shapes: list[tuple[int, ...] | None] | None = None
    ) -> np.ndarray:
        """Allocate state array ``name`` (filled with ``fill``) if it does not exist yet.

        ``shapes`` gives each parameter's entry a shape of its own (``None``: no
        entry) instead of the parameter's shape; see :meth:`state_shape`.
        """
        arr = self.state.get(name)
        if arr is None:
            size = self.size
            if shapes is not None:
                offsets = [0]
                for shape in shapes:
                    offsets.append(offsets[-1] + (0 if shape is None else int(np.prod(shape, dtype=np.int64))))
                self.layouts[name] = (offsets, list(shapes))
                size = offsets[-1]
            if name == COMPENSATION_KEY:  # a bfloat16 parameter's Kahan compensation: bfloat16, like it
                arr = self._new_array(size, fill)
            elif self.state_format is not None and shapes is None:
                from .lowbit import StateStore

                fmt, min_size, signed = self.state_format
                arr = StateStore(self, name, fill, fmt, name in signed, min_size)
            elif self.bf16:  # the state of bfloat16 parameters: float32
                arr = np.full(size, fill, np.float32)
            else:
                arr = self._new_array(size, fill)
            self.state[name] = arr
            self._runs = None  # runs cache slices of the state arrays
        return arr

    def ensure_scalar(self, name: str, fill: float = 0.0) -> np.ndarray:
        """Allocate per-parameter scalar state ``name`` (float64) if it does not exist yet."""
        arr = self.scalars.get(name)
        if arr is None:
            arr = np.full(len(self.params), fill, np.float64)
            self.scalars[name] = arr
        return arr

    def scalar_view(self, name: str, i: int) -> np.ndarray:
        """Parameter ``i``'s scalar state ``name`` as a writable 0-d view."""
        return self.scalars[name][i : i + 1].reshape(())

    def state_shape(self, name: str, i: int) -> tuple[int, ...] | None:
        """Shape of parameter ``i``'s entry of state ``name`` (``None``: it has none)."""
        layout = self.layouts.get(name)
        return self.params[i].shape if layout is None else layout[1][i]

    # -- gradients ----------------------------------------------------------
    def mark_dirty(self) -> None:
        self._runs = None

    def sync_grads(self) -> list[bool]:
        """Copy pending gradient arrays into the flat buffer; return who has a gradient."""
        has = []
        keep_sparse = getattr(self.owner, "_sparse_grads", False)
        for i, p in enumerate(self.params):
            g = p._grad
            if g is None:
                has.append(False)
                continue
            if keep_sparse and isinstance(g, SparseGrad):
                has.append(True)  # the optimizer reads the rows as they are (SparseAdam)
                continue
            view = self._grad_views[i]
            if g is not view:
                if isinstance(g, SparseGrad):
                    g.to_dense(view)
                else:
                    self._assign(view, g)
                p._grad = view
            has.append(True)
        return has

    def zero_grad(self, set_to_none: bool) -> None:
        if set_to_none:
            for p in self.params:
                p._grad = None
        else:
            self.sync_grads()
            self._fill(self.grad, 0.0)
            for p in self.params:
                if isinstance(p._grad, SparseGrad):  # kept sparse: zeroing leaves no rows, as in torch
                    p._grad = SparseGrad(np.empty(0, np.int64), np.empty((0, *p.shape[1:]), p.dtype))
        self._runs = None

    def runs(self) -> list[Run]:
        """The runs to update this step (cached while no gradient changed)."""
        if self._runs is not None:
            return self._runs
        has = self.sync_grads()
        runs = []
        n = len(self.params)
        i = 0
        steps = self.steps
        while i < n:
            if not has[i]:
                i += 1
                continue
            j = i + 1
            fmt = self.param_format(i)  # compact state: a run's parameters share one form
            while j < n and has[j] and steps[j] == steps[i] and (fmt is None) == (self.param_format(j) is None):
                j += 1
            runs.append(Run(self, i, j))
            i = j
        self._runs = runs
        return runs

    def stepped(self, i: int) -> bool:
        return bool(self.steps[i] > 0)


def _is_compact(arr: Any) -> bool:
    """Whether a state entry is compact state (a ``numopt.lowbit.StateStore``), not a host or device array."""
    return getattr(arr, "is_compact_state", False)


def _no_owner() -> None:
    """The owner of a buffer restored without its optimizer (its ``_owner`` until the optimizer sets it)."""
    return None


def new_flat_buffer(params: list[Parameter], owner: Optimizer) -> FlatBuffer:
    """A flat buffer for ``params`` (one dtype; all on the host, or all CUDA arrays: then in GPU memory)."""
    if params[0].is_cuda:
        from ._cuda_flat import DeviceFlatBuffer

        return DeviceFlatBuffer(params, owner)
    return FlatBuffer(params, owner)
