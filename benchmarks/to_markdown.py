"""Turn pytest-benchmark JSON (or `python -m numopt bench --json`) into a markdown table.

python benchmarks/to_markdown.py bench.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def from_pytest_benchmark(data: dict) -> str:
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    for b in data["benchmarks"]:
        groups[b["group"]][b["extra_info"]["impl"]] = b["stats"]["median"] * 1e3
    impls = ["numopt", "torch-default", "torch-foreach", "torch-fused"]
    lines = [
        "| optimizer | workload | " + " | ".join(f"{i} ms" for i in impls) + " | x default | x fused |",
        "|" + "---|" * (len(impls) + 4),
    ]
    for group, t in sorted(groups.items()):
        algo, work = group.split("|")
        cells = [f"{t[i]:.3f}" if i in t else "-" for i in impls]
        ratios = [
            f"{t[i] / t['numopt']:.2f}" if i in t and "numopt" in t else "-" for i in ("torch-default", "torch-fused")
        ]
        lines.append(f"| {algo} | {work} | " + " | ".join(cells + ratios) + " |")
    info = data.get("machine_info", {})
    cpu = info.get("cpu", {}).get("brand_raw", "unknown CPU")
    return f"Measured on {cpu}.\n\n" + "\n".join(lines)


def from_numopt_bench(data: dict) -> str:
    from numopt.bench import Row, render_table

    m = data["machine"]
    rows = [Row(**r) for r in data["rows"]]
    return (
        f"Measured on {m['cpu']}, {m['threads']} threads ({m['threading_layer']}), numopt {m['numopt']}, "
        f"numba {m['numba']}, torch {m.get('torch', 'n/a')}.\n\n" + render_table(rows)
    )


def main(path: str) -> str:
    with open(path) as f:
        data = json.load(f)
    return from_pytest_benchmark(data) if "benchmarks" in data else from_numopt_bench(data)


if __name__ == "__main__":
    print(main(sys.argv[1]))
