"""``python -m numopt bench``: step times on this machine, side by side with torch.optim.

What is measured, for every optimizer numopt has:

* the machine's memory *roofline* for the optimizer's access pattern: a kernel
  with no math that reads and writes the same streams (Adam: 4 reads, 3 writes),
  over arrays holding real (written) data;
* numopt's ``step()`` on one flat tensor at several sizes, on a GPT-like model
  of ~150 tensors (~28M parameters) and on a tiny 10-tensor model (~1k parameters);
* ``torch.optim`` on the same workloads, in its default, ``foreach`` and ``fused``
  modes, timed in a separate worker process (two OpenMP pools in one process
  slow torch down, which would flatter numopt).

Each row is timed in alternating rounds (numopt, roofline, each torch mode,
then again), one process working at a time. Times are medians over all rounds;
ratios are medians of per-round ratios, each between neighbours in time: the
machine's speed drifts and jumps (a shared VM's memory bandwidth moved between
~50 and ~90 GB/s within seconds here), so the row's ratios hold even when its
absolute times do not. JIT compilation and first-step state creation are
excluded (warm-up steps).
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


def sample_times(fn: Callable[[], Any], *, min_repeats: int = 7, budget_s: float = 1.0) -> list[float]:
    """Seconds of each of at least ``min_repeats`` calls of ``fn()`` (more while ``budget_s`` lasts)."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or (time.perf_counter() - start < budget_s and len(times) < 10_000):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def time_call(fn: Callable[[], Any], *, min_repeats: int = 7, budget_s: float = 1.0, warmup: int = 2) -> dict:
    """Median/min seconds of ``fn()`` over at least ``min_repeats`` calls (or ``budget_s``), after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = sample_times(fn, min_repeats=min_repeats, budget_s=budget_s)
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


def roofline_kernel(n: int, rw: int, ro: int = 1) -> tuple[Callable[[], Any], int]:
    """A no-math pass over ``rw`` read-write and ``ro`` (= 1) read-only float32 streams of ``n``, and its bytes.

    Every array is written before it is timed: an untouched ``np.zeros`` array
    reads from the kernel's shared zero page, which sits in cache, and a
    "roofline" with such a stream measured 15-25% above what any kernel that
    reads real data can reach.
    """
    arrays = [np.full(n, 1e-3 if i == 0 else 1.0, np.float32) for i in range(rw + 1)]
    fn = _STREAMS[rw]
    fn(*arrays)  # compile
    return (lambda: fn(*arrays)), n * 4 * (2 * rw + ro)


# -- numopt side ------------------------------------------------------------------------------------


def numopt_optimizer(algo: str, work: Workload) -> Any:
    """A numopt optimizer of ``algo`` over ``work``'s shapes, with gradients, stepped once (compiled, state made)."""
    import numopt

    cls = getattr(numopt, algo, None)
    if cls is None:
        return None
    rng = np.random.default_rng(0)
    params = [numopt.Parameter(rng.standard_normal(s, dtype=np.float32) * np.float32(0.01)) for s in work.shapes]
    opt = cls(params, **ALGORITHMS[algo][0])
    for p in params:
        p.grad = rng.standard_normal(p.shape, dtype=np.float32) * np.float32(0.01)
    opt.step()  # compile, pack grads, create state
    return opt


def bench_numopt(algo: str, work: Workload, **timing: Any) -> dict | None:
    """Time numopt's ``step()`` of ``algo`` on ``work`` alone (median/min seconds)."""
    opt = numopt_optimizer(algo, work)
    return None if opt is None else time_call(opt.step, **timing)


# -- torch side (a worker process) -----------------------------------------------------------------

_TORCH_WORKER = r"""
import json, sys
import torch
from numopt.bench import sample_times
torch.set_num_threads(int(sys.argv[1]))
reply = lambda obj: print(json.dumps(obj), flush=True)
reply({"torch": torch.__version__})
opts = {}
for line in sys.stdin:
    job = json.loads(line)
    if job["cmd"] == "setup":  # one optimizer per mode over the same parameters
        opts = {}
        cls = getattr(torch.optim, job["algo"], None)
        errors = {}
        if cls is not None:
            gen = torch.Generator().manual_seed(0)
            params = [torch.randn(*s, generator=gen) * 0.01 for s in job["shapes"]]
            for p in params:
                p.requires_grad_(True)
                p.grad = torch.randn(*p.shape, generator=gen) * 0.01
            for mode in ("default", "foreach", "fused"):
                kw = dict(job["kwargs"])
                if mode != "default":
                    kw[mode] = True
                try:
                    opt = cls(params, **kw)
                    with torch.no_grad():
                        for _ in range(2):
                            opt.step()
                    opts[mode] = opt
                except (RuntimeError, TypeError, ValueError) as e:
                    errors[mode] = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
        reply({"modes": sorted(opts), "errors": errors})
    elif job["cmd"] == "time":  # each mode in turn: one hand-over between the processes per round
        with torch.no_grad():
            reply({m: sample_times(opts[m].step, **job["timing"]) for m in job["modes"]})
    elif job["cmd"] == "mixed":
        # numopt's step in a process that also runs torch (two thread pools): the "one process" row
        opts = {}
        from numopt.bench import bench_numopt, Workload
        x = torch.randn(256, 256)
        for _ in range(3):
            (x @ x).sum()
        reply(bench_numopt(job["algo"], Workload("mixed", [tuple(s) for s in job["shapes"]]), **job["timing"]))
    else:
        break
"""

#: Seconds to let one process's thread pool go idle before the other process runs (libgomp spins
#: for a while after each parallel region before it sleeps).
_HANDOVER_S = 0.02


class TorchWorker:
    """torch.optim timed in its own process, driven turn by turn from the benchmark's process.

    The worker stays alive for the whole run: for each row it builds torch's
    optimizers once, then times them when asked, so that rounds of numopt and
    torch alternate and a slow spell of the machine hits both sides alike.
    Only one of the two processes works at a time.
    """

    def __init__(self, threads: int) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        self._err = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _TORCH_WORKER, str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            env=env,
        )
        self.version = self._recv()["torch"]
        self.modes: list[str] = []
        self.errors: dict[str, str] = {}

    @classmethod
    def start(cls, threads: int) -> TorchWorker | None:
        """A running worker, or ``None`` if torch is not importable."""
        try:
            return cls(threads)
        except RuntimeError as e:
            if "No module named 'torch'" in str(e):
                return None
            raise

    def _recv(self) -> Any:
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait()
            self._err.seek(0)
            raise RuntimeError(f"torch benchmark worker failed:\n{self._err.read()[-2000:]}")
        return json.loads(line)

    def ask(self, **job: Any) -> Any:
        time.sleep(_HANDOVER_S)
        self._proc.stdin.write(json.dumps(job) + "\n")
        self._proc.stdin.flush()
        out = self._recv()
        time.sleep(_HANDOVER_S)
        return out

    def setup(self, algo: str, shapes: list[tuple[int, ...]]) -> None:
        out = self.ask(cmd="setup", algo=algo, shapes=shapes, kwargs=ALGORITHMS[algo][0])
        self.modes, self.errors = out["modes"], out["errors"]

    def time(self, **timing: Any) -> dict[str, list[float]]:
        """Step times of every mode that :meth:`setup` built, one mode after the other."""
        return self.ask(cmd="time", modes=self.modes, timing=timing)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
            self._proc.stdin.close()
            self._proc.wait(timeout=60)
        self._err.close()


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
        "| optimizer | workload | numopt ms | GB/s | roofline GB/s | % roofline | torch default ms | torch foreach ms "
        "| torch fused ms | x default | x foreach | x fused |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        t, s = r.torch_ms, r.speedup
        cells = [r.algo, r.workload, _fmt(r.numopt_ms, ".3f"), _fmt(r.gbps, ".1f"), _fmt(r.roofline_gbps, ".1f")]
        cells.append(_fmt(r.pct_roofline, ".0f"))
        cells += [_fmt(t.get(m), ".3f") for m in ("default", "foreach", "fused")]
        cells += [_fmt(s.get(m), ".2f") for m in ("default", "foreach", "fused")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bench_row(
    algo: str, work: Workload, worker: TorchWorker | None, rounds: int, timing: dict, roofs: dict | None = None
) -> Row | None:
    """One table row: numopt's step, the roofline kernel and torch's modes, timed in alternating rounds.

    Each round times numopt, then the no-math kernel of the same access pattern,
    then each torch mode in the worker. Times are medians over all rounds; the
    ratios (% of roofline, speed-ups) are medians of the per-round ratios, each
    taken between neighbours in time: this machine's bandwidth can jump by 1.5x
    from one second to the next, and a jump between rounds then moves both
    sides of a ratio instead of one. (So a ratio can differ a little from the
    ratio of the two printed medians.)
    """
    opt = numopt_optimizer(algo, work)
    if opt is None:
        return None
    opt.step()
    _, rw, ro = ALGORITHMS[algo]
    roof = None
    if work.size >= 1_000_000:
        roofs = {} if roofs is None else roofs  # roofline arrays reused by the rows of a workload
        if (rw, ro) not in roofs:
            roofs[rw, ro] = roofline_kernel(work.size, rw, ro)
        roof = roofs[rw, ro]
    if worker is not None:
        worker.setup(algo, work.shapes)
    samples: dict[str, list[list[float]]] = {}  # contender -> one list of times per round
    for _ in range(rounds):
        samples.setdefault("numopt", []).append(sample_times(opt.step, **timing))
        if roof is not None:
            samples.setdefault("roofline", []).append(sample_times(roof[0], **timing))
        if worker is not None:
            for mode, times in worker.time(**timing).items():
                samples.setdefault(mode, []).append(times)
    del opt, roof

    def pooled(name: str) -> float:
        return statistics.median([t for times in samples[name] for t in times])

    def ratio(name: str) -> float:
        """Median over rounds of (``name``'s median time) / (numopt's median time)."""
        pairs = zip(samples[name], samples["numopt"])
        return statistics.median(statistics.median(a) / statistics.median(b) for a, b in pairs)

    seconds = pooled("numopt")
    nbytes = work.size * 4 * (2 * rw + ro)
    row = Row(algo, work.name, work.size, seconds * 1e3, gbps=nbytes / seconds / 1e9)
    if "roofline" in samples:
        row.roofline_gbps = nbytes / pooled("roofline") / 1e9
        row.pct_roofline = 100 * ratio("roofline")
    if worker is not None:
        for mode in ("default", "foreach", "fused"):
            row.torch_ms[mode] = pooled(mode) * 1e3 if mode in samples else None
            row.speedup[mode] = ratio(mode) if mode in samples else None
    return row


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
    timing = {"min_repeats": 5, "budget_s": 0.2} if args.quick else {"min_repeats": 7, "budget_s": 1.5}
    kinds = {k.strip() for k in args.workloads.split(",")}
    if args.device == "cuda":
        from .bench_cuda import run_cuda

        return run_cuda(algos, sizes, kinds, timing, args)
    work = workloads(sizes if "flat" in kinds else [], model="model" in kinds, tiny="tiny" in kinds)

    rounds = 3 if args.quick else 5
    per_round = {"min_repeats": -(-timing["min_repeats"] // rounds), "budget_s": timing["budget_s"] / rounds}
    print(f"numopt bench: {threads} threads, optimizers {', '.join(algos)}", flush=True)
    worker = None if args.no_torch else TorchWorker.start(threads)
    if worker is None and not args.no_torch:
        print("torch is not importable: numopt figures only")
    rows: list[Row] = []
    mixed = None
    try:
        for w in work:
            roofs: dict = {}  # one set of roofline arrays per access pattern, for this workload's rows
            for algo in algos:
                row = bench_row(algo, w, worker, rounds, per_round, roofs)
                if row is not None:
                    rows.append(row)
                    print(f"  {algo:<9} {w.name:<22} {row.numopt_ms:10.3f} ms", flush=True)
            del roofs
        model = next((w for w in work if w.name.startswith("gpt")), None)
        if worker is not None and model is not None:
            mixed = {"algo": "Adam" if "Adam" in algos else algos[0]}
            mixed["ms"] = worker.ask(cmd="mixed", shapes=model.shapes, timing=timing, **mixed)["median_s"] * 1e3
    finally:
        if worker is not None:
            worker.close()

    result = {"machine": machine_info(threads), "rows": [asdict(r) for r in rows]}
    if worker is not None:
        result["machine"]["torch"] = worker.version
    if mixed is not None:
        result["mixed_process"] = mixed
    if not args.quick:
        result["cold_start_s"] = {"warm_cache": cold_start(True), "no_cache": cold_start(False)}

    m = result["machine"]
    print()
    print(
        f"machine: {m['cpu']}, {m['threads']} threads ({m['threading_layer']}), numopt {m['numopt']}, "
        f"numba {m['numba']}, torch {m.get('torch', 'n/a')}"
    )
    print(render_table(rows))
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
