"""Adam steps per second: inside one jitted loop vs from Python, for 100 and 1_000_000 parameters.

Three ways to run the same Adam update on a float32 parameter vector with a fixed gradient:

- ``numopt.Adam.step()`` called from a Python loop (the class: validation, hooks, state bookkeeping);
- ``numopt.functional.adam`` called from a Python loop (the kernel alone, one Python call per step);
- ``numopt.functional.adam`` called from a user's ``@njit`` loop (no Python per step at all).

Run::

    python benchmarks/njit_embedding.py            # prints a markdown table
    python benchmarks/njit_embedding.py --quick    # fewer steps

Each row is measured once with all of Numba's threads and once with one thread
(``numopt.set_num_threads``). JIT compilation is excluded (one warm-up call); the
time is the best of ``--repeat`` runs of ``steps`` steps. Steps per second of a
memory-bound step at 1e6 elements are bounded by memory bandwidth; at 100
elements they measure call and launch overhead.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numba
import numpy as np
from numba import njit

import numopt
from numopt.bench import threading_layer
from numopt.functional import adam, adam_scalars, init_state


@njit(cache=True)
def adam_loop(x, g, st, first, steps, lr):
    """``steps`` Adam steps from step ``first``, all in compiled code."""
    for t in range(first, first + steps):
        bc1, bc2_sqrt = adam_scalars(0.9, 0.999, t)
        adam(x, g, st.exp_avg, st.exp_avg_sq, st.max_exp_avg_sq, lr, 0.9, 0.999, 1e-8, 0.0, bc1, bc2_sqrt, False, False)


def per_step(fn, steps: int, repeat: int) -> float:
    """Best seconds per step of ``fn(steps)`` over ``repeat`` runs (after one warm-up run)."""
    fn(max(1, steps // 10))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(steps)
        best = min(best, (time.perf_counter() - t0) / steps)
    return best


def measure(n: int, steps: dict[str, int], repeat: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)

    p = numopt.Parameter(x0.copy())
    opt = numopt.Adam([p], lr=1e-3)
    p.grad = g.copy()

    def run_class(k: int) -> None:
        for _ in range(k):
            opt.step()

    x1 = x0.copy()
    st1 = init_state("adam", x1)
    count = [0]

    def run_kernel_from_python(k: int) -> None:
        for _ in range(k):
            count[0] += 1
            t = count[0]
            adam(x1, g, st1.exp_avg, st1.exp_avg_sq, st1.max_exp_avg_sq, 1e-3, 0.9, 0.999, 1e-8, 0.0,
                 1 - 0.9**t, (1 - 0.999**t) ** 0.5, False, False)  # fmt: skip

    x2 = x0.copy()
    st2 = init_state("adam", x2)
    done = [0]

    def run_jitted_loop(k: int) -> None:
        adam_loop(x2, g, st2, done[0] + 1, k, 1e-3)
        done[0] += k

    return {
        "numopt.Adam.step() from Python": per_step(run_class, steps["class"], repeat),
        "functional.adam from Python": per_step(run_kernel_from_python, steps["class"], repeat),
        "functional.adam in an @njit loop": per_step(run_jitted_loop, steps["njit"], repeat),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--repeat", type=int, default=None, help="runs per measurement (best is kept; default 5)")
    args = parser.parse_args(argv)
    repeat = args.repeat or (2 if args.quick else 5)
    all_threads = numopt.get_num_threads()
    plan = {
        100: {"class": 2_000 if args.quick else 20_000, "njit": 20_000 if args.quick else 200_000},
        1_000_000: {"class": 20 if args.quick else 100, "njit": 20 if args.quick else 100},
    }
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numba {numba.__version__} "
        f"(threading layer chosen at first parallel call), numpy {np.__version__}, float32, Adam"
    )
    print()
    print("| parameters | threads | how the step is called | steps/s | us/step | vs the class |")
    print("|---:|---:|---|---:|---:|---:|")
    for n, steps in plan.items():
        for threads in sorted({all_threads, 1}, reverse=True):
            numopt.set_num_threads(threads)
            rows = measure(n, steps, repeat)
            base = rows["numopt.Adam.step() from Python"]
            for how, sec in rows.items():
                print(f"| {n:,} | {threads} | {how} | {1 / sec:,.0f} | {1e6 * sec:,.2f} | {base / sec:.1f}x |")
    numopt.set_num_threads(all_threads)
    print(f"\nthreading layer: {threading_layer(unset='not started')}")


if __name__ == "__main__":
    main()
