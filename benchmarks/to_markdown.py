"""Turn pytest-benchmark JSON (or `python -m numopt bench --json`) into one markdown table.

    python benchmarks/to_markdown.py numopt.json [torch.json ...]

pytest-benchmark files are merged: the README's flow times numopt and torch in two runs
(`-k test_numopt`, then `-k test_torch`, one OpenMP pool per process), and the table puts
both side by side. A `python -m numopt bench --json` file is rendered on its own.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict


def from_pytest_benchmark(*runs: dict) -> str:
    """One table from one or more pytest-benchmark runs (rows matched by group, columns by impl)."""
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    for data in runs:
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
    cpus = {data.get("machine_info", {}).get("cpu", {}).get("brand_raw", "unknown CPU") for data in runs}
    return f"Measured on {', '.join(sorted(cpus))}.\n\n" + "\n".join(lines)


def from_numopt_bench(data: dict) -> str:
    from numopt.bench import Row, render_table

    m = data["machine"]
    rows = [Row(**r) for r in data["rows"]]
    return (
        f"Measured on {m['cpu']}, {m['threads']} threads ({m['threading_layer']}), numopt {m['numopt']}, "
        f"numba {m['numba']}, torch {m.get('torch', 'n/a')}.\n\n" + render_table(rows)
    )


def main(paths: list[str]) -> str:
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    if all("benchmarks" in data for data in runs):
        return from_pytest_benchmark(*runs)
    if len(runs) == 1:
        return from_numopt_bench(runs[0])
    raise SystemExit("to_markdown: give pytest-benchmark JSON files, or one `python -m numopt bench --json` file")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", help="pytest-benchmark JSON files (merged), or one numopt bench JSON")
    print(main(parser.parse_args().json))
