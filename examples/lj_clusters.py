"""1000 Lennard-Jones 13-atom clusters from random starts: numopt.minimize_batch against a scipy L-BFGS-B loop.

    python examples/lj_clusters.py [OUTPUT.png] [--clusters N] [--atoms N] [--quick]

Each cluster's energy (reduced units, pair potential 4 (r^-12 - r^-6)) and its
gradient come from one ``@njit`` function ``lj_fg(x, g, args)``. Both solvers
get that function and the same starts, with ``gtol=1e-5, ftol=0``:
``numopt.minimize_batch`` runs the whole L-BFGS compiled, one cluster per
thread task; scipy's L-BFGS-B is called once per cluster from Python. The
summary gives both times, the share of clusters converged, and the share
reaching LJ-13's known global minimum (the icosahedron, -44.326801); the PNG
(``lj_clusters.png`` next to this script by default) is a histogram of the
final energies.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.optimize  # noqa: E402
from numba import njit  # noqa: E402

import numopt  # noqa: E402

#: the global minimum of LJ-13 (Wales and Doye, Cambridge Cluster Database)
LJ13_MINIMUM = -44.326801


@njit(cache=True)
def lj_fg(x, g, args):  # type: ignore[no-untyped-def]
    """Lennard-Jones energy of the cluster with flat coordinates ``x``; its gradient into ``g``."""
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
    """Atoms uniform in a cube sized for about the cluster's density."""
    side = 1.4 * atoms ** (1 / 3)
    return np.random.default_rng(seed).uniform(-side / 2, side / 2, (clusters, 3 * atoms))


def scipy_loop(starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scipy's L-BFGS-B on every start, the same objective and tolerances; (energies, converged)."""
    energies, ok = np.empty(len(starts)), np.empty(len(starts), bool)

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        g = np.empty_like(x)
        return lj_fg(x, g, 0.0), g

    for b, x0 in enumerate(starts):
        res = scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", options={"gtol": 1e-5, "ftol": 0.0})
        energies[b], ok[b] = res.fun, res.status == 0
    return energies, ok


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=str(Path(__file__).with_suffix(".png")), help="PNG to write")
    parser.add_argument("--clusters", type=int, default=None, help="clusters (default 1000, quick 40)")
    parser.add_argument("--atoms", type=int, default=13, help="atoms per cluster (default 13)")
    parser.add_argument(
        "--quick", action="store_true", default=os.environ.get("NUMOPT_EXAMPLES_QUICK") == "1", help="40 clusters"
    )
    args = parser.parse_args(argv)
    clusters = args.clusters or (40 if args.quick else 1000)
    starts = random_starts(clusters, args.atoms)

    numopt.minimize_batch(lj_fg, starts[:2])  # compile first (seconds, once per process): not timed
    t0 = time.perf_counter()
    res = numopt.minimize_batch(lj_fg, starts, gtol=1e-5, ftol=0.0)
    t_numopt = time.perf_counter() - t0
    t0 = time.perf_counter()
    e_scipy, ok_scipy = scipy_loop(starts)
    t_scipy = time.perf_counter() - t0

    converged = res.success & (np.abs(res.jac).max(axis=1) <= 1e-5)
    print(f"{clusters} LJ-{args.atoms} clusters from random starts, gtol=1e-5, ftol=0 "
          f"({numopt.get_num_threads()} numba threads)")  # fmt: skip
    print(f"{'':32s} {'time':>9s} {'per cluster':>12s} {'converged':>10s} {'mean E':>10s} {'global min':>11s}")
    rows = [("numopt.minimize_batch", t_numopt, converged, res.fun)]
    rows.append(("scipy L-BFGS-B loop", t_scipy, ok_scipy, e_scipy))
    for name, t, ok, e in rows:
        best = np.mean(e < LJ13_MINIMUM + 1e-4) if args.atoms == 13 else float("nan")
        print(f"{name:32s} {t:8.3f}s {t / clusters * 1e3:9.3f} ms {ok.mean():9.1%} {e.mean():10.4f} {best:10.1%}")
    print(f"speed-up: {t_scipy / t_numopt:.1f}x")

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(min(res.fun.min(), e_scipy.min()) - 0.5, max(res.fun.max(), e_scipy.max()) + 0.5, 40)
    ax.hist(res.fun, bins=bins, alpha=0.6, label="numopt.minimize_batch")
    ax.hist(e_scipy, bins=bins, alpha=0.6, label="scipy L-BFGS-B")
    if args.atoms == 13:
        ax.axvline(LJ13_MINIMUM, color="k", lw=1, ls="--", label="global minimum")
    ax.set_xlabel("final energy (reduced units)")
    ax.set_ylabel("clusters")
    ax.set_title(f"{clusters} LJ-{args.atoms} clusters from random starts")
    ax.legend()
    fig.tight_layout()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print(f"\nwrote {out}")
    return out


if __name__ == "__main__":
    main()
