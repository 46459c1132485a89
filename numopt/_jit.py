"""Numba compile settings for every numopt kernel, kept in one place.

Environment variables
---------------------
NUMOPT_CACHE
    ``1`` (default) stores compiled kernels on disk so a second process pays no
    JIT cost; ``0`` compiles afresh in every process.
NUMOPT_PARALLEL_THRESHOLD
    The array size from which the size-aware kernels of :mod:`numopt.functional`
    (``adam``, ``sgd``, ...) run their parallel loop; smaller arrays run the
    thread-free loop. Read once, at import; the default, ``PARALLEL_THRESHOLD``,
    was measured on a 2-core machine (see that constant).

``fastmath`` stays off: torch parity and NaN/Inf propagation depend on IEEE
semantics, and it measured no faster on our memory-bound loops.

``error_model="numpy"``: a float division by zero gives ``inf``/``nan`` as in
NumPy and torch, instead of Numba's default Python model, which tests every
division and raises ``ZeroDivisionError``. That test also kept LLVM from
vectorizing a serial loop (the thread-free twins ran 6-14x slower than a
vectorized loop); parallel loops already compile with the NumPy model.
"""

from __future__ import annotations

import os
import types

from numba import njit

__all__ = ["CACHE", "CHUNK", "JIT_OPTIONS", "PARALLEL_THRESHOLD", "kernel", "serial_kernel"]

CACHE: bool = os.environ.get("NUMOPT_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")

#: Elements per partial result in reductions (norms), and the size under which
#: kernels with a serial twin skip the parallel launch.
CHUNK: int = 16384


def _threshold(default: int) -> int:
    raw = os.environ.get("NUMOPT_PARALLEL_THRESHOLD", "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"NUMOPT_PARALLEL_THRESHOLD must be a non-negative integer, got {raw!r}")
    return value


#: Array size from which the size-aware functional kernels (``numopt.functional.<rule>``) take
#: their parallel loop (``NUMOPT_PARALLEL_THRESHOLD`` overrides it; 0: always parallel). The
#: optimizer classes keep ``CHUNK`` (the same value). Measured with float64 Adam in an ``@njit``
#: loop on 2 threads: on an idle machine the parallel loop wins from about 2,500 elements (at
#: 16k it takes 0.6x the serial time); with the cores busy it lost up to 8x at 16k elements
#: and won only from about 64k. The serial loop can cost at most 2x on 2 threads, a parallel
#: launch too early far more: the threshold sits high.
PARALLEL_THRESHOLD: int = _threshold(16384)


#: flags shared by every kernel and by the pieces compiled into them
JIT_OPTIONS: dict = {"fastmath": False, "nogil": True, "error_model": "numpy"}


def kernel(fn=None, *, parallel: bool = True, twin: bool = True):
    """Decorate an update rule as a numopt kernel (``njit`` with the project's flags).

    A parallel kernel carries its thread-free twin as ``.serial`` (compiled on
    first use): the optimizers call it for runs under ``CHUNK`` elements, where
    waking the thread pool costs more than the work, and far more on a busy machine.
    ``twin=False`` leaves the twin to the caller (generated rules make their own).
    """

    def build(f):
        dispatcher = njit(parallel=parallel, cache=CACHE, **JIT_OPTIONS)(f)
        if parallel and twin:
            dispatcher.serial = serial_kernel(f)
        return dispatcher

    return build if fn is None else build(fn)


def serial_kernel(fn):
    """A thread-free twin of the update rule ``fn`` (a plain Python function), for inputs too small
    to be worth a parallel launch.

    It is compiled from a copy of ``fn`` named ``<name>_serial``: Numba's on-disk cache is keyed by
    a function's name and line, not by its compile flags, so the twins must not share a name.
    """
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_serial"
    twin.__doc__ = fn.__doc__
    return kernel(twin, parallel=False)
