"""``python -m numopt bench``: step times on this machine, side by side with torch.optim.

What is measured, for every optimizer numopt has:

* the machine's memory *roofline* for the optimizer's access pattern: a kernel
  with no math that reads and writes the same streams (Adam: 4 reads, 3 writes);
* numopt's ``step()`` on one flat tensor at several sizes, on a GPT-like model
  of ~150 tensors (~28M parameters) and on a tiny 10-tensor model (~1k parameters);
* ``torch.optim`` on the same workloads, in its default, ``foreach`` and ``fused``
  modes, timed in a separate worker process (two OpenMP pools in one process
  slow torch down, which would flatter numopt).

Figures are medians over repeated steps after warm-up (JIT excluded). Ratios
taken in one run are what to compare; absolute times move with machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numba import prange

from ._jit import kernel

# -- workloads ------------------------------------------------------------------------------------

#: optimizer -> (constructor kwargs, streams updated in place, streams only read)
ALGORITHMS: dict[str, tuple[dict[str, Any], int, int]] = {
    "SGD": ({"lr": 1e-3, "momentum": 0.9}, 2, 1),
    "Adam": ({"lr": 1e-3}, 3, 1),
    "AdamW": ({"lr": 1e-3}, 3, 1),
    "Adamax": ({"lr": 1e-3}, 3, 1),
    "NAdam": ({"lr": 1e-3}, 3, 1),
    "RAdam": ({"lr": 1e-3}, 3, 1),
    "Adagrad": ({"lr": 1e-2}, 2, 1),
    "Adadelta": ({"lr": 1.0}, 3, 1),
    "RMSprop": ({"lr": 1e-3}, 2, 1),
    "Rprop": ({"lr": 1e-3}, 3, 1),
    "ASGD": ({"lr": 1e-3}, 2, 1),
}


def gpt_like_shapes(layers: int = 12, d: int = 384, vocab: int = 16384, ctx: int = 512) -> list[tuple[int, ...]]:
    """A GPT-2-shaped model: 148 tensors, ~27.8M parameters with the defaults."""
    shapes: list[tuple[int, ...]] = [(vocab, d), (ctx, d)]
    for _ in range(layers):
        shapes += [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,)]  # ln1, attention
        shapes += [(d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]  # ln2, MLP
    shapes += [(d,), (d,)]  # final layer norm
    return shapes


TINY_SHAPES: list[tuple[int, ...]] = [(16, 24), (24,), (24, 16), (16,), (16, 8), (8,), (8, 8), (8,), (8, 4), (4,)]


@dataclass
class Workload:
    name: str
    shapes: list[tuple[int, ...]]

    @property
    def size(self) -> int:
        return int(sum(np.prod(s, dtype=np.int64) for s in self.shapes))


def workloads(sizes: list[int], model: bool = True, tiny: bool = True) -> list[Workload]:
    out = [Workload(f"flat {n:.0e}".replace("e+0", "e"), [(n,)]) for n in sizes]
    if model:
        out.append(Workload("gpt-like 148 tensors", gpt_like_shapes()))
    if tiny:
        out.append(Workload("tiny 10 tensors", TINY_SHAPES))
    return out


# -- timing ---------------------------------------------------------------------------------------


def time_call(fn: Callable[[], Any], *, min_repeats: int = 7, budget_s: float = 1.0, warmup: int = 2) -> dict:
    """Median/min seconds of ``fn()`` over at least ``min_repeats`` calls (or ``budget_s``)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or (time.perf_counter() - start < budget_s and len(times) < 10_000):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "n": len(times)}


# -- roofline kernels: the optimizer's streams with no math ----------------------------------------


@kernel
def _stream_1(ro, a):
    n = a.size
    for i in prange(n):
        a[i] = a[i] + ro[i]


@kernel
def _stream_2(ro, a, b):
    n = a.size
    for i in prange(n):
        g = ro[i]
        a[i] = a[i] + g
        b[i] = b[i] + g


@kernel
def _stream_3(ro, a, b, d):
    n = a.size
    for i in prange(n):
        g = ro[i]
        a[i] = a[i] + g
        b[i] = b[i] + g
        d[i] = d[i] + g


@kernel
def _stream_4(ro, a, b, d, e):
    n = a.size
    for i in prange(n):
        g = ro[i]
        a[i] = a[i] + g
        b[i] = b[i] + g
        d[i] = d[i] + g
        e[i] = e[i] + g


_STREAMS = {1: _stream_1, 2: _stream_2, 3: _stream_3, 4: _stream_4}


def roofline(n: int, rw: int, ro: int = 1, **timing: Any) -> dict:
    """Time a no-math pass over ``rw`` read-write and ``ro`` (= 1) read-only float32 streams of ``n``."""
    arrays = [np.zeros(n, np.float32) for _ in range(rw + 1)]
    fn = _STREAMS[rw]
    t = time_call(lambda: fn(*arrays), **timing)
    nbytes = n * 4 * (2 * rw + ro)
    t["bytes"] = nbytes
    t["gbps"] = nbytes / t["median_s"] / 1e9
    return t


# -- numopt side ------------------------------------------------------------------------------------


def bench_numopt(algo: str, work: Workload, **timing: Any) -> dict | None:
    import numopt

    cls = getattr(numopt, algo, None)
    if cls is None:
        return None
    kwargs = ALGORITHMS[algo][0]
    rng = np.random.default_rng(0)
    params = [numopt.Parameter(rng.standard_normal(s).astype(np.float32) * 0.01) for s in work.shapes]
    opt = cls(params, **kwargs)
    for p in params:
        p.grad = rng.standard_normal(p.shape).astype(np.float32) * 0.01
    opt.step()  # compile, pack grads, create state
    return time_call(opt.step, **timing)


# -- torch side (a worker process) -----------------------------------------------------------------

_TORCH_WORKER = r"""
import json, sys, time, statistics
import numpy as np
import torch
job = json.loads(sys.stdin.read())
torch.set_num_threads(job["threads"])
from numopt.bench import time_call
out = {"torch": torch.__version__, "results": []}
for task in job["tasks"]:
    cls = getattr(torch.optim, task["algo"], None)
    res = {"algo": task["algo"], "workload": task["workload"], "modes": {}}
    if cls is not None:
        gen = torch.Generator().manual_seed(0)
        params = [torch.randn(*s, generator=gen) * 0.01 for s in task["shapes"]]
        for p in params:
            p.requires_grad_(True)
            p.grad = torch.randn(*p.shape, generator=gen) * 0.01
        for mode in ("default", "foreach", "fused"):
            kw = dict(task["kwargs"])
            if mode != "default":
                kw[mode] = True
            try:
                opt = cls(params, **kw)
                with torch.no_grad():
                    t = time_call(opt.step, **job["timing"])
            except (RuntimeError, TypeError, ValueError) as e:
                t = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"}
            res["modes"][mode] = t
    out["results"].append(res)
if job.get("mixed"):
    # numopt's step in a process that also runs torch (two thread pools): the "one process" row
    import numopt
    from numopt.bench import bench_numopt, Workload
    x = torch.randn(256, 256)
    for _ in range(3):
        (x @ x).sum()
    out["mixed"] = bench_numopt(job["mixed"]["algo"], Workload("mixed", [tuple(s) for s in job["mixed"]["shapes"]]),
                                **job["timing"])
print(json.dumps(out))
"""


def bench_torch(tasks: list[dict], threads: int, timing: dict, mixed: dict | None = None) -> dict | None:
    """Run the torch timings in a fresh worker process; ``None`` if torch is not importable."""
    job = {"tasks": tasks, "threads": threads, "timing": timing, "mixed": mixed}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _TORCH_WORKER],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            env=env,
            timeout=3600,
        )
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        if "No module named 'torch'" in proc.stderr:
            return None
        raise RuntimeError(f"torch benchmark worker failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cold_start(with_cache: bool) -> float:
    """Seconds for ``import numopt`` plus a first Adam (or SGD) step in a fresh process."""
    code = (
        "import time; t=time.perf_counter(); import numpy as np, numopt; "
        "cls = getattr(numopt, 'Adam', numopt.SGD); p = numopt.Parameter((1000,)); "
        "o = cls([p], lr=1e-3); p.grad = np.ones(1000, np.float32); o.step(); "
        "print(time.perf_counter()-t)"
    )
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        if not with_cache:
            env["NUMBA_CACHE_DIR"] = tmp
            env["NUMOPT_CACHE"] = "0"
        else:
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)  # warm it
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


# -- report -----------------------------------------------------------------------------------------


@dataclass
class Row:
    algo: str
    workload: str
    params: int
    numopt_ms: float
    gbps: float | None = None
    roofline_gbps: float | None = None
    pct_roofline: float | None = None
    torch_ms: dict[str, float | None] = field(default_factory=dict)
    speedup: dict[str, float | None] = field(default_factory=dict)


def machine_info(threads: int) -> dict:
    import numba

    from . import __version__
    from ._info import _cpu_model

    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = "not initialized"
    return {
        "numopt": __version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "threading_layer": layer,
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
    }


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def render_table(rows: list[Row]) -> str:
    head = (
        "| optimizer | workload | numopt ms | GB/s | % roofline | torch default ms | torch foreach ms "
        "| torch fused ms | x default | x foreach | x fused |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        t, s = r.torch_ms, r.speedup
        lines.append(
            f"| {r.algo} | {r.workload} | {_fmt(r.numopt_ms, '.3f')} | {_fmt(r.gbps, '.1f')} "
            f"| {_fmt(r.pct_roofline, '.0f')} | {_fmt(t.get('default'), '.3f')} | {_fmt(t.get('foreach'), '.3f')} "
            f"| {_fmt(t.get('fused'), '.3f')} | {_fmt(s.get('default'), '.2f')} | {_fmt(s.get('foreach'), '.2f')} "
            f"| {_fmt(s.get('fused'), '.2f')} |"
        )
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m numopt bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a run of about a minute")
    parser.add_argument("--threads", type=int, default=None, help="threads for numopt and torch")
    parser.add_argument("--optimizers", default=None, help="comma-separated, e.g. adam,sgd (default: all)")
    parser.add_argument("--sizes", default=None, help="flat tensor sizes, e.g. 1e6,1e7,1e8")
    parser.add_argument("--workloads", default="flat,model,tiny", help="any of flat,model,tiny (default: all three)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write machine-readable results")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch.optim comparison")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="cuda: parameters on the GPU (numopt.bench_cuda)"
    )
    args = parser.parse_args(argv)

    import numopt

    if args.threads:
        numopt.set_num_threads(args.threads)
    threads = numopt.get_num_threads()
    names = {a.lower(): a for a in ALGORITHMS if hasattr(numopt, a)}
    if args.optimizers:
        wanted = [s.strip().lower() for s in args.optimizers.split(",") if s.strip()]
        unknown = [w for w in wanted if w not in names]
        if unknown:
            parser.error(f"unknown optimizers {unknown}; available: {sorted(names.values())}")
        algos = [names[w] for w in wanted]
    else:
        algos = list(names.values())
    if args.sizes:
        sizes = [int(float(s)) for s in args.sizes.split(",")]
    else:
        sizes = [10_000_000] if args.quick else [1_000_000, 10_000_000, 100_000_000]
    timing = {"min_repeats": 5, "budget_s": 0.3} if args.quick else {"min_repeats": 7, "budget_s": 1.5}
    kinds = {k.strip() for k in args.workloads.split(",")}
    if args.device == "cuda":
        from .bench_cuda import run_cuda

        return run_cuda(algos, sizes, kinds, timing, args)
    work = workloads(sizes if "flat" in kinds else [], model="model" in kinds, tiny="tiny" in kinds)

    print(f"numopt bench: {threads} threads, optimizers {', '.join(algos)}", flush=True)
    roof: dict[tuple[int, str], dict] = {}
    rows: list[Row] = []
    for algo in algos:
        kwargs, rw, ro = ALGORITHMS[algo]
        for w in work:
            res = bench_numopt(algo, w, **timing)
            if res is None:
                continue
            row = Row(algo, w.name, w.size, res["median_s"] * 1e3)
            nbytes = w.size * 4 * (2 * rw + ro)
            row.gbps = nbytes / res["median_s"] / 1e9
            if w.size >= 1_000_000:
                key = (w.size, f"{rw}+{ro}")
                if key not in roof:
                    roof[key] = roofline(w.size, rw, ro, **timing)
                row.roofline_gbps = roof[key]["gbps"]
                row.pct_roofline = 100 * row.gbps / row.roofline_gbps
            rows.append(row)
            print(f"  {algo:<9} {w.name:<22} {row.numopt_ms:10.3f} ms", flush=True)

    torch_out = None
    if not args.no_torch:
        tasks = [
            {
                "algo": r.algo,
                "workload": r.workload,
                "kwargs": ALGORITHMS[r.algo][0],
                "shapes": next(w.shapes for w in work if w.name == r.workload),
            }
            for r in rows
        ]
        model = next((w for w in work if w.name.startswith("gpt")), None)
        mixed = {"algo": "Adam" if "Adam" in algos else algos[0], "shapes": model.shapes} if model else None
        print("timing torch.optim in a worker process ...", flush=True)
        torch_out = bench_torch(tasks, threads, timing, mixed)
        if torch_out is None:
            print("torch is not importable: numopt figures only")
        else:
            for r, tr in zip(rows, torch_out["results"]):
                for mode, t in tr["modes"].items():
                    ms = t["median_s"] * 1e3 if "median_s" in t else None
                    r.torch_ms[mode] = ms
                    r.speedup[mode] = ms / r.numopt_ms if ms else None

    result = {
        "machine": machine_info(threads),
        "rows": [asdict(r) for r in rows],
        "roofline": [{"size": k[0], "pattern": k[1], **v} for k, v in roof.items()],
    }
    if torch_out:
        result["machine"]["torch"] = torch_out["torch"]
        if torch_out.get("mixed"):
            result["mixed_process"] = {"algo": mixed["algo"], "ms": torch_out["mixed"]["median_s"] * 1e3}
    if not args.quick:
        result["cold_start_s"] = {"warm_cache": cold_start(True), "no_cache": cold_start(False)}

    m = result["machine"]
    print()
    print(
        f"machine: {m['cpu']}, {m['threads']} threads ({m['threading_layer']}), numopt {m['numopt']}, "
        f"numba {m['numba']}, torch {m.get('torch', 'n/a')}"
    )
    print(render_table(rows))
    for k, v in roof.items():
        print(f"roofline {k[1]} streams at {k[0]:.0e}: {v['gbps']:.1f} GB/s")
    if "mixed_process" in result:
        mp = result["mixed_process"]
        alone = next((r.numopt_ms for r in rows if r.workload.startswith("gpt") and r.algo == mp["algo"]), None)
        print(
            f"numopt {mp['algo']} step on the gpt-like model in a process that also runs torch: "
            f"{mp['ms']:.3f} ms (numopt alone: {_fmt(alone, '.3f')} ms)"
        )
    if "cold_start_s" in result:
        c = result["cold_start_s"]
        print(
            f"cold start (import + first step): {c['warm_cache']:.2f} s with a warm cache, "
            f"{c['no_cache']:.2f} s without"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")
    return result
