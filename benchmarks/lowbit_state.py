"""Compact optimizer state (``state_dtype``): memory per parameter and AdamW step time.

Run from the repository root: ``PYTHONPATH=$PWD python benchmarks/lowbit_state.py [--sizes 1e7 1e8]``.

* State bytes per parameter: process RSS growth while an Adam optimizer creates its state for one
  parameter of ``--memory-size`` elements (each state_dtype in a fresh subprocess, kernels compiled first).
* Step time: AdamW with fp32 / bfloat16 / int8 state, one parameter per size, in alternating rounds;
  medians and ratios to fp32.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def measure_memory(n: int, state_dtype: str | None) -> float:
    import numopt

    warm = numopt.Parameter(np.zeros(8192, np.float32))
    opt = numopt.Adam([warm], state_dtype=state_dtype)
    warm.grad = np.ones(8192, np.float32)
    opt.step()  # compiles the loop
    w = numopt.Parameter(np.zeros(n, np.float32))
    opt = numopt.Adam([w], state_dtype=state_dtype)
    w.grad = np.ones(n, np.float32)
    flat = opt._flats[0][0]
    flat.sync_grads()  # the gradient is in the buffer: only the state is left to create
    before = _rss()
    opt._prepare(opt.param_groups[0], flat)
    return (_rss() - before) / n


def measure_steps(sizes: list[int], rounds: int) -> dict:
    import numopt

    out = {}
    for n in sizes:
        rng = np.random.default_rng(0)
        opts = {}
        for sd in (None, "bfloat16", "int8"):
            w = numopt.Parameter(rng.standard_normal(n).astype(np.float32))
            opt = numopt.AdamW([w], lr=1e-3, state_dtype=sd)
            w.grad = rng.standard_normal(n).astype(np.float32)
            opt.step()
            opt.step()
            opts[sd] = opt
        times: dict = {sd: [] for sd in opts}
        reps = max(1, int(3e8 // n) // 10)
        for _ in range(rounds):
            for sd, opt in opts.items():
                t0 = time.perf_counter()
                for _ in range(reps):
                    opt.step()
                times[sd].append((time.perf_counter() - t0) / reps)
        med = {str(sd): statistics.median(t) * 1e3 for sd, t in times.items()}
        out[n] = {"ms": med, "speedup_vs_fp32": {k: med["None"] / v for k, v in med.items()}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=float, nargs="*", default=[1e7, 1e8])
    ap.add_argument("--memory-size", type=float, default=1e8)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--child", default=None)
    args = ap.parse_args()
    if args.child is not None:
        sd = None if args.child == "None" else args.child
        print(json.dumps(measure_memory(int(args.memory_size), sd)))
        return
    for sd in ("None", "bfloat16", "int8"):
        res = subprocess.run(
            [sys.executable, __file__, "--child", sd, "--memory-size", str(args.memory_size)],
            capture_output=True,
            text=True,
            check=True,
        )
        size = f"{args.memory_size:.0e}"
        print(f"state bytes per parameter, Adam, {size} elements, state_dtype={sd}: {res.stdout.strip()}")
    if args.sizes:
        import numopt

        print(f"threads: {numopt.get_num_threads()}")
        for n, r in measure_steps([int(s) for s in args.sizes], args.rounds).items():
            ms = ", ".join(f"{k}: {v:.2f} ms" for k, v in r["ms"].items())
            ratio = ", ".join(f"{k}: {v:.2f}x" for k, v in r["speedup_vs_fp32"].items())
            print(f"AdamW step, {n:.0e} elements: medians {ms}; speedup vs fp32 state {ratio}")


if __name__ == "__main__":
    main()
