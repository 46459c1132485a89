"""What the benchmark runs: the optimizers and their memory streams, the workloads, the roofline kernels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit, prange

from .._jit import CACHE, CHUNK, kernel

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


@kernel
def _stream_1(ro, a):
    n = a.size
    for i in prange(n):
        a[i] = a[i] + ro[i]


@kernel
def _stream_2(ro, a, b):
    n = a.size
    for i in prange(n):
        g = ro[i]
        a[i] = a[i] + g
        b[i] = b[i] + g


@kernel
def _stream_3(ro, a, b, d):
    n = a.size
    for i in prange(n):
        g = ro[i]
        a[i] = a[i] + g
        b[i] = b[i] + g
        d[i] = d[i] + g


@kernel
def _stream_4(ro, a, b, d, e):
    n = a.size
    for i in prange(n):
        g = ro[i]
        a[i] = a[i] + g
        b[i] = b[i] + g
        d[i] = d[i] + g
        e[i] = e[i] + g


@kernel
def _stream_5(ro, a, b, d, e, f):
    n = a.size
    for i in prange(n):
        g = ro[i]
        a[i] = a[i] + g
        b[i] = b[i] + g
        d[i] = d[i] + g
        e[i] = e[i] + g
        f[i] = f[i] + g


_STREAMS = {1: _stream_1, 2: _stream_2, 3: _stream_3, 4: _stream_4, 5: _stream_5}


@kernel
def _reads_2(a, r, s):
    n = a.size
    for i in prange(n):
        a[i] = a[i] + r[i] + s[i]


@kernel
def _reads_3(a, r, s, u):
    n = a.size
    for i in prange(n):
        a[i] = a[i] + r[i] + s[i] + u[i]


@kernel
def _reads_4(a, r, s, u, v):
    n = a.size
    for i in prange(n):
        a[i] = a[i] + r[i] + s[i] + u[i] + v[i]


_READS = {1: _stream_1, 2: _reads_2, 3: _reads_3, 4: _reads_4}


def one_pass_roofline(n: int, reads: int) -> tuple[Callable[[], Any], int]:
    """A no-math pass that updates one float32 stream of ``n`` from ``reads`` read-only float32 streams
    (1 to 4), and its bytes: the roofline of a step whose state moves fewer bytes than float32 (compact
    state), matched by byte count. Arrays written before timing (see :func:`roofline_kernel`)."""
    if reads not in _READS:
        raise ValueError(f"no one-pass roofline kernel for {reads} read-only streams")
    arrays = [np.full(n, 1e-3 if i else 1.0, np.float32) for i in range(reads + 1)]
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
