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

import numopt  # noqa: E402
from numopt.bench.lennard_jones import LJ13_MINIMUM, lj_fg, random_starts, scipy_loop  # noqa: E402


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
