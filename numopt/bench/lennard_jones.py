"""Lennard-Jones clusters: the batched-minimization workload of ``python -m numopt bench``.

Shared by the bench's "batched minimize" line, ``examples/lj_clusters.py`` and the
tests: one ``@njit`` objective in the ``fg(x, g, args)`` form that
:func:`numopt.minimize_batch` takes, random starts, and scipy's L-BFGS-B over the
same objective for comparison (scipy imported on first use).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from numba import njit

__all__ = ["LJ13_MINIMUM", "batched_minimize", "lj_fg", "random_starts", "scipy_loop"]

#: the global minimum of LJ-13 (Wales and Doye, Cambridge Cluster Database)
LJ13_MINIMUM = -44.326801


@njit(cache=True)
def lj_fg(x, g, args):  # type: ignore[no-untyped-def]
    """Lennard-Jones energy ``sum 4 (r^-12 - r^-6)`` of the cluster with flat coordinates ``x``
    (reduced units); its gradient into ``g``. ``args`` is unused."""
    n = x.size // 3
    e = 0.0
    for i in range(x.size):
        g[i] = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            dx = x[3 * i] - x[3 * j]
            dy = x[3 * i + 1] - x[3 * j + 1]
            dz = x[3 * i + 2] - x[3 * j + 2]
            r2 = dx * dx + dy * dy + dz * dz
            ir6 = 1.0 / (r2 * r2 * r2)
            e += 4.0 * (ir6 * ir6 - ir6)
            c = (24.0 * ir6 - 48.0 * ir6 * ir6) / r2  # dE/dr / r
            g[3 * i] += c * dx
            g[3 * i + 1] += c * dy
            g[3 * i + 2] += c * dz
            g[3 * j] -= c * dx
            g[3 * j + 1] -= c * dy
            g[3 * j + 2] -= c * dz
    return e


def random_starts(clusters: int, atoms: int, seed: int = 0) -> np.ndarray:
    """Atoms uniform in a cube sized for about the cluster's density: shape ``(clusters, 3 * atoms)``."""
    side = 1.4 * atoms ** (1 / 3)
    return np.random.default_rng(seed).uniform(-side / 2, side / 2, (clusters, 3 * atoms))


def scipy_loop(starts: np.ndarray, gtol: float = 1e-5, ftol: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """scipy's L-BFGS-B from every start, the same objective: ``(energies, converged)``."""
    import scipy.optimize

    energies, ok = np.empty(len(starts)), np.empty(len(starts), bool)

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        g = np.empty_like(x)
        return lj_fg(x, g, 0.0), g

    for b, x0 in enumerate(starts):
        res = scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", options={"gtol": gtol, "ftol": ftol})
        energies[b], ok[b] = res.fun, res.status == 0
    return energies, ok


def batched_minimize(clusters: int, scipy_clusters: int, atoms: int = 13, rounds: int = 3) -> dict[str, Any]:
    """``numopt.minimize_batch`` on ``clusters`` LJ clusters and scipy's loop on the first ``scipy_clusters``
    of the same starts (``gtol=1e-5, ftol=0``), in alternating rounds: per-cluster median times, their
    ratio, the share converged and, for 13 atoms, the share at the global minimum. scipy missing: its
    entries are None."""
    import statistics

    import numopt

    starts = random_starts(clusters, atoms)
    numopt.minimize_batch(lj_fg, starts[:2])  # compiles for lj_fg (seconds, once per process): not timed
    try:
        import scipy  # noqa: F401
    except ImportError:
        scipy_clusters = 0
    ours, theirs, res = [], [], None
    for _ in range(rounds):
        t0 = time.perf_counter()
        res = numopt.minimize_batch(lj_fg, starts, gtol=1e-5, ftol=0.0)
        ours.append((time.perf_counter() - t0) / clusters)
        if scipy_clusters:
            t0 = time.perf_counter()
            e_scipy, ok_scipy = scipy_loop(starts[:scipy_clusters])
            theirs.append((time.perf_counter() - t0) / scipy_clusters)
    converged = res.success & (np.abs(res.jac).max(axis=1) <= 1e-5)
    out: dict[str, Any] = {
        "atoms": atoms,
        "clusters": clusters,
        "numopt_ms_per_cluster": statistics.median(ours) * 1e3,
        "numopt_converged": float(converged.mean()),
        "scipy_clusters": scipy_clusters,
        "scipy_ms_per_cluster": statistics.median(theirs) * 1e3 if theirs else None,
        "speedup": statistics.median(t / o for t, o in zip(theirs, ours)) if theirs else None,
    }
    if atoms == 13:
        out["numopt_at_global_minimum"] = float(np.mean(res.fun < LJ13_MINIMUM + 1e-4))
    return out
