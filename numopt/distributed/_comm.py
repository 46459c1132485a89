"""MPI plumbing shared by the distributed wrappers: communicators, checks, gradient masks, hooks."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import numpy as np

try:
    from mpi4py import MPI
    from mpi4py.util.dtlib import from_numpy_dtype
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "numopt.distributed needs mpi4py and an MPI library: pip install 'numopt[mpi]' "
        "(mpi4py plus the mpich wheel), or install mpi4py against your system MPI "
        "(see the README, 'Distributed (MPI)')"
    ) from exc

from .._bf16 import is_bfloat16
from ..flat import FlatBuffer

__all__ = [
    "MPI",
    "GradMasks",
    "bind_reduced_grads",
    "check_host_buffers",
    "check_same",
    "flat_signature",
    "get_comm",
    "mpi_type",
    "reduce_loss",
    "shard_bounds",
]


def get_comm(comm: Any) -> Any:
    """``comm``, or ``MPI.COMM_WORLD`` for ``None``; refuses anything but an intracommunicator."""
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Intracomm) or comm == MPI.COMM_NULL:
        raise TypeError(f"comm must be an mpi4py intracommunicator (e.g. MPI.COMM_WORLD), got {comm!r}")
    return comm


def mpi_type(dtype: np.dtype) -> Any:
    """The MPI datatype of a NumPy dtype."""
    if is_bfloat16(np.dtype(dtype)):
        raise TypeError("numopt.distributed does not support bfloat16 parameters yet; use float32 parameters")
    return from_numpy_dtype(np.dtype(dtype))


def _digest(signature: Any) -> int:
    """A 56-bit digest of ``repr(signature)``, the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(repr(signature).encode(), digest_size=7).digest(), "little")


def check_same(comm: Any, signature: Any, what: str) -> None:
    """Raise ``ValueError`` on every rank if ``signature`` is not the same on all ranks.

    One 16-byte ``Allreduce``; only on a mismatch are the signatures gathered, to
    name the ranks that differ. Collective: every rank of ``comm`` must call it.
    """
    if comm.size == 1:
        return
    h = _digest(signature)
    buf = np.array([h, -h], np.int64)
    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.MAX)
    if buf[0] == -buf[1]:
        return
    everyone = comm.allgather(signature)
    differ = [r for r, s in enumerate(everyone) if s != everyone[0]]
    raise ValueError(
        f"{what} differ between ranks: rank 0 has {everyone[0]!r}, rank {differ[0]} has {everyone[differ[0]]!r} "
        f"(ranks {differ} differ from rank 0); every rank must build the same parameter groups, "
        "with the same shapes and dtypes, in the same order"
    )


def check_host_buffers(flats: list[FlatBuffer]) -> None:
    """Refuse flat buffers in GPU memory: the collectives here move host arrays."""
    if any(getattr(f, "is_cuda", False) for f in flats):
        raise NotImplementedError(
            "numopt.distributed works on host (NumPy) parameter buffers; these parameters are CUDA arrays"
        )


def flat_signature(flats: list[list[FlatBuffer]]) -> tuple:
    """The layout of an optimizer's flat buffers: ``(dtype, elements, parameters)`` per buffer, per group."""
    return tuple(tuple((f.dtype.str, f.size, len(f.params)) for f in group) for group in flats)


def shard_bounds(n: int, size: int) -> tuple[list[int], list[int]]:
    """Counts and displacements of ``size`` contiguous shards of ``n`` elements.

    The first ``n % size`` ranks get one element more than the others.
    """
    base, extra = divmod(n, size)
    counts = [base + (1 if r < extra else 0) for r in range(size)]
    displs = [0, *itertools.accumulate(counts)][:size]
    return counts, displs


class GradMasks:
    """Which parameters of each flat buffer have a gradient on this rank, with stale regions zeroed.

    ``FlatBuffer.sync_grads`` copies pending gradient arrays into the flat buffer;
    its result is cached for as long as the buffer's run cache is (no gradient
    was assigned or set to ``None`` since). The gradient slots of parameters
    whose ``grad`` is ``None`` hold stale values: they are zeroed, so that such
    a parameter contributes zeros to the reduction.
    """

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Any, np.ndarray]] = {}

    def local(self, flat: FlatBuffer) -> np.ndarray:
        hit = self._cache.get(id(flat))
        if hit is not None and flat._runs is not None and hit[0] is flat._runs:
            has = hit[1]
        else:
            # runs() syncs pending gradients into the buffer; the run list is rebuilt by
            # FlatBuffer whenever a gradient is assigned or set to None, so it keys the cache.
            runs = flat.runs()
            has = np.fromiter((p._grad is not None for p in flat.params), np.uint8, len(flat.params))
            self._cache[id(flat)] = (runs, has)
        for i in np.flatnonzero(has == 0):
            flat.grad[flat.offsets[i] : flat.offsets[i + 1]] = 0
        return has

    def forget(self) -> None:
        self._cache.clear()


def bind_reduced_grads(flat: FlatBuffer, has_any: np.ndarray) -> None:
    """Give every parameter that has a gradient on some rank its (reduced) slot as ``grad``."""
    for i in np.flatnonzero(has_any):
        p = flat.params[i]
        if p._grad is None:
            p.grad = flat.grad_view(i)


def reduce_loss(comm: Any, loss: Any, average: bool) -> Any:
    """The closure's loss summed (or averaged) over the ranks, when it is a number on every rank.

    A loss that is not a real scalar (``None``, a tuple, ...) on every rank is
    returned as it is; a number on some ranks only raises ``ValueError`` on all.
    """
    if comm.size == 1:
        return loss
    value = None
    if loss is not None:
        try:
            if np.ndim(loss) == 0:
                value = float(loss)
        except (TypeError, ValueError):
            value = None
    buf = np.array([0.0 if value is None else value, 0.0 if value is None else 1.0])
    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    numbers = int(buf[1])
    if numbers == 0:
        return loss
    if numbers != comm.size:
        raise ValueError(
            f"the closure returned a number on {numbers} of {comm.size} ranks and something else on the others"
        )
    return float(buf[0] / comm.size) if average else float(buf[0])
