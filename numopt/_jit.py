"""Numba compile settings for every numopt kernel, kept in one place.

Environment variables
---------------------
NUMOPT_CACHE
    ``1`` (default) stores compiled kernels on disk so a second process pays no
    JIT cost; ``0`` compiles afresh in every process.

``fastmath`` stays off: torch parity and NaN/Inf propagation depend on IEEE
semantics, and it measured no faster on our memory-bound loops.
"""

from __future__ import annotations

import os

from numba import njit

__all__ = ["CACHE", "CHUNK", "kernel"]

CACHE: bool = os.environ.get("NUMOPT_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")

#: Elements handled by one parallel task. Large enough to amortize scheduling,
#: small enough that two threads get balanced work on a few-MB buffer.
CHUNK: int = 16384


def kernel(fn=None, *, parallel: bool = True):
    """Decorate an update rule as a numopt kernel (``njit`` with the project's flags)."""
    deco = njit(parallel=parallel, cache=CACHE, fastmath=False, nogil=True)
    return deco if fn is None else deco(fn)
