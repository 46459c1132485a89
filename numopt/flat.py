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

import weakref
from typing import TYPE_CHECKING

import numpy as np

from .parameter import Parameter, SparseGrad

if TYPE_CHECKING:  # pragma: no cover
    from .optimizer import Optimizer

__all__ = ["FlatBuffer", "Run"]


class Run:
    """Parameters ``p0:p1`` of a buffer, elements ``lo:hi``, all at step ``step``.

    ``data``, ``grad`` and ``state[name]`` are cached slices of the buffer's arrays.
    """

    __slots__ = ("p0", "p1", "lo", "hi", "step", "data", "grad", "state", "_flat")

    def __init__(self, flat: FlatBuffer, p0: int, p1: int) -> None:
        self._flat = flat
        self.p0, self.p1 = p0, p1
        self.lo, self.hi = flat.offsets[p0], flat.offsets[p1]
        self.step = float(flat.steps[p0])
        self.data = flat.data[self.lo : self.hi]
        self.grad = flat.grad[self.lo : self.hi]
        self.state = {k: v[self.lo : self.hi] for k, v in flat.state.items()}

    def advance(self) -> float:
        """Count one more step for every parameter of the run; return the new count."""
        self.step += 1.0
        self._flat.steps[self.p0 : self.p1] = self.step
        return self.step


class FlatBuffer:
    """Contiguous storage for the parameters of one dtype within one group.

    Packing copies each parameter's current values (and gradient, if any) into
    the buffer once, then rebinds ``p.data`` and ``p.grad`` to views of it.
    """

    def __init__(self, params: list[Parameter], owner: Optimizer) -> None:
        dtype = params[0].dtype
        self.dtype: np.dtype = dtype
        self.params: list[Parameter] = params
        offsets = [0]
        for p in params:
            offsets.append(offsets[-1] + p.size)
        self.offsets: list[int] = offsets
        self.size: int = offsets[-1]
        self.data = np.empty(self.size, dtype)
        self.grad = np.zeros(self.size, dtype)
        #: per-parameter step counts (float64, like torch's 'step' values)
        self.steps = np.zeros(len(params), np.float64)
        #: name -> 1-D state array with the layout of ``data``
        self.state: dict[str, np.ndarray] = {}
        #: name -> per-parameter scalar state (float64, one entry per parameter), e.g. NAdam's mu_product
        self.scalars: dict[str, np.ndarray] = {}
        self._owner = weakref.ref(owner)
        self._runs: list[Run] | None = None
        #: the optimizer's state spec the cached runs were built for
        self.spec: tuple[tuple[str, float], ...] | None = None
        self._data_views = [self._view(self.data, i) for i in range(len(params))]
        self._grad_views = [self._view(self.grad, i) for i in range(len(params))]
        for i, p in enumerate(params):
            view = self._data_views[i]
            view[...] = p._data  # the one copy made at packing time
            p._data = view
            p._flat = self
            p._index = i
            # p._grad stays as it is: it is copied into the flat buffer at the next step

    def release(self) -> None:
        """Unbind the parameters (they keep their current values, in arrays of their own)."""
        for p in self.params:
            if p._flat is self:
                p._data = p._data.copy()
                if isinstance(p._grad, np.ndarray) and np.shares_memory(p._grad, self.grad):
                    p._grad = p._grad.copy()
                p._flat = None
                p._index = -1

    # -- views --------------------------------------------------------------
    def _view(self, arr: np.ndarray, i: int) -> np.ndarray:
        return arr[self.offsets[i] : self.offsets[i + 1]].reshape(self.params[i].shape)

    def data_view(self, i: int) -> np.ndarray:
        return self._data_views[i]

    def grad_view(self, i: int) -> np.ndarray:
        return self._grad_views[i]

    def state_view(self, name: str, i: int) -> np.ndarray:
        return self._view(self.state[name], i)

    def step_view(self, i: int) -> np.ndarray:
        """Parameter ``i``'s step count as a writable 0-d view."""
        return self.steps[i : i + 1].reshape(())

    @property
    def owner(self) -> Optimizer | None:
        return self._owner()

    # -- state --------------------------------------------------------------
    def ensure_state(self, name: str, fill: float = 0.0) -> np.ndarray:
        """Allocate state array ``name`` (filled with ``fill``) if it does not exist yet."""
        arr = self.state.get(name)
        if arr is None:
            arr = np.full(self.size, fill, self.dtype) if fill else np.zeros(self.size, self.dtype)
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

    # -- gradients ----------------------------------------------------------
    def mark_dirty(self) -> None:
        self._runs = None

    def sync_grads(self) -> list[bool]:
        """Copy pending gradient arrays into the flat buffer; return who has a gradient."""
        has = []
        for i, p in enumerate(self.params):
            g = p._grad
            if g is None:
                has.append(False)
                continue
            view = self._grad_views[i]
            if g is not view:
                if isinstance(g, SparseGrad):
                    g.to_dense(view)
                else:
                    np.copyto(view, g)
                p._grad = view
            has.append(True)
        return has

    def zero_grad(self, set_to_none: bool) -> None:
        if set_to_none:
            for p in self.params:
                p._grad = None
        else:
            self.sync_grads()
            self.grad.fill(0)
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
            while j < n and has[j] and steps[j] == steps[i]:
                j += 1
            runs.append(Run(self, i, j))
            i = j
        self._runs = runs
        return runs

    def stepped(self, i: int) -> bool:
        return bool(self.steps[i] > 0)
