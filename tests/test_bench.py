"""`python -m numopt bench` runs end to end (tiny sizes; no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import numopt.optim
from numopt.bench import Workload, algorithms, gpt_like_shapes


def test_gpt_like_model_shape() -> None:
    w = Workload("gpt", gpt_like_shapes())
    assert 140 <= len(w.shapes) <= 160 and 25e6 <= w.size <= 30e6


def test_algorithms_read_the_optimizer_classes(monkeypatch) -> None:
    class Declares:
        bench_kwargs = {"lr": 0.5}

        @classmethod
        def bench_streams(cls) -> tuple[int, int]:
            return 3, 1

    class Silent:
        pass

    monkeypatch.setattr(numopt.optim, "Declares", Declares, raising=False)
    monkeypatch.setattr(numopt.optim, "Silent", Silent, raising=False)
    monkeypatch.setattr(numopt.optim, "__all__", ["Declares", "Silent"])
    assert algorithms() == {"Declares": ({"lr": 0.5}, 3, 1)}
    # TODO(registry): remove once classes declare bench_kwargs (no class declares: the hand-typed table)
    monkeypatch.setattr(numopt.optim, "__all__", ["Silent"])
    table = algorithms()
    assert table["Adam"] == ({"lr": 1e-3}, 3, 1) and table["SGD"][1:] == (2, 1)


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
