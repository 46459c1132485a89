"""``python -m numopt bench``: step times on this machine, side by side with torch.optim.

What is measured, for every optimizer numopt has:

* the machine's memory *roofline* for the optimizer's access pattern: a kernel
  with no math that reads and writes the same streams (Adam: 4 reads, 3 writes),
  over arrays holding real (written) data;
* numopt's ``step()`` on one flat tensor at several sizes, on a GPT-like model
  of ~150 tensors (~28M parameters) and on a tiny 10-tensor model (~1k parameters);
* ``torch.optim`` on the same workloads, in its default, ``foreach`` and ``fused``
  modes, timed in a separate worker process (two OpenMP pools in one process
  slow torch down, which would flatter numopt);
* with ``--state-dtype`` / ``--param-dtype bfloat16``, numopt's step with compact state
  (``Adam+int8``, ``Adam+bf16``) and on bfloat16 parameters and gradients (``Adam+bf16p``,
  ``Adam+bf16p+int8``), each against a one-pass roofline of its own bytes and numopt's float32
  step; torch's columns of a ``+bf16p`` row time torch on a bfloat16 model;
* with ``--state-dtype int8``, also bitsandbytes' CPU 8-bit optimizer of the
  ``+int8`` rows (``AdamW8bit`` next to ``AdamW+int8``), in the same worker, when
  bitsandbytes is installed (a measurement aid, not a dependency of numopt).

Each row is timed in alternating rounds (numopt, roofline, each torch mode,
then again), one process working at a time. Times are medians over all rounds;
ratios are medians of per-round ratios, each between neighbours in time: the
machine's speed drifts and jumps (a shared VM's memory bandwidth moved between
~50 and ~90 GB/s within seconds here), so the row's ratios hold even when its
absolute times do not. Each ratio is printed with its rounds' interquartile
range, ``median (lo–hi)``; a row whose rounds disagree (or whose ratio the
ratio of its printed medians contradicts, or that beats its roofline) is marked
``!``, and a closing line says when the machine was too noisy to trust them.
JIT compilation and first-step state creation are excluded (warm-up steps).

The package: ``_workloads`` (the optimizers and their streams, the shapes, the
roofline kernels), ``_timing`` (timing loops), ``_cpu`` (numopt's side and a
row), ``_torch`` (torch's parameters and modes, and the worker process it runs
in, ``_torch_worker``), ``_report`` (tables, JSON) and ``cuda`` (``--device cuda``).
``benchmarks/`` imports its workloads and helpers from here.
"""

from __future__ import annotations

import argparse
import inspect
from dataclasses import asdict

from ._cpu import (
    CLIP_SUFFIX,
    PARAM_SUFFIXES,
    STATE_SUFFIXES,
    bench_numopt,
    bench_row,
    cold_start,
    numopt_optimizer,
    parse_row,
)
from ._report import (
    NOISE_IQR,
    ROOFLINE_MAX,
    GpuRow,
    Row,
    add_ratio,
    machine_info,
    noise_line,
    print_report,
    render_gpu_table,
    render_table,
    threading_layer,
    write_json,
)
from ._timing import sample_times, time_call, time_events
from ._torch import TORCH_ERRORS, TORCH_MODES, TorchWorker, error_text, torch_optimizer, torch_params
from ._workloads import TINY_SHAPES, Workload, algorithms, gpt_like_shapes, roofline_kernel, stream_bytes, workloads

__all__ = [
    "TINY_SHAPES",
    "TORCH_ERRORS",
    "TORCH_MODES",
    "NOISE_IQR",
    "ROOFLINE_MAX",
    "GpuRow",
    "Row",
    "TorchWorker",
    "Workload",
    "add_ratio",
    "algorithms",
    "bench_numopt",
    "bench_row",
    "cold_start",
    "error_text",
    "gpt_like_shapes",
    "machine_info",
    "main",
    "noise_line",
    "numopt_optimizer",
    "render_gpu_table",
    "render_table",
    "roofline_kernel",
    "run",
    "sample_times",
    "stream_bytes",
    "threading_layer",
    "time_call",
    "time_events",
    "torch_optimizer",
    "torch_params",
    "workloads",
]


def run(argv: list[str] | None = None) -> dict:
    """Parse the ``bench`` options in ``argv``, time, print the table; the results (what ``--json`` writes)."""
    parser = argparse.ArgumentParser(
        prog="python -m numopt bench", description=__doc__.split("\n\n")[0].replace("``", "")
    )
    parser.add_argument("--quick", action="store_true", help="a run of about a minute")
    parser.add_argument("--threads", type=int, default=None, help="threads for numopt and torch")
    parser.add_argument("--optimizers", default=None, help="comma-separated, e.g. adam,sgd (default: all)")
    parser.add_argument("--sizes", default=None, help="flat tensor sizes, e.g. 1e6,1e7,1e8")
    parser.add_argument(
        "--workloads",
        default="flat,model,tiny,minimize",
        help="any of flat,model,tiny,minimize (default: all; minimize: batched L-BFGS on LJ-13 clusters vs scipy)",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="alternating rounds per row (default: 3 with --quick, else 5)"
    )
    parser.add_argument(
        "--state-dtype",
        default="",
        help="also time each optimizer with compact state: int8, bfloat16 or both (rows Adam+int8, Adam+bf16; "
        "their reference column is numopt's float32-state step; int8 rows also time bitsandbytes' CPU 8-bit "
        "optimizer, e.g. AdamW8bit, when it is installed); single rows also by name, e.g. adamw+int8",
    )
    parser.add_argument(
        "--param-dtype",
        default="",
        help="bfloat16: also time each optimizer that takes state_dtype on bfloat16 parameters and gradients "
        "(rows Adam+bf16p, and with --state-dtype Adam+bf16p+int8, Adam+bf16p+bf16; their reference column is "
        "numopt's float32 step, their torch columns torch on a bfloat16 model); single rows also by name, "
        "e.g. adamw+bf16p+int8",
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="write machine-readable results")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch.optim comparison")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="cuda: parameters on the GPU (numopt.bench.cuda)"
    )
    args = parser.parse_args(argv)

    import numopt

    if args.threads:
        numopt.set_num_threads(args.threads)
    threads = numopt.get_num_threads()
    names = {a.lower(): a for a in algorithms() if hasattr(numopt, a)}
    default = list(names.values())
    if "AdamW" in default:
        default.append("AdamW" + CLIP_SUFFIX)  # a transformer's step: clip_grad_norm_(1.0), then AdamW
    # optimizers that take state_dtype (compact per-element state)
    compactable = {a for a in names.values() if "state_dtype" in inspect.signature(getattr(numopt, a)).parameters}
    suffixes = _row_suffixes(parser, "--state-dtype", args.state_dtype, STATE_SUFFIXES)
    param_suffixes = _row_suffixes(parser, "--param-dtype", args.param_dtype, PARAM_SUFFIXES)
    # <optimizer>[+bf16p][+int8|+bf16] (parse_row reads them back); +clip composes with neither
    compact = {
        f"{k}{p}{s}": f"{a}{p}{s}"
        for k, a in names.items()
        if a in compactable
        for p in ("", *PARAM_SUFFIXES)
        for s in ("", *STATE_SUFFIXES)
        if p or s
    }
    names.update({f"{k}{CLIP_SUFFIX}": f"{a}{CLIP_SUFFIX}" for k, a in list(names.items())})
    names.update({k.lower(): v for k, v in compact.items()})
    if args.optimizers:
        wanted = [s.strip().lower() for s in args.optimizers.split(",") if s.strip()]
        unknown = [w for w in wanted if w not in names]
        for w in unknown:
            try:
                parse_row(w)
            except ValueError as e:  # a +clip composed with another suffix, a suffix twice: say why
                parser.error(str(e))
        if unknown:
            parser.error(f"unknown optimizers {unknown}; available: {sorted(names.values())}")
        algos = [names[w] for w in wanted]
    else:
        algos = default
    plain = [a for a in algos if a in compactable]
    algos += [a + s for s in suffixes for a in plain]
    algos += [a + p + s for p in param_suffixes for s in ("", *suffixes) for a in plain]
    if args.sizes:
        sizes = [int(float(s)) for s in args.sizes.split(",")]
    else:
        sizes = [10_000_000] if args.quick else [1_000_000, 10_000_000, 100_000_000]
    timing = {"min_repeats": 5, "budget_s": 0.2} if args.quick else {"min_repeats": 7, "budget_s": 1.5}
    kinds = {k.strip() for k in args.workloads.split(",")}
    if args.device == "cuda":
        from .cuda import run_cuda

        # +clip and bfloat16-parameter rows are CPU rows (bfloat16 parameters are host-only); compact-state rows
        # (+int8, +bf16) are timed on the GPU too
        suffixed = [a for a in algos if parse_row(a).clipped or parse_row(a).param_dtype is not None]
        if suffixed:
            print(f"--device cuda: rows {', '.join(suffixed)} are timed on the CPU only; left out")
            algos = [a for a in algos if a not in suffixed]

        return run_cuda(algos, sizes, kinds, timing, args)
    work = workloads(sizes if "flat" in kinds else [], model="model" in kinds, tiny="tiny" in kinds)

    rounds = max(1, args.rounds) if args.rounds else 3 if args.quick else 5
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
                    print(f"  {algo:<16} {w.name:<22} {row.numopt_ms:10.3f} ms", flush=True)
            del roofs
        model = next((w for w in work if w.name.startswith("gpt")), None)
        if worker is not None and model is not None:
            plain = [parse_row(a)[0] for a in algos]  # "AdamW+clip" -> "AdamW": the step the worker runs
            mixed = {"algo": "Adam" if "Adam" in plain else plain[0]}
            mixed["ms"] = worker.ask(cmd="mixed", shapes=model.shapes, timing=timing, **mixed)["median_s"] * 1e3
    finally:
        if worker is not None:
            worker.close()

    result = {"machine": machine_info(threads), "rows": [asdict(r) for r in rows]}
    result["noise"] = {
        "rounds": rounds,
        "marked_rows": sum(bool(r.noise) for r in rows),
        "iqr_limit": NOISE_IQR,
        "roofline_max_pct": ROOFLINE_MAX,
    }
    if worker is not None:
        result["machine"]["torch"] = worker.version
        if worker.eight_bit:  # an +int8 row asked for bitsandbytes: its version, or why it is absent
            result["bitsandbytes"] = worker.eight_bit
    if mixed is not None:
        result["mixed_process"] = mixed
    if "minimize" in kinds:
        from .lennard_jones import batched_minimize

        clusters, scipy_clusters = (100, 20) if args.quick else (1000, 100)
        result["batched_minimize"] = batched_minimize(clusters, scipy_clusters, rounds=min(rounds, 3))
    if not args.quick:
        result["cold_start_s"] = {"warm_cache": cold_start(True), "no_cache": cold_start(False)}

    print_report(result, rows)
    write_json(result, args.json)
    return result


def _row_suffixes(parser: argparse.ArgumentParser, option: str, text: str, table: dict[str, str]) -> list[str]:
    """The row suffixes (``"+int8"``) of a comma-separated dtype option (``"int8,bfloat16"``; a suffix's
    own name, ``"bf16"``, works too); an unknown name ends the command with the option's message."""
    suffixes = []
    for dtype in [d.strip() for d in text.split(",") if d.strip()]:
        suffix = next((k for k, v in table.items() if dtype in (v, k[1:])), None)
        if suffix is None:
            parser.error(f"unknown {option} {dtype!r}; expected any of {sorted(table.values())}")
        suffixes.append(suffix)
    return suffixes


def main(argv: list[str] | None = None) -> int:
    """``python -m numopt bench [options]``: run the benchmark (see ``--help``); 0 when it ran."""
    run(argv)
    return 0
