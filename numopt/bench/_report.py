"""The benchmark's rows, tables, machine description and JSON."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ._torch import EIGHT_BIT, WORKER_MODES


@dataclass
class _Timed:
    """What every row of a report has: the optimizer, the workload, its size and numopt's step time."""

    algo: str
    workload: str
    params: int
    numopt_ms: float


@dataclass
class Row(_Timed):
    gbps: float | None = None
    roofline_gbps: float | None = None
    pct_roofline: float | None = None
    torch_ms: dict[str, float | None] = field(default_factory=dict)
    speedup: dict[str, float | None] = field(default_factory=dict)
    # ratio ("roofline" in %, or a torch mode) -> [lower, upper] quartile of its per-round ratios
    spread: dict[str, list[float]] = field(default_factory=dict)
    noise: list[str] = field(default_factory=list)  # why this row's figures are not to be trusted (empty: quiet)
    bytes_per_param: float | None = None  # bytes one step moves per parameter (GB/s and the roofline count these)


# A row's ratios are marked as noise when its rounds disagree: the interquartile range of the
# per-round ratios is over NOISE_IQR of their median, or the ratio of the printed medians falls
# outside that range widened by MEDIANS_SLACK on each side (the printed ratio and the printed
# times would contradict each other), or numopt beats the roofline kernel (the same streams,
# no math) by more than ROOFLINE_MAX %, which no step can do: the bandwidth moved between rounds.
NOISE_IQR = 0.25
MEDIANS_SLACK = 0.10
ROOFLINE_MAX = 115.0

NOISE_ADVICE = (
    "the machine was too noisy for the rows marked ! to be trusted (their rounds disagree); "
    "rerun them with fewer threads (--threads), more rounds (--rounds), on a quieter machine "
    "(nothing else running)"
)


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """The lower and upper quartile of ``values`` (both the value itself for one)."""
    if len(values) == 1:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def add_ratio(row: Row, name: str, per_round: Sequence[float], from_medians: float) -> None:
    """Set ``row``'s ratio ``name`` from its per-round ratios: the median, the spread, and any noise mark.

    ``name``: ``"roofline"`` (per-round roofline time / numopt time, set as % of roofline)
    or a torch mode (torch time / numopt time, the speed-up). ``from_medians``: the same
    ratio between the row's printed median times, which the printed ratio must not contradict.
    """
    roof = name == "roofline"
    scale = 100.0 if roof else 1.0
    values = sorted(scale * v for v in per_round)
    median = statistics.median(values)
    lo, hi = quartiles(values)
    pooled = scale * from_medians
    if roof:
        row.pct_roofline = median
    else:
        row.speedup[name] = median
    row.spread[name] = [lo, hi]
    label, spec = ("% roofline", ".0f") if roof else (f"x {name}", ".2f")
    if median > 0 and (hi - lo) / median > NOISE_IQR:
        row.noise.append(f"{label} rounds {lo:{spec}}–{hi:{spec}}")
    if not lo * (1 - MEDIANS_SLACK) <= pooled <= hi * (1 + MEDIANS_SLACK):
        row.noise.append(f"{label} {median:{spec}} but medians give {pooled:{spec}}")
    if roof and max(median, pooled) > ROOFLINE_MAX:
        row.noise.append(f"{max(median, pooled):.0f}% of roofline is impossible")


@dataclass
class GpuRow(_Timed):
    gbps: float
    pct_peak: float | None = None
    pct_stream: float | None = None
    torch_ms: dict[str, float | None] = field(default_factory=dict)
    torch_gbps: dict[str, float | None] = field(default_factory=dict)
    speedup: dict[str, float | None] = field(default_factory=dict)


def threading_layer(unset: str = "not initialized") -> str:
    """Numba's threading layer, or ``unset`` before its first parallel call."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return unset


def machine_info(threads: int) -> dict:
    import numba

    from .. import __version__
    from .._info import _cpu_model

    return {
        "numopt": __version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "threading_layer": threading_layer(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
    }


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def fmt_spread(x: float | None, spread: Sequence[float] | None, spec: str) -> str:
    """``x``, then its rounds' interquartile range as ``(lo–hi)`` when known."""
    if x is None or not spread:
        return fmt(x, spec)
    lo, hi = spread
    return f"{x:{spec}} ({lo:{spec}}–{hi:{spec}})"


#: the table's heading of each worker column: its time, its ratio
_COLUMNS = {
    "default": ("torch default ms", "x default"),
    "foreach": ("torch foreach ms", "x foreach"),
    "fused": ("torch fused ms", "x fused"),
    "reference": ("reference ms", "x reference"),
    EIGHT_BIT: ("bitsandbytes 8-bit ms", "x bitsandbytes 8-bit"),
}


def render_table(rows: list[Row]) -> str:
    """The CPU table: ratios as the median of the rounds and their interquartile range; ``!`` marks noise.

    The bitsandbytes columns are there only when a row timed bitsandbytes (``+int8`` rows, installed)."""
    modes = [m for m in WORKER_MODES if m != EIGHT_BIT or any(r.torch_ms.get(m) is not None for r in rows)]
    heads = ["optimizer", "workload", "numopt ms", "bytes/param", "GB/s", "roofline GB/s", "% roofline"]
    heads += [_COLUMNS[m][0] for m in modes] + [_COLUMNS[m][1] for m in modes] + ["noise"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in rows:
        t, s = r.torch_ms, r.speedup
        cells = [r.algo, r.workload, fmt(r.numopt_ms, ".3f"), fmt(r.bytes_per_param, ".4g"), fmt(r.gbps, ".1f")]
        cells.append(fmt(r.roofline_gbps, ".1f"))
        cells.append(fmt_spread(r.pct_roofline, r.spread.get("roofline"), ".0f"))
        cells += [fmt(t.get(m), ".3f") for m in modes]
        cells += [fmt_spread(s.get(m), r.spread.get(m), ".2f") for m in modes]
        cells.append("! " + "; ".join(r.noise) if r.noise else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def eight_bit_line(eight_bit: dict[str, str]) -> str:
    """What the bitsandbytes columns hold, or why they are absent (``result["bitsandbytes"]``)."""
    if "error" in eight_bit:
        return f"bitsandbytes: no 8-bit column ({eight_bit['error']})"
    return (
        f"bitsandbytes 8-bit: the +int8 row's optimizer from bitsandbytes {eight_bit['version']} (AdamW8bit for "
        "AdamW+int8) on CPU float32 torch parameters of the same shapes (bfloat16 for +bf16p+int8 rows), with "
        "the same options"
    )


def noise_line(rows: list[Row]) -> str | None:
    """One line saying the machine was too noisy and what to do, when any row is marked; else None."""
    marked = sum(bool(r.noise) for r in rows)
    if not marked:
        return None
    return f"! {marked} of {len(rows)} rows: {NOISE_ADVICE}."


def render_gpu_table(rows: list[GpuRow], peak: float | None) -> str:
    head = (
        "| optimizer | workload | numopt ms | GB/s | % peak | % stream | torch default ms | torch foreach ms "
        "| torch fused ms | torch fused % peak | x foreach | x fused |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        t, s = r.torch_ms, r.speedup
        fused_pct = 100 * r.torch_gbps["fused"] / peak if peak and r.torch_gbps.get("fused") else None
        lines.append(
            f"| {r.algo} | {r.workload} | {r.numopt_ms:.3f} | {r.gbps:.0f} | {fmt(r.pct_peak, '.0f')} "
            f"| {fmt(r.pct_stream, '.0f')} | {fmt(t.get('default'), '.3f')} | {fmt(t.get('foreach'), '.3f')} "
            f"| {fmt(t.get('fused'), '.3f')} | {fmt(fused_pct, '.0f')} | {fmt(s.get('foreach'), '.2f')} "
            f"| {fmt(s.get('fused'), '.2f')} |"
        )
    return "\n".join(lines)


def batched_minimize_line(b: dict) -> str:
    """The "batched minimize" line: numopt.minimize_batch against scipy's L-BFGS-B loop, per cluster."""
    line = (
        f"batched minimize, {b['clusters']} LJ-{b['atoms']} clusters (gtol=1e-5, ftol=0): numopt.minimize_batch "
        f"{b['numopt_ms_per_cluster']:.3f} ms per cluster, {b['numopt_converged']:.1%} converged"
    )
    if "numopt_at_global_minimum" in b:
        line += f", {b['numopt_at_global_minimum']:.1%} at the global minimum"
    if b["scipy_ms_per_cluster"] is None:
        return line + "; scipy not installed"
    scipy = f"scipy L-BFGS-B loop ({b['scipy_clusters']} clusters) {b['scipy_ms_per_cluster']:.3f} ms per cluster"
    return f"{line}; {scipy}: {b['speedup']:.1f}x"


def print_report(result: dict, rows: list[Row]) -> None:
    """The CPU benchmark's summary: the machine, the table, the mixed-process and cold-start lines."""
    m = result["machine"]
    print()
    print(
        f"machine: {m['cpu']}, {m['threads']} threads ({m['threading_layer']}), numopt {m['numopt']}, "
        f"numba {m['numba']}, torch {m.get('torch', 'n/a')}"
    )
    if rows:
        print(render_table(rows))
        print("ratios: median of the rounds (lower–upper quartile); ! marks rows whose rounds disagree")
        print(
            "reference: the implementation an optimizer torch lacks follows; for +clip rows numopt's "
            "utils.clip_grad_norm_ then step(); for +int8 / +bf16 / +bf16p rows numopt's float32 step (float32 "
            "parameters and state)"
        )
        if any("+bf16p" in r.algo for r in rows):
            print(
                "+bf16p rows: bfloat16 parameters and gradients (stochastic rounding), float32 state unless +int8 / "
                "+bf16; their torch columns: torch on a bfloat16 model (its state bfloat16 too)"
            )
    if "bitsandbytes" in result:
        print(eight_bit_line(result["bitsandbytes"]))
    if "mixed_process" in result:
        mp = result["mixed_process"]
        alone = next((r.numopt_ms for r in rows if r.workload.startswith("gpt") and r.algo == mp["algo"]), None)
        print(
            f"numopt {mp['algo']} step on the gpt-like model in a process that also runs torch: "
            f"{mp['ms']:.3f} ms (numopt alone: {fmt(alone, '.3f')} ms)"
        )
    if "batched_minimize" in result:
        print(batched_minimize_line(result["batched_minimize"]))
    if "cold_start_s" in result:
        c = result["cold_start_s"]
        print(
            f"cold start (import + first step): {c['warm_cache']:.2f} s with a warm cache, "
            f"{c['no_cache']:.2f} s without"
        )
    line = noise_line(rows)
    if line:
        print(line)


def write_json(result: dict, path: str | None) -> None:
    """Write ``result`` to ``path`` (``--json``), if given, and say so."""
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {path}")
