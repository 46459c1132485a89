"""Timing loops, shared by the numopt side, the torch worker and ``benchmarks/``."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def sample_times(fn: Callable[[], Any], *, min_repeats: int = 7, budget_s: float = 1.0) -> list[float]:
    """Seconds of each of at least ``min_repeats`` calls of ``fn()`` (more while ``budget_s`` lasts)."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or (time.perf_counter() - start < budget_s and len(times) < 10_000):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def summary(times: list[float]) -> dict:
    """Median and min seconds, and how many."""
    return {"median_s": statistics.median(times), "min_s": min(times), "n": len(times)}


def time_call(fn: Callable[[], Any], *, min_repeats: int = 7, budget_s: float = 1.0, warmup: int = 2) -> dict:
    """Median/min seconds of ``fn()`` over at least ``min_repeats`` calls (or ``budget_s``), after ``warmup``."""
    for _ in range(warmup):
        fn()
    return summary(sample_times(fn, min_repeats=min_repeats, budget_s=budget_s))


def time_events(
    fn: Callable[[], Any],
    event: Callable[[], Any],
    synchronize: Callable[[], Any],
    *,
    min_repeats: int = 7,
    budget_s: float = 1.0,
    warmup: int = 3,
) -> dict:
    """Median/min seconds of GPU time of ``fn()``, measured with a pair of events around each call.

    ``event()`` makes a timing event and ``synchronize()`` waits for the device:
    numba's ``cuda.event`` and ``cuda.synchronize``, or torch's
    ``torch.cuda.Event(enable_timing=True)`` and ``torch.cuda.synchronize`` (both
    kinds of event have ``record()``, ``synchronize()`` and ``elapsed_time(other)`` in ms).
    """
    for _ in range(warmup):
        fn()
    synchronize()
    start, end = event(), event()
    times: list[float] = []
    t0 = time.perf_counter()
    while len(times) < min_repeats or (time.perf_counter() - t0 < budget_s and len(times) < 2000):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return summary(times)
