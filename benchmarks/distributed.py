"""Distributed step time: communication vs computation, 1 vs 2 ranks (or any counts).

    python benchmarks/distributed.py                 # Adam, 10M float32 parameters, 1 and 2 ranks
    python benchmarks/distributed.py --ranks 1 2 4 --size 50_000_000 --json out.json

The launcher starts ``mpiexec -n K`` once per rank count K (each rank with
``cores // K`` Numba threads, so every run uses the same cores) and prints one
table row per optimizer and rank count:

- ``local``: the plain optimizer, no communication (the baseline);
- ``ddp``: ``DistributedOptimizer``: comm = ``synchronize()`` (bucketed ``Iallreduce``
  plus averaging), compute = the local step;
- ``zero``: ``ZeroRedundancyOptimizer``: comm = reduce-scatter + all-gather,
  compute = the step on this rank's shard.

Times are medians over steps of the slowest rank (ranks are aligned by a barrier
before each step). Bytes: the payload of each collective, and what one rank sends
with the usual ring algorithms (all-reduce ``2 (N-1)/N x payload``, reduce-scatter and
all-gather ``(N-1)/N x payload`` each). State memory is measured with ``tracemalloc``
around the first step, where the optimizer allocates its state.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

MiB = 2**20


def _mpiexec() -> list[str]:
    here = Path(sys.executable).parent / "mpiexec"
    exe = str(here) if here.exists() else shutil.which("mpiexec")
    if exe is None:
        sys.exit("no mpiexec found: pip install -e '.[mpi]'")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    if "Open MPI" in version or "OpenRTE" in version:
        return [exe, "--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    return [exe]


# -- worker (one MPI rank) ------------------------------------------------------------------
def _params(size: int, n_tensors: int) -> list[Any]:
    import numopt

    rng = np.random.default_rng(0)
    sizes = [size // n_tensors + (1 if i < size % n_tensors else 0) for i in range(n_tensors)]
    params = [numopt.Parameter(rng.standard_normal(n).astype(np.float32) * 0.01) for n in sizes]
    for p in params:
        p.grad = rng.standard_normal(p.shape).astype(np.float32) * 0.01
    return params


def _first_step(step: Any) -> int:
    """Bytes allocated (and kept) by the first step: the optimizer state (kernels already loaded)."""
    tracemalloc.start()
    step()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return current


def _warm_up(cls: Any) -> None:
    """Load the compiled kernel once, so that its memory is not counted as state."""
    import numopt

    p = numopt.Parameter(np.zeros(8, np.float32))
    p.grad = np.zeros(8, np.float32)
    cls([p], lr=1e-3).step()


def _worker(args: argparse.Namespace) -> None:
    from mpi4py import MPI

    import numopt
    from numopt.distributed import DistributedOptimizer, ZeroRedundancyOptimizer

    comm = MPI.COMM_WORLD
    n = comm.size
    cls = getattr(numopt, args.optimizer)
    rows = []

    def timed(phases: dict[str, Any]) -> dict[str, float]:
        """Run ``phases`` (name -> callable) ``args.steps`` times; median seconds of the slowest rank."""
        times: dict[str, list[float]] = {k: [] for k in phases}
        for _ in range(args.steps):
            comm.Barrier()
            for name, fn in phases.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        med = {k: float(np.median(v)) for k, v in times.items()}
        return {k: comm.allreduce(v, op=MPI.MAX) for k, v in med.items()}

    payload = args.size * 4
    _warm_up(cls)
    # local baseline (every rank steps on its own)
    params = _params(args.size, args.tensors)
    opt = cls(params, lr=1e-3)
    state = _first_step(opt.step)
    t = timed({"compute": opt.step})
    rows.append({"mode": "local", "comm": 0.0, "compute": t["compute"], "state_bytes": state, "collectives": []})
    del opt, params

    # DistributedOptimizer
    params = _params(args.size, args.tensors)
    dopt = DistributedOptimizer(cls(params, lr=1e-3), bucket_mb=args.bucket_mb)
    state = _first_step(dopt.step)
    t = timed({"comm": dopt.synchronize, "compute": dopt.step})
    bucket = int(args.bucket_mb * MiB) // 4 * 4
    sizes = [bucket] * (payload // bucket) + ([payload % bucket] if payload % bucket else [])
    collectives = [
        {"op": "Iallreduce", "payload": b, "sent_per_rank": 2 * (n - 1) / n * b} for b in (sizes if n > 1 else [])
    ]
    rows.append({"mode": "ddp", **t, "state_bytes": state, "collectives": collectives})
    del dopt, params

    # ZeroRedundancyOptimizer
    params = _params(args.size, args.tensors)
    zero = ZeroRedundancyOptimizer(params, cls, lr=1e-3)
    state = _first_step(zero.step)
    t = timed(
        {"reduce_scatter": zero._reduce_scatter_grads, "compute": zero._local_step, "allgather": zero._allgather_params}
    )
    collectives = (
        [
            {"op": "Ireduce_scatter", "payload": payload, "sent_per_rank": (n - 1) / n * payload},
            {"op": "Iallgatherv", "payload": payload, "sent_per_rank": (n - 1) / n * payload},
        ]
        if n > 1
        else []
    )
    rows.append(
        {
            "mode": "zero",
            "comm": t["reduce_scatter"] + t["allgather"],
            "compute": t["compute"],
            "detail": t,
            "state_bytes": comm.allreduce(state, op=MPI.MAX),
            "collectives": collectives,
        }
    )
    if comm.rank == 0:
        for row in rows:
            row.update(ranks=n, threads=numopt.get_num_threads(), optimizer=args.optimizer, size=args.size)
        Path(args.json_out).write_text(json.dumps(rows))


# -- launcher -------------------------------------------------------------------------------
def _fmt_bytes(b: float) -> str:
    return f"{b / MiB:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--optimizer", default="Adam")
    parser.add_argument("--size", type=int, default=10_000_000, help="parameters (float32)")
    parser.add_argument("--tensors", type=int, default=10, help="parameters are split into this many tensors")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--bucket-mb", type=float, default=25.0)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return

    import numopt

    if not hasattr(numopt, args.optimizer):
        args.optimizer = "SGD"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.ranks:
            out = Path(tmp) / f"{k}.json"
            env = dict(os.environ, NUMBA_NUM_THREADS=str(max(1, cores // k)))
            cmd = [*_mpiexec(), "-n", str(k), sys.executable, __file__, "--worker", "--json-out", str(out)]
            cmd += ["--optimizer", args.optimizer, "--size", str(args.size), "--tensors", str(args.tensors)]
            cmd += ["--steps", str(args.steps), "--bucket-mb", str(args.bucket_mb)]
            subprocess.run(cmd, check=True, env=env)
            rows += json.loads(out.read_text())
    print(
        f"{args.optimizer}, {args.size:,} float32 parameters in {args.tensors} tensors, "
        f"bucket {args.bucket_mb:g} MiB, {cores} cores, median of {args.steps} steps (slowest rank)\n"
    )
    print(
        "| mode | ranks x threads | step ms | comm ms | compute ms | state / rank (measured) "
        "| collectives (payload; sent per rank) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        coll = ", ".join(
            f"{c['op']} {_fmt_bytes(c['payload'])}; {_fmt_bytes(c['sent_per_rank'])}" for c in r["collectives"]
        )
        detail = r.get("detail")
        comm_ms = f"{r['comm'] * 1e3:.1f}"
        if detail and r["ranks"] > 1:
            comm_ms += f" (RS {detail['reduce_scatter'] * 1e3:.1f} + AG {detail['allgather'] * 1e3:.1f})"
        print(
            f"| {r['mode']} | {r['ranks']} x {r['threads']} | {(r['comm'] + r['compute']) * 1e3:.1f} | {comm_ms} "
            f"| {r['compute'] * 1e3:.1f} | {_fmt_bytes(r['state_bytes'])} | {coll or '-'} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
