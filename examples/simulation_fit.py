"""An optimizer inside a jitted simulation: relax a Lennard-Jones cluster, and compare with scipy.

    python examples/simulation_fit.py [OUTPUT.png] [--atoms N] [--steps S] [--quick]

The energy of N atoms interacting by the Lennard-Jones potential
E = sum_{i<j} 4 (r_ij^-12 - r_ij^-6) and its gradient are computed by an ``@njit``
function. Three ways to relax the same random start to a minimum:

- **Adam inside the jitted simulation**: one compiled loop computes forces and
  calls ``numopt.functional.adam`` at every step (no Python per step), with a
  learning rate that decays as the cluster settles;
- **numopt.minimize** (L-BFGS with a strong-Wolfe line search);
- **scipy.optimize.minimize** (L-BFGS-B).

A table (energy, max |gradient|, iterations, seconds) is printed, and the PNG
(``simulation_fit.png`` next to this script by default) shows the energy of each
run against its iterations and the relaxed cluster. For 13 atoms the lowest
minimum known is the icosahedron, E = -44.326801.
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
from numba import njit  # noqa: E402

import numopt  # noqa: E402
from numopt.functional import adam, adam_scalars, init_state  # noqa: E402

LJ13_MINIMUM = -44.326801


@njit(cache=True)
def lj_energy_grad(x, grad):
    """Lennard-Jones energy of the atoms at ``x`` (flat, 3 coordinates per atom); writes its gradient."""
    n = x.size // 3
    grad[:] = 0.0
    energy = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            dx = x[3 * i] - x[3 * j]
            dy = x[3 * i + 1] - x[3 * j + 1]
            dz = x[3 * i + 2] - x[3 * j + 2]
            inv_r2 = 1.0 / (dx * dx + dy * dy + dz * dz)
            inv_r6 = inv_r2 * inv_r2 * inv_r2
            energy += 4.0 * (inv_r6 * inv_r6 - inv_r6)
            f = (24.0 * inv_r6 - 48.0 * inv_r6 * inv_r6) * inv_r2  # (dE/dr) / r
            grad[3 * i] += f * dx
            grad[3 * i + 1] += f * dy
            grad[3 * i + 2] += f * dz
            grad[3 * j] -= f * dx
            grad[3 * j + 1] -= f * dy
            grad[3 * j + 2] -= f * dz
    return energy


@njit(cache=True)
def relax_with_adam(x, state, steps, lr, final_lr, energies):
    """The simulation: ``steps`` Adam steps on the atoms' coordinates, all in compiled code.

    The learning rate decays geometrically from ``lr`` to ``final_lr``; ``energies[t]``
    records the energy before step ``t``. Returns the final energy.
    """
    grad = np.empty_like(x)
    decay = (final_lr / lr) ** (1.0 / steps)
    step_lr = lr
    for t in range(1, steps + 1):
        energies[t - 1] = lj_energy_grad(x, grad)
        bc1, bc2_sqrt = adam_scalars(0.9, 0.999, t)
        adam(
            x,
            grad,
            state.exp_avg,
            state.exp_avg_sq,
            state.max_exp_avg_sq,
            step_lr,
            0.9,
            0.999,
            1e-8,
            0.0,
            bc1,
            bc2_sqrt,
            False,
            False,
        )
        step_lr *= decay
    return lj_energy_grad(x, grad)


def random_cluster(atoms: int, seed: int) -> np.ndarray:
    """Atoms placed at random in a sphere, no two closer than 0.9 (flat float64 coordinates)."""
    rng = np.random.default_rng(seed)
    radius = 0.6 * atoms ** (1 / 3)
    pts: list[np.ndarray] = []
    while len(pts) < atoms:
        p = rng.uniform(-radius, radius, 3)
        if np.linalg.norm(p) <= radius and all(np.linalg.norm(p - q) >= 0.9 for q in pts):
            pts.append(p)
    return np.concatenate(pts)


def energy_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
    grad = np.empty_like(x)
    return lj_energy_grad(np.ascontiguousarray(x, dtype=np.float64), grad), grad


def relax(x0: np.ndarray, steps: int) -> dict[str, dict]:
    """Relax ``x0`` three ways; each run has the final ``x`` and ``E``, the energy ``curve``, ``nit``, ``nfev``
    and ``seconds``."""
    e0 = energy_and_grad(x0)[0]
    runs = {}
    x = x0.copy()
    energies = np.empty(steps)
    t0 = time.perf_counter()
    final = relax_with_adam(x, init_state("adam", x), steps, 1e-2, 1e-5, energies)
    runs["Adam in the jitted loop"] = dict(
        x=x, E=final, curve=np.append(energies, final), nit=steps, nfev=steps + 1, seconds=time.perf_counter() - t0
    )
    curve: list[float] = []
    t0 = time.perf_counter()
    res = numopt.minimize(
        energy_and_grad,
        x0.copy(),
        options={"gtol": 1e-8, "ftol": 1e-14},
        callback=lambda intermediate_result: curve.append(intermediate_result.fun),
    )
    runs["numopt.minimize (L-BFGS)"] = dict(
        x=res.x, E=res.fun, curve=np.array([e0, *curve]), nit=res.nit, nfev=res.nfev, seconds=time.perf_counter() - t0
    )
    try:
        from scipy.optimize import minimize as scipy_minimize
    except ImportError:
        return runs
    curve = []
    t0 = time.perf_counter()
    sres = scipy_minimize(
        energy_and_grad,
        x0.copy(),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-8, "ftol": 1e-14, "maxiter": 15000},
        callback=lambda intermediate_result: curve.append(intermediate_result.fun),
    )
    runs["scipy L-BFGS-B"] = dict(
        x=sres.x,
        E=sres.fun,
        curve=np.array([e0, *curve]),
        nit=sres.nit,
        nfev=sres.nfev,
        seconds=time.perf_counter() - t0,
    )
    return runs


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=str(Path(__file__).with_suffix(".png")), help="PNG to write")
    parser.add_argument("--atoms", type=int, default=13, help="cluster size (default 13)")
    parser.add_argument("--steps", type=int, default=None, help="Adam steps (default 20000, quick 5000)")
    parser.add_argument("--starts", type=int, default=None, help="random starts in the table (default 10, quick 3)")
    parser.add_argument(
        "--quick", action="store_true", default=os.environ.get("NUMOPT_EXAMPLES_QUICK") == "1", help="fewer steps"
    )
    args = parser.parse_args(argv)
    steps = args.steps or (5000 if args.quick else 20000)
    starts = args.starts or (3 if args.quick else 10)
    out = Path(args.output)
    # A few dozen coordinates: one thread. A parallel launch per step would cost more than the step.
    numopt.set_num_threads(1)
    relax_with_adam(np.zeros(6) + np.arange(6.0), init_state("adam", np.zeros(6)), 2, 1e-2, 1e-3, np.empty(2))  # JIT

    traced_seed = 4
    runs = relax(random_cluster(args.atoms, traced_seed), steps)
    x0 = random_cluster(args.atoms, traced_seed)
    print(f"Lennard-Jones cluster of {args.atoms} atoms, random start {traced_seed}: E = {energy_and_grad(x0)[0]:.4f}")
    print(f"\n{'method':<26} {'energy':>11} {'max |grad|':>11} {'iterations':>10} {'evals':>6} {'seconds':>8}")
    for name, r in runs.items():
        gmax = float(np.abs(energy_and_grad(r["x"])[1]).max())
        print(f"{name:<26} {r['E']:11.6f} {gmax:11.2e} {r['nit']:10d} {r['nfev']:6d} {r['seconds']:8.3f}")

    # Many local minima: where each method ends depends on the start.
    table: dict[str, list[float]] = {name: [] for name in runs}
    for seed in range(starts):
        for name, r in relax(random_cluster(args.atoms, seed), steps).items():
            table[name].append(r["E"])
    lowest = min(min(v) for v in table.values())
    target = LJ13_MINIMUM if args.atoms == 13 else lowest
    print(f"\n{starts} random starts: how often each method reaches E = {target:.4f} (the lowest known minimum)")
    print(f"{'method':<26} {'reached':>8} {'best E':>11} {'median E':>11}")
    for name, es in table.items():
        hits = sum(abs(e - target) < 1e-4 for e in es)
        print(f"{name:<26} {hits:>4d}/{len(es):<3d} {min(es):11.5f} {np.median(es):11.5f}")

    best = min(r["E"] for r in runs.values())
    fig = plt.figure(figsize=(13, 5))
    ax = fig.add_subplot(1, 2, 1)
    for (name, r), style, lw in zip(runs.items(), ("-", "--", ":"), (1.2, 2.2, 2.5)):
        gap = np.maximum(np.asarray(r["curve"]) - best, 1e-10)
        ax.loglog(np.arange(1, gap.size + 1), gap, ls=style, lw=lw, label=f"{name}: E = {r['E']:.5f}")
    ax.annotate(
        "Adam keeps jittering around the minimum\nas its learning rate decays to 1e-5",
        xy=(5e3, 1e-5),
        xytext=(1.5, 1e-8),
        fontsize=8,
        arrowprops={"arrowstyle": "->", "color": "0.3"},
    )
    ax.set_xlabel("iteration + 1")
    ax.set_ylabel(f"E - E_min   (E_min = {best:.5f})")
    ax.set_title(f"Relaxing {args.atoms} Lennard-Jones atoms from one random start")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9, loc="upper right")

    ax3 = fig.add_subplot(1, 2, 2, projection="3d")
    x_final = runs["Adam in the jitted loop"]["x"].reshape(-1, 3)
    x_final = x_final - x_final.mean(axis=0)
    x_start = x0.reshape(-1, 3) - x0.reshape(-1, 3).mean(axis=0)
    for i in range(len(x_final)):
        for j in range(i + 1, len(x_final)):
            if np.linalg.norm(x_final[i] - x_final[j]) < 1.3:
                ax3.plot(*zip(x_final[i], x_final[j]), color="0.4", lw=1)
    ax3.scatter(*x_start.T, s=25, color="tab:orange", alpha=0.6, label="random start")
    ax3.scatter(*x_final.T, s=140, color="tab:blue", label=f"relaxed by Adam in the jitted loop (E = {best:.4f})")
    ax3.set_title("the cluster: start and relaxed (bonds: r < 1.3)")
    ax3.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print(f"\nwrote {out}")
    return out


if __name__ == "__main__":
    main()
