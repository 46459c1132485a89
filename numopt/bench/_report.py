"""The benchmark's rows, tables, machine description and JSON."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field

import numpy as np

from ._torch import TORCH_MODES


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


@dataclass
class GpuRow:
    algo: str
    workload: str
    params: int
    numopt_ms: float
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


def render_table(rows: list[Row]) -> str:
    head = (
        "| optimizer | workload | numopt ms | GB/s | roofline GB/s | % roofline | torch default ms | torch foreach ms "
        "| torch fused ms | x default | x foreach | x fused |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        t, s = r.torch_ms, r.speedup
        cells = [r.algo, r.workload, fmt(r.numopt_ms, ".3f"), fmt(r.gbps, ".1f"), fmt(r.roofline_gbps, ".1f")]
        cells.append(fmt(r.pct_roofline, ".0f"))
        cells += [fmt(t.get(m), ".3f") for m in TORCH_MODES]
        cells += [fmt(s.get(m), ".2f") for m in TORCH_MODES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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


def print_report(result: dict, rows: list[Row]) -> None:
    """The CPU benchmark's summary: the machine, the table, the mixed-process and cold-start lines."""
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
            f"{mp['ms']:.3f} ms (numopt alone: {fmt(alone, '.3f')} ms)"
        )
    if "cold_start_s" in result:
        c = result["cold_start_s"]
        print(
            f"cold start (import + first step): {c['warm_cache']:.2f} s with a warm cache, "
            f"{c['no_cache']:.2f} s without"
        )


def write_json(result: dict, path: str | None) -> None:
    """Write ``result`` to ``path`` (``--json``), if given, and say so."""
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {path}")
