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
