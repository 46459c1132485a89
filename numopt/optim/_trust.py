"""What the optimizers with per-parameter or global reductions (Lamb, LARS, Prodigy) share: the block tables of
their runs (on the device for a device buffer), the refusal of sparse gradients."""

from __future__ import annotations

import functools
import weakref
from typing import Any

import numpy as np

from .._device import cuda_backend
from ..flat import FlatBuffer, Run
from ..kernels.segments import BlockTable
from ..parameter import SparseGrad


class Segments(BlockTable):
    """A run's :class:`~numopt.kernels.segments.BlockTable`, made from the buffer's offsets.

    For a run of a device buffer, what the CUDA kernels read (``offs``, ``start``, ``owner``, ``matrix``)
    and the scratch (``partials``, ``factor``) live in GPU memory, copied there once; ``first``, which
    only the host reads (to add each parameter's partials), stays on the host.
    """

    __slots__ = ("offsets",)

    def __init__(self, flat: FlatBuffer, run: Run) -> None:
        self.offsets = flat.offsets  # never mutated: a repacked group gets new buffers
        offs = np.asarray(flat.offsets[run.p0 : run.p1 + 1], np.int64) - run.lo
        matrix = np.array([flat.params[i].ndim > 1 for i in range(run.p0, run.p1)], np.bool_)
        super().__init__(offs, flat.dtype, matrix)
        if flat.is_cuda:
            mem = cuda_backend().memory
            self.offs, self.start, self.owner, self.matrix = (
                mem.to_device(x) for x in (self.offs, self.start, self.owner, self.matrix)
            )
            self.partials = mem.empty(self.partials.shape, np.float64)
            self.factor = mem.empty(self.factor.shape, flat.dtype)


class SegmentCache:
    """``Segments`` per (buffer, run), kept while the buffer lives."""

    def __init__(self) -> None:
        self._tables: weakref.WeakKeyDictionary[FlatBuffer, dict[tuple[int, int], Segments]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, flat: FlatBuffer, run: Run) -> Segments:
        runs = self._tables.get(flat)
        if runs is None:
            runs = self._tables[flat] = {}
        seg = runs.get((run.p0, run.p1))
        if seg is None or seg.offsets is not flat.offsets:
            seg = runs[(run.p0, run.p1)] = Segments(flat, run)
        return seg

    def __reduce__(self) -> tuple[Any, ...]:
        return (SegmentCache, ())  # scratch: pickles and copies start empty


class UsesSegments:
    """Mixin: ``self._segments``, the optimizer's :class:`SegmentCache`, made on first use."""

    @functools.cached_property
    def _segments(self) -> SegmentCache:
        return SegmentCache()


def refuse_sparse(name: str, params: Any) -> None:
    """Raise if a parameter of ``params`` has a sparse gradient (these optimizers reduce dense ones)."""
    for p in params:
        if isinstance(p.grad, SparseGrad):
            raise RuntimeError(f"{name} does not support sparse gradients")
