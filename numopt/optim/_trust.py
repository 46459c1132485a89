"""What the trust-ratio optimizers (Lamb, LARS) share: the block tables of their runs, the CUDA refusal."""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from .._jit import CHUNK
from ..flat import FlatBuffer, Run
from ..kernels.segments import block_table
from ..parameter import Parameter, SparseGrad


class Segments:
    """A run's block table (:func:`numopt.kernels.segments.block_table`) and the per-step scratch its kernels take."""

    __slots__ = ("offsets", "offs", "first", "start", "owner", "matrix", "partials", "factor")

    def __init__(self, flat: FlatBuffer, run: Run) -> None:
        self.offsets = flat.offsets  # never mutated: a repacked group gets new buffers
        self.offs = np.asarray(flat.offsets[run.p0 : run.p1 + 1], np.int64) - run.lo
        self.first, self.start, self.owner = block_table(self.offs, CHUNK)
        self.matrix = np.array([flat.params[i].ndim > 1 for i in range(run.p0, run.p1)], np.bool_)
        self.partials = np.empty((2, self.start.size), np.float64)
        self.factor = np.empty(run.p1 - run.p0, flat.dtype)


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


def refuse_device_params(name: str, param_group: Any) -> None:
    """Raise if ``param_group`` holds a CUDA parameter: these optimizers' kernels run on the host only."""
    raw = param_group.get("params", ()) if isinstance(param_group, dict) else ()
    items = [raw] if isinstance(raw, Parameter) else raw if isinstance(raw, (list, tuple)) else ()
    for item in items:
        p = item[1] if isinstance(item, tuple) and len(item) == 2 else item
        if isinstance(p, Parameter) and getattr(p, "is_cuda", False):
            raise TypeError(f"{name} works on host (NumPy) parameters; CUDA parameters are not supported")


def refuse_sparse(name: str, params: Any) -> None:
    for p in params:
        if isinstance(p.grad, SparseGrad):
            raise RuntimeError(f"{name} does not support sparse gradients")
