"""The CUDA side of the steps with per-parameter or global reductions (Lamb, LARS, Prodigy, segment sums).

Those steps are written once (:func:`numopt.kernels._segmented.segmented`) as passes over a
run's block table with host arithmetic between them. Here is what running them on a GPU takes:
the :data:`DEVICE` backend launches each pass's CUDA loop (generated from the same per-element
piece as its CPU loops; :meth:`~numopt.kernels._segmented.BlockPass.cuda`), one CUDA block per
table block, grid-stride past :data:`MAX_BLOCKS`, and copies the float64 partials (two per block)
and the per-parameter scalars between host and device, never an array of the parameters' size.
Each step's CUDA twin is registered in :data:`~numopt.kernels.cuda._launch.KERNELS` under its CPU
kernel's name.

The partials equal the CPU's up to float64 rounding (the additions within a block are grouped
differently: each thread sums a strided share, the threads' sums are added in a fixed tree order);
norms, ratios and float32 sums formed from them then match the CPU's except when that difference
crosses a rounding boundary of the arrays' dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from .. import lamb, lars, prodigy
from .. import segments as _segments
from .._segmented import BlockPass
from ._launch import SIM_THREADS, SIMULATOR, _device_arg, register
from .clip import RED_THREADS

__all__ = ["DEVICE", "MAX_BLOCKS", "block_sum", "launch"]

#: the most CUDA blocks one launch uses; past that, blocks loop over the table's blocks (grid-stride)
MAX_BLOCKS: int = 4096


@cuda.jit(device=True)
def block_sum(shared, acc):
    """The sum of every thread's ``acc`` (float64), added in a fixed tree order; every thread gets it.

    ``shared`` holds at least ``blockDim.x`` float64 (a power of two). Every thread of the block must call it.
    """
    t = cuda.threadIdx.x
    shared[t] = acc
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if t < s:
            shared[t] = shared[t] + shared[t + s]
        cuda.syncthreads()
        s //= 2
    total = shared[0]
    cuda.syncthreads()  # before the next call writes ``shared`` again
    return total


def launch(block_pass: BlockPass, *args: Any) -> None:
    """Run ``block_pass``'s CUDA loop with its CPU loop's arguments (device arrays; an empty host
    placeholder becomes an empty device array); nothing for a table without blocks."""
    nb = args[len(block_pass.arrays) + 1].size  # the table's ``start``
    if nb:
        threads = SIM_THREADS if SIMULATOR else RED_THREADS
        block_pass.cuda()[min(nb, MAX_BLOCKS), threads](*(_device_arg(a) for a in args))


_SCRATCH: dict[tuple[tuple[int, ...], np.dtype], np.ndarray] = {}


class _Device:
    """The CUDA backend of a segmented step (see :class:`numopt.kernels._segmented._Host` for the protocol)."""

    def run(self, block_pass: BlockPass, *args: Any) -> None:
        launch(block_pass, *args)

    def scratch(self, a: Any) -> np.ndarray:
        """A host array of ``a``'s shape and dtype (shared by shape and dtype: overwritten by each user)."""
        key = (tuple(a.shape), np.dtype(a.dtype))
        host = _SCRATCH.get(key)
        if host is None:
            host = _SCRATCH[key] = np.empty(key[0], key[1])
        return host

    def to_host(self, a: Any) -> np.ndarray:
        host = self.scratch(a)
        if a.size:
            a.copy_to_host(host)
        return host

    def send(self, host: np.ndarray, a: Any) -> None:
        if host.size:
            a.copy_to_device(host)


#: the backend the CUDA twins run their step with
DEVICE = _Device()

for _step in (_segments.segment_sum_squares, lamb.lamb_update, lars.lars_update, prodigy.prodigy_reduce):
    register(_step, _step.on_cuda)
