"""What the benchmark runs: the optimizers and their memory streams, the workloads, the roofline kernels."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit, prange

from .._jit import CACHE, CHUNK, kernel
from ..kernels._generate import _source_file

# -- optimizers -------------------------------------------------------------------------------------


def algorithms() -> dict[str, tuple[dict[str, Any], int, int]]:
    """optimizer name -> (constructor kwargs, streams updated in place, streams only read).

    Derived from the optimizer registry: every class declared with an elementwise
    ``rule`` and ``bench_kwargs`` takes part, with its memory pattern from
    ``bench_streams()``.
    """
    from ..optimizer import registered

    found: dict[str, tuple[dict[str, Any], int, int]] = {}
    for cls in registered(elementwise=True):
        if cls.bench_kwargs is not None:
            updated, read_only = cls.bench_streams()
            found[cls.__name__] = (dict(cls.bench_kwargs), updated, read_only)
    return found


def stream_bytes(n: int, rw: int, ro: int = 1) -> int:
    """Bytes one pass moves over ``rw`` read-write and ``ro`` read-only float32 streams of ``n`` elements."""
    return n * 4 * (2 * rw + ro)


# -- workloads --------------------------------------------------------------------------------------


def gpt_like_shapes(layers: int = 12, d: int = 384, vocab: int = 16384, ctx: int = 512) -> list[tuple[int, ...]]:
    """A GPT-2-shaped model: 148 tensors, ~27.8M parameters with the defaults."""
    shapes: list[tuple[int, ...]] = [(vocab, d), (ctx, d)]
    for _ in range(layers):
        shapes += [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,)]  # ln1, attention
        shapes += [(d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]  # ln2, MLP
    shapes += [(d,), (d,)]  # final layer norm
    return shapes


TINY_SHAPES: list[tuple[int, ...]] = [(16, 24), (24,), (24, 16), (16,), (16, 8), (8,), (8, 8), (8,), (8, 4), (4,)]


@dataclass
class Workload:
    name: str
    shapes: list[tuple[int, ...]]

    @property
    def size(self) -> int:
        return int(sum(np.prod(s, dtype=np.int64) for s in self.shapes))


def workloads(sizes: list[int], model: bool = True, tiny: bool = True) -> list[Workload]:
    out = [Workload(f"flat {n:.0e}".replace("e+0", "e"), [(n,)]) for n in sizes]
    if model:
        out.append(Workload("gpt-like 148 tensors", gpt_like_shapes()))
    if tiny:
        out.append(Workload("tiny 10 tensors", TINY_SHAPES))
    return out


# -- roofline kernels: the optimizer's streams with no math ----------------------------------------


def _no_math_pass(updated: int, read: int) -> Any:
    """A parallel loop with an optimizer's memory streams and no math: each of ``updated`` float32 arrays
    gets the sum of ``read`` read-only ones added, one pass. Arguments ``(reads..., updated...)``. Generated
    as source (compiled from a file, so Numba's cache keeps it) for any pair of counts."""
    name = f"stream_{updated}_{read}"
    reads, outs = [f"r{k}" for k in range(read)], [f"u{k}" for k in range(updated)]
    lines = [f"def {name}({', '.join(reads + outs)}):", "    for i in prange(u0.size):"]
    lines.append(f"        g = {' + '.join(f'{r}[i]' for r in reads)}")
    lines += [f"        {u}[i] = {u}[i] + g" for u in outs]
    src = "\n".join(lines) + "\n"
    namespace: dict[str, Any] = {"__name__": __name__, "prange": prange}
    exec(compile(src, _source_file(name, src, sys.modules[__name__]), "exec"), namespace)  # noqa: S102
    return kernel(namespace[name], twin=False)


#: the roofline loops of the optimizers' patterns: ``rw`` arrays updated from one read-only array
_STREAMS = {rw: _no_math_pass(rw, 1) for rw in range(1, 6)}
#: the one-pass roofline loops of compact state and bfloat16 parameters: one array updated from ``reads``
#: read-only arrays
_READS = {reads: _no_math_pass(1, reads) for reads in range(1, 7)}


def one_pass_roofline(n: int, reads: int) -> tuple[Callable[[], Any], int]:
    """A no-math pass that updates one float32 stream of ``n`` from ``reads`` read-only float32 streams
    (1 to 6), and its bytes: the roofline of a step that moves other than float32 streams (compact
    state, bfloat16 parameters), matched by byte count. Arrays written before timing (see :func:`roofline_kernel`)."""
    if reads not in _READS:
        raise ValueError(f"no one-pass roofline kernel for {reads} read-only streams")
    arrays = [np.full(n, 1e-3 if i < reads else 1.0, np.float32) for i in range(reads + 1)]
    fn = _READS[reads]
    fn(*arrays)  # compile
    return (lambda: fn(*arrays)), stream_bytes(n, 1, reads)


@njit(parallel=True, cache=CACHE, nogil=True, fastmath={"reassoc"})
def _read(ro):
    """One read-only pass (a float32 sum per chunk, vectorized: reassociation allowed here), the
    extra read of a clipped step's norm pass."""
    n = ro.size
    total = 0.0
    for c in prange((n + CHUNK - 1) // CHUNK):
        x = ro[c * CHUNK : min(n, c * CHUNK + CHUNK)]  # indices from 0: the loop vectorizes
        s = ro.dtype.type(0)
        for i in range(x.size):
            s += x[i]
        total += s
    return total


def roofline_kernel(n: int, rw: int, ro: int = 1) -> tuple[Callable[[], Any], int]:
    """A no-math pass over ``rw`` read-write and ``ro`` (1, or 2: one more read pass before) read-only
    float32 streams of ``n``, and its bytes.

    Every array is written before it is timed: an untouched ``np.zeros`` array
    reads from the kernel's shared zero page, which sits in cache, and a
    "roofline" with such a stream measured 15-25% above what any kernel that
    reads real data can reach.
    """
    arrays = [np.full(n, 1e-3 if i == 0 else 1.0, np.float32) for i in range(rw + 1)]
    fn = _STREAMS[rw]
    fn(*arrays)  # compile
    if ro == 1:
        return (lambda: fn(*arrays)), stream_bytes(n, rw, ro)
    if ro != 2:
        raise ValueError(f"no roofline kernel for {ro} read-only streams")
    _read(arrays[0])  # compile

    def read_then_stream() -> None:  # a clipped step: the norm's read pass, then the step's streams
        _read(arrays[0])
        fn(*arrays)

    return read_then_stream, stream_bytes(n, rw, ro)
