"""`python -m numopt bench` runs end to end (tiny sizes; no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

from numopt.bench import Workload, algorithms, gpt_like_shapes
from numopt.optimizer import registered


def test_gpt_like_model_shape() -> None:
    w = Workload("gpt", gpt_like_shapes())
    assert 140 <= len(w.shapes) <= 160 and 25e6 <= w.size <= 30e6


def test_algorithms_are_derived_from_the_registry() -> None:
    # every elementwise optimizer is benched, with the memory pattern its declaration implies
    table = algorithms()
    assert set(table) == {c.__name__ for c in registered(elementwise=True)}
    assert table["Adam"] == ({"lr": 1e-3}, 3, 1)  # param, exp_avg, exp_avg_sq updated; grad read
    assert table["SGD"] == ({"lr": 1e-3, "momentum": 0.9}, 2, 1)  # momentum turns the buffer on
    assert table["RMSprop"][1:] == (2, 1)  # neither centered nor momentum: square_avg alone


def test_bench_cli_writes_json(tmp_path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "numopt",
            "bench",
            "--quick",
            "--optimizers",
            "sgd",
            "--sizes",
            "1000000",
            "--workloads",
            "flat,tiny",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| SGD | flat 1e6 |" in proc.stdout
    data = json.loads(out.read_text())
    assert {r["workload"] for r in data["rows"]} == {"flat 1e6", "tiny 10 tensors"}
    assert data["machine"]["threads"] >= 1
    row = data["rows"][0]
    assert row["pct_roofline"] > 0 and row["torch_ms"]["default"] > 0  # torch timed in its worker
    from benchmarks.to_markdown import from_numopt_bench

    assert "| SGD |" in from_numopt_bench(data)


def _pytest_benchmark_run(impl: str, medians: dict[str, float]) -> dict:
    return {
        "machine_info": {"cpu": {"brand_raw": "Test CPU"}},
        "benchmarks": [
            {"group": group, "extra_info": {"impl": impl}, "stats": {"median": m}} for group, m in medians.items()
        ],
    }


def test_to_markdown_merges_the_numopt_and_torch_runs(tmp_path) -> None:
    # the README's flow: numopt and torch timed in two pytest-benchmark runs, one table with both
    numopt_run = _pytest_benchmark_run("numopt", {"Adam|flat 1e6": 0.002})
    torch_run = _pytest_benchmark_run("torch-fused", {"Adam|flat 1e6": 0.003})
    torch_run["benchmarks"] += _pytest_benchmark_run("torch-default", {"Adam|flat 1e6": 0.02})["benchmarks"]
    paths = []
    for name, run in (("numopt.json", numopt_run), ("torch.json", torch_run)):
        (tmp_path / name).write_text(json.dumps(run))
        paths.append(str(tmp_path / name))
    proc = subprocess.run(
        [sys.executable, "benchmarks/to_markdown.py", *paths], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "| Adam | flat 1e6 | 2.000 | 20.000 | - | 3.000 | 10.00 | 1.50 |" in proc.stdout
    helped = subprocess.run([sys.executable, "benchmarks/to_markdown.py", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "usage" in helped.stdout
