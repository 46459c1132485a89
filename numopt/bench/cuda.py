"""``python -m numopt bench --device cuda``: step times on the GPU, next to torch.optim on CUDA.

For every optimizer with CUDA kernels, on CUDA parameters (one flat tensor at
several sizes, and the GPT-like model of ``numopt.bench``):

* numopt's ``step()``, timed with CUDA events around each step (GPU time,
  launch overhead included) after warm-up;
* the bytes the step must move (its streams, as in ``numopt.bench.algorithms()``)
  over that time, as GB/s and as % of the GPU's peak memory bandwidth
  (memory clock x bus width from the driver) and of a measured no-math stream
  kernel over the same streams;
* ``torch.optim`` on CUDA tensors in its default, ``foreach`` and ``fused``
  modes, in a worker process, when torch with CUDA is importable;
* with ``--state-dtype``, rows ``<optimizer>+int8`` / ``+bf16``: numopt's step with
  that compact state in GPU memory, its GB/s from the bytes compact state moves
  (no stream-kernel or torch columns: those move float32 state).

On a machine without a usable GPU (or under ``NUMBA_ENABLE_CUDASIM``) it says
so and returns without timing anything.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from ._cpu import compact_streams, numopt_optimizer, parse_row
from ._report import GpuRow, fmt, render_gpu_table, write_json
from ._timing import time_events
from ._torch import WORKER
from ._workloads import Workload, algorithms, stream_bytes, workloads

__all__ = ["GpuRow", "cuda_status", "peak_bandwidth_gbps", "render_gpu_table", "run_cuda"]


def cuda_status() -> tuple[bool, str]:
    """``(usable, description)``: whether numba finds a real GPU, and which (or why not)."""
    try:
        from numba import cuda
        from numba.core import config
    except ImportError as e:  # pragma: no cover - depends on the installation
        return False, f"numba's CUDA target is not installed ({e}); pip install 'numopt[cuda]'"
    if config.ENABLE_CUDASIM:
        return False, "NUMBA_ENABLE_CUDASIM is set: kernels run in the simulator, which has no timings"
    try:
        if not cuda.is_available():
            return False, "no CUDA driver or GPU found"
        dev = cuda.get_current_device()
        name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    except Exception as e:  # the driver can fail in many ways; report, do not crash
        return False, f"CUDA is not usable: {type(e).__name__}: {e}"
    return True, name


def peak_bandwidth_gbps() -> float | None:
    """The current GPU's theoretical memory bandwidth, GB/s (DDR: 2 transfers per memory clock)."""
    from numba import cuda

    dev = cuda.get_current_device()
    try:
        clock_khz = int(dev.MEMORY_CLOCK_RATE)
        bus_bits = int(dev.GLOBAL_MEMORY_BUS_WIDTH)
    except Exception:  # attribute missing in this driver
        return None
    if clock_khz <= 0 or bus_bits <= 0:
        return None
    return 2 * clock_khz * 1e3 * (bus_bits / 8) / 1e9


def time_gpu(fn: Callable[[], Any], *, min_repeats: int = 7, budget_s: float = 1.0, warmup: int = 3) -> dict:
    """Median/min seconds of GPU time of ``fn()``, measured with CUDA events around each call."""
    from numba import cuda

    return time_events(fn, cuda.event, cuda.synchronize, min_repeats=min_repeats, budget_s=budget_s, warmup=warmup)


def roofline_gpu(n: int, rw: int, ro: int = 1, **timing: Any) -> dict:
    """Time the no-math pass over ``rw`` read-write and ``ro`` (= 1) read-only float32 streams of ``n``."""
    from numba import cuda

    from ..kernels.cuda import launch_config
    from ..kernels.cuda.memory import full
    from ..kernels.cuda.stream import stream_

    arrays = [full(n, 0.0, np.float32) for _ in range(1 + rw)]
    arrays += [arrays[1]] * (4 - rw)  # unused slots
    blocks, threads = launch_config(n)
    t = time_gpu(lambda: stream_[blocks, threads](*arrays, rw), **timing)
    cuda.synchronize()
    t["bytes"] = stream_bytes(n, rw, ro)
    t["gbps"] = t["bytes"] / t["median_s"] / 1e9
    return t


def bench_numopt_cuda(algo: str, work: Workload, **timing: Any) -> dict | None:
    """numopt's ``step()`` on CUDA parameters of ``work``'s shapes (float32); a row ``<optimizer>+int8`` or
    ``+bf16``: with that compact state (in GPU memory)."""
    from numba import cuda

    base, _, state_dtype, _ = parse_row(algo)
    kwargs = {**algorithms()[base][0], **({"state_dtype": state_dtype} if state_dtype else {})}
    opt = numopt_optimizer(base, work, kwargs, to_device=cuda.to_device)
    return None if opt is None else time_gpu(opt.step, **timing)


def bench_torch_cuda(tasks: list[dict], timing: dict) -> dict | None:
    """torch.optim timings on CUDA tensors in a worker process; ``None`` without torch (or torch without CUDA).

    The worker is :mod:`numopt.bench._torch_worker` with ``--cuda``: ``tasks`` and ``timing`` in, one reply out.
    """
    try:
        proc = subprocess.run(
            [*WORKER, "--cuda"],
            input=json.dumps({"tasks": tasks, "timing": timing}),
            capture_output=True,
            text=True,
            env=dict(os.environ),
            timeout=3600,
        )
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        if "No module named 'torch'" in proc.stderr:
            return None
        raise RuntimeError(f"torch CUDA benchmark worker failed:\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out if out["cuda"] else None


def run_cuda(algos: list[str], sizes: list[int], kinds: set[str], timing: dict, args: Any) -> dict:
    """The ``--device cuda`` benchmark (``args``: the parsed ``bench`` options)."""
    usable, device = cuda_status()
    if not usable:
        print(f"numopt bench --device cuda: {device}; no GPU timings on this machine")
        return {"device": "cuda", "available": False, "reason": device}
    from numba import cuda

    import numopt

    def on_gpu(algo: str) -> bool:
        try:
            getattr(numopt, parse_row(algo).optimizer)([numopt.Parameter(cuda.device_array(1, np.float32))])
        except NotImplementedError:
            return False
        return True

    algos = [a for a in algos if on_gpu(a)]
    work = workloads(sizes if "flat" in kinds else [], model="model" in kinds, tiny="tiny" in kinds)
    peak = peak_bandwidth_gbps()
    print(f"numopt bench --device cuda: {device}, peak memory bandwidth {fmt(peak, '.0f')} GB/s", flush=True)
    print(f"optimizers {', '.join(algos)}", flush=True)
    table = algorithms()
    stream: dict[tuple[int, int], dict] = {}
    rows: list[GpuRow] = []
    for algo in algos:
        state_dtype = parse_row(algo).state_dtype
        _, rw, ro = table[parse_row(algo).optimizer]
        for w in work:
            res = bench_numopt_cuda(algo, w, **timing)
            if res is None:
                continue
            if state_dtype is None:
                nbytes = stream_bytes(w.size, rw, ro)
            else:  # compact state: its own bytes per element (int8: the per-block scales included)
                nbytes = compact_streams(rw, ro, state_dtype)[0] * w.size
            row = GpuRow(algo, w.name, w.size, res["median_s"] * 1e3, nbytes / res["median_s"] / 1e9)
            if peak:
                row.pct_peak = 100 * row.gbps / peak
            if w.size >= 1_000_000 and state_dtype is None:  # (the stream kernel moves float32 streams)
                if (w.size, rw) not in stream:
                    stream[(w.size, rw)] = roofline_gpu(w.size, rw, ro, **timing)
                row.pct_stream = 100 * row.gbps / stream[(w.size, rw)]["gbps"]
            rows.append(row)
            print(f"  {algo:<9} {w.name:<22} {row.numopt_ms:10.3f} ms  {row.gbps:7.0f} GB/s", flush=True)

    torch_out = None
    plain = [r for r in rows if parse_row(r.algo).state_dtype is None]  # (torch.optim keeps float32 state)
    if not args.no_torch and plain:
        tasks = [
            {
                "algo": r.algo,
                "workload": r.workload,
                "kwargs": table[r.algo][0],
                "shapes": next(w.shapes for w in work if w.name == r.workload),
            }
            for r in plain
        ]
        print("timing torch.optim on CUDA in a worker process ...", flush=True)
        torch_out = bench_torch_cuda(tasks, timing)
        if torch_out is None:
            print("torch with CUDA is not importable: numopt figures only")
        else:
            for r, tr in zip(plain, torch_out["results"]):
                _, rw, ro = table[r.algo]
                for mode, t in tr["modes"].items():
                    ms = t["median_s"] * 1e3 if "median_s" in t else None
                    r.torch_ms[mode] = ms
                    r.torch_gbps[mode] = stream_bytes(r.params, rw, ro) / (ms / 1e3) / 1e9 if ms else None
                    r.speedup[mode] = ms / r.numopt_ms if ms else None

    result = {
        "device": "cuda",
        "available": True,
        "gpu": device,
        "numba_cuda": getattr(cuda, "implementation", "unknown"),
        "peak_gbps": peak,
        "rows": [asdict(r) for r in rows],
        "stream": [{"size": k[0], "rw": k[1], **v} for k, v in stream.items()],
        "torch": torch_out["torch"] if torch_out else None,
    }
    print()
    print(render_gpu_table(rows, peak))
    for (n, rw), v in stream.items():
        print(f"stream kernel, {rw} read-write + 1 read-only streams at {n:.0e}: {v['gbps']:.0f} GB/s")
    write_json(result, args.json)
    return result
