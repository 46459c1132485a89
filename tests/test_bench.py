"""`python -m numopt bench` runs end to end (tiny sizes; no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

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


def test_every_benched_optimizer_has_a_roofline_kernel_for_its_streams() -> None:
    from numopt.bench._workloads import _STREAMS

    for name, (_, rw, ro) in algorithms().items():
        assert rw in _STREAMS and ro == 1, (name, rw, ro)


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
            "sgd,lion",
            "--sizes",
            "1000000",
            "--workloads",
            "flat,tiny",
            "--state-dtype",
            "int8",
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
    assert row["torch_ms"]["reference"] is None  # SGD: torch.optim's own is the reference
    lion = next(r for r in data["rows"] if r["algo"] == "Lion")  # torch.optim lacks it: its reference is timed
    assert lion["torch_ms"]["default"] is None and lion["torch_ms"]["reference"] > 0
    assert lion["speedup"]["reference"] > 0 and "| Lion | flat 1e6 |" in proc.stdout
    # --state-dtype int8: rows with 8-bit state, whose reference column is numopt's float32-state step
    compact = next(r for r in data["rows"] if r["algo"] == "SGD+int8" and r["workload"] == "flat 1e6")
    assert compact["torch_ms"]["reference"] > 0 and compact["torch_ms"]["default"] > 0
    assert compact["pct_roofline"] > 0 and "| Lion+int8 | flat 1e6 |" in proc.stdout
    from benchmarks.to_markdown import from_numopt_bench

    assert "| SGD |" in from_numopt_bench(data)


def _bitsandbytes_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


@pytest.mark.parametrize("installed", [False, True], ids=["without-bitsandbytes", "with-bitsandbytes"])
def test_int8_rows_time_bitsandbytes_when_it_is_installed(tmp_path, installed: bool) -> None:
    # AdamW+int8 next to bitsandbytes' CPU AdamW8bit: an extra column when bitsandbytes imports, else
    # no column and a one-line note; hidden here by a module of that name that fails to import
    # where bitsandbytes is not installed (CI), a stand-in of that name: torch's AdamW as "AdamW8bit"
    env = dict(os.environ)
    if not installed:
        (tmp_path / "bitsandbytes.py").write_text("raise ImportError(\"No module named 'bitsandbytes'\")\n")
    elif not _bitsandbytes_importable():
        (tmp_path / "bitsandbytes").mkdir()
        (tmp_path / "bitsandbytes" / "__init__.py").write_text(
            "import torch\n__version__ = 'stand-in'\n\n\nclass optim:\n    AdamW8bit = torch.optim.AdamW\n"
        )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp_path), env.get("PYTHONPATH")) if p)
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "numopt", "bench", "--quick", "--rounds", "1", "--threads", "1"]
    cmd += ["--optimizers", "adamw+int8", "--sizes", "5000", "--workloads", "flat", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    (row,) = data["rows"]
    assert row["algo"] == "AdamW+int8" and row["torch_ms"]["fused"] > 0  # torch's float32 step is still timed
    if installed:
        assert data["bitsandbytes"]["version"] and row["torch_ms"]["bitsandbytes"] > 0
        assert row["speedup"]["bitsandbytes"] > 0 and len(row["spread"]["bitsandbytes"]) == 2
        assert "| bitsandbytes 8-bit ms |" in proc.stdout and "| x bitsandbytes 8-bit |" in proc.stdout
        assert f"from bitsandbytes {data['bitsandbytes']['version']} (AdamW8bit" in proc.stdout
    else:
        assert "ImportError" in data["bitsandbytes"]["error"] and row["torch_ms"]["bitsandbytes"] is None
        assert "bitsandbytes 8-bit ms" not in proc.stdout
        assert "bitsandbytes: no 8-bit column (ImportError: No module named 'bitsandbytes')" in proc.stdout


def test_the_bitsandbytes_worker_mode_is_8_bit_and_on_the_cpu(monkeypatch) -> None:
    pytest.importorskip("torch")
    from numopt.bench._torch import BITSANDBYTES
    from numopt.bench._torch_worker import build

    assert BITSANDBYTES["AdamW"] == "AdamW8bit"
    if _bitsandbytes_importable():
        # the same shapes and options; 8-bit state from min_8bit_size=4096 elements on, as numopt's int8
        opts, errors = build("AdamW", [[5000], [10]], {"lr": 1e-3}, eight_bit="AdamW8bit")
        assert errors == {} and sorted(opts) == ["bitsandbytes", "default", "foreach", "fused"]
        opt = opts["bitsandbytes"].__self__
        big, small = opt.param_groups[0]["params"]
        assert str(opt.state[big]["state1"].dtype) == "torch.uint8" and big.device.type == "cpu"
        assert str(opt.state[small]["state1"].dtype) == "torch.float32"
        assert opt.param_groups[0]["lr"] == 1e-3
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import bitsandbytes -> ImportError
    opts, errors = build("Lion", [[5000]], {"lr": 1e-4}, eight_bit="Lion8bit")  # torch.optim lacks Lion
    assert opts == {} and errors["bitsandbytes"].split(":")[0] in ("ImportError", "ModuleNotFoundError")


def test_the_bitsandbytes_columns_appear_only_with_bitsandbytes_times() -> None:
    from numopt.bench import Row, render_table

    plain = Row("AdamW+int8", "flat 1e6", 10**6, 0.5, torch_ms={"fused": 1.0, "bitsandbytes": None})
    assert "bitsandbytes" not in render_table([plain])
    timed = Row("AdamW+int8", "flat 1e7", 10**7, 5.0, torch_ms={"fused": 9.0, "bitsandbytes": 200.0})
    timed.speedup["bitsandbytes"] = 40.0
    table = render_table([plain, timed]).splitlines()
    head = [c.strip() for c in table[0].strip("|").split("|")]
    assert head[-2] == "x bitsandbytes 8-bit" and "bitsandbytes 8-bit ms" in head
    assert table[2].endswith("| - | - |") and table[3].endswith("| 40.00 | - |")
    assert all(line.count("|") == table[0].count("|") for line in table)


def test_compact_state_rows_count_their_bytes() -> None:
    from numopt.bench._cpu import compact_streams, parse_row

    assert parse_row("AdamW+int8") == ("AdamW", False, "int8", None)
    assert parse_row("AdamW+bf16") == ("AdamW", False, "bfloat16", None)
    assert parse_row("AdamW+clip") == ("AdamW", True, None, None) and parse_row("Adam") == ("Adam", False, None, None)
    # AdamW: parameter 8 bytes, gradient 4, two state arrays; int8 adds a float32 scale per 256 elements
    per_element, reads = compact_streams(3, 1, "int8")
    assert per_element == pytest.approx(16 + 4 * 4 / 256) and reads == 2
    assert compact_streams(3, 1, "bfloat16") == (20, 3)


def test_bf16_parameter_rows_parse_and_count_their_bytes() -> None:
    from numopt.bench._cpu import compact_streams, parse_row

    # <optimizer>[+bf16p][+int8|+bf16]: the parameters' dtype, then the state's
    assert parse_row("AdamW+bf16p") == ("AdamW", False, None, "bfloat16")
    spec = parse_row("AdamW+bf16p+int8")
    assert (spec.optimizer, spec.clipped, spec.state_dtype, spec.param_dtype) == ("AdamW", False, "int8", "bfloat16")
    assert parse_row("Lion+bf16p+bf16") == ("Lion", False, "bfloat16", "bfloat16")
    # +clip stays a row of its own; composed or repeated suffixes are refused, naming the row
    for bad in ("AdamW+bf16p+clip", "AdamW+clip+int8", "AdamW+int8+bf16p", "AdamW+bf16p+bf16p", "AdamW+int8+int8"):
        with pytest.raises(ValueError, match=rf"row '{bad.replace('+', '[+]')}'"):
            parse_row(bad)
    # AdamW on bfloat16 parameters: param read + write 2 + 2, gradient 2, then the two state arrays:
    # float32 2 * 8, bfloat16 2 * 4, int8 2 * 2 * (1 + 4 / 256) (codes and the per-block scale)
    assert compact_streams(3, 1, None, "bfloat16") == (22, 4)
    assert compact_streams(3, 1, "bfloat16", "bfloat16") == (14, 2)
    per_element, reads = compact_streams(3, 1, "int8", "bfloat16")
    assert per_element == pytest.approx(6 + 4 * (1 + 4 / 256)) and reads == 1
    # the float32 step's 28 bytes against 10.06: the 2.8x the byte ratio names (28 / 10)
    assert 28 / per_element == pytest.approx(2.78, abs=0.01)
    # four state arrays (AdEMAMix): 30 bytes, the widest one-pass roofline kernel (8 + 6 * 4 = 32 bytes)
    assert compact_streams(4, 1, None, "bfloat16") == (30, 6)


def test_the_worker_builds_torch_on_a_bfloat16_model() -> None:
    torch = pytest.importorskip("torch")
    from numopt.bench._torch_worker import build

    opts, errors = build("AdamW", [[5000], [10]], {"lr": 1e-3}, dtype="bfloat16")
    assert errors == {} and sorted(opts) == ["default", "foreach", "fused"]  # fused AdamW takes bf16 on CPU
    opt = opts["fused"].__self__
    assert all(p.dtype == p.grad.dtype == torch.bfloat16 for p in opt.param_groups[0]["params"])


def test_bench_cli_bf16_parameter_rows(tmp_path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "numopt", "bench", "--quick", "--rounds", "1", "--threads", "1"]
    cmd += ["--optimizers", "adamw+bf16p,adamw+bf16p+int8", "--sizes", "5000", "--workloads", "flat"]
    proc = subprocess.run([*cmd, "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| AdamW+bf16p | flat 5e3 | " in proc.stdout and "| AdamW+bf16p+int8 | flat 5e3 | " in proc.stdout
    assert "+bf16p rows: bfloat16 parameters and gradients" in proc.stdout
    rows = {r["algo"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"AdamW+bf16p", "AdamW+bf16p+int8"}
    assert rows["AdamW+bf16p"]["bytes_per_param"] == 22
    assert rows["AdamW+bf16p+int8"]["bytes_per_param"] == pytest.approx(6 + 4 * (1 + 4 / 256), abs=1e-3)
    for row in rows.values():
        assert row["params"] == 5000 and row["numopt_ms"] > 0 and row["gbps"] > 0
        # the reference column: numopt's float32 step; torch's modes on the bfloat16 model, fused included
        assert row["torch_ms"]["reference"] > 0 and row["speedup"]["reference"] > 0
        assert row["torch_ms"]["fused"] > 0 and row["speedup"]["fused"] > 0
        assert row["pct_roofline"] is None  # no roofline kernel under 1e6 elements
    # --param-dtype adds the rows by option, composed with --state-dtype; +clip does not compose
    bad = subprocess.run([*cmd[:-6], "--optimizers", "adamw+bf16p+clip"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "+clip does not compose with +bf16p" in bad.stderr


def test_param_dtype_option_composes_with_state_dtype(monkeypatch) -> None:
    # the rows the options ask for, without timing them: bench_row is replaced by a recorder
    import numopt.bench as bench

    asked: list[str] = []
    monkeypatch.setattr(bench, "bench_row", lambda algo, *args: asked.append(algo))
    argv = ["--no-torch", "--quick", "--optimizers", "adamw,sgd", "--sizes", "1000", "--workloads", "flat"]
    bench.run([*argv, "--state-dtype", "int8", "--param-dtype", "bfloat16"])
    assert asked == ["AdamW", "SGD", "AdamW+int8", "SGD+int8", "AdamW+bf16p", "SGD+bf16p"] + [
        "AdamW+bf16p+int8",
        "SGD+bf16p+int8",
    ]
    with pytest.raises(SystemExit):
        bench.run([*argv, "--param-dtype", "float16"])


def test_bench_batched_minimize_line(tmp_path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "numopt", "bench", "--quick", "--no-torch", "--workloads", "minimize"]
    proc = subprocess.run([*cmd, "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "batched minimize, 100 LJ-13 clusters" in proc.stdout and "scipy L-BFGS-B loop" in proc.stdout
    b = json.loads(out.read_text())["batched_minimize"]
    assert b["clusters"] == 100 and b["numopt_converged"] > 0.9 and b["speedup"] > 0


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


def _row_with_ratios(roofline: list[float], default: list[float], medians: dict[str, float] | None = None):
    # a row built as bench_row builds one, from fabricated per-round ratios (no timing):
    # each ratio's "medians" value is the ratio of the printed median times (default: the rounds' median)
    import statistics

    from numopt.bench import Row, add_ratio

    medians = medians or {}
    row = Row("Adam", "flat 1e6", 10**6, 0.2, gbps=100.0, roofline_gbps=125.0, torch_ms={"default": 1.0})
    add_ratio(row, "roofline", roofline, medians.get("roofline", statistics.median(roofline)))
    add_ratio(row, "default", default, medians.get("default", statistics.median(default)))
    return row


def test_quiet_rows_show_their_spread_and_no_noise_mark() -> None:
    from numopt.bench import noise_line, render_table

    row = _row_with_ratios([0.80, 0.79, 0.81, 0.80, 0.82], [5.0, 5.1, 4.9, 5.0, 5.2])
    assert row.noise == [] and noise_line([row]) is None
    line = render_table([row]).splitlines()[-1]
    assert "| 80 (80–81) |" in line and "| 5.00 (5.00–5.10) |" in line and line.endswith("| - |")


def test_rows_whose_rounds_disagree_are_marked() -> None:
    from numopt.bench import render_table

    # the rounds spread far beyond a quarter of their median
    wide = _row_with_ratios([0.8, 0.8, 0.8], [2.0, 85.0, 8778.0])
    assert wide.noise and "x default rounds" in wide.noise[0]
    assert "| ! x default rounds 43.50–4431.50 |" in render_table([wide])
    # tight rounds, but the printed medians imply another ratio: 8778.17 beside medians giving 85x
    contradicted = _row_with_ratios([0.8, 0.8, 0.8], [8778.0, 8778.17, 8779.0], {"default": 85.0})
    assert contradicted.noise == ["x default 8778.17 but medians give 85.00"]
    # 100% of roofline beside 89.3 vs 176.3 GB/s
    half = _row_with_ratios([1.0, 1.0, 1.0], [5.0, 5.0, 5.0], {"roofline": 89.3 / 176.3})
    assert half.noise == ["% roofline 100 but medians give 51"]
    # faster than the no-math kernel with the same streams: impossible, and said so
    beyond = _row_with_ratios([1.48, 1.50, 1.52], [5.0, 5.0, 5.0])
    assert beyond.noise == ["150% of roofline is impossible"]


def test_noise_line_closes_the_report_only_when_rows_are_marked(capsys) -> None:
    from numopt.bench._report import print_report

    machine = {"cpu": "Test CPU", "threads": 2, "threading_layer": "omp", "numopt": "0", "numba": "0"}
    quiet = _row_with_ratios([0.8, 0.8, 0.8], [5.0, 5.0, 5.0])
    print_report({"machine": machine}, [quiet])
    assert "noisy" not in capsys.readouterr().out
    noisy = _row_with_ratios([0.8, 0.8, 0.8], [2.0, 85.0, 8778.0])
    print_report({"machine": machine}, [quiet, noisy])
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert last.startswith("! 1 of 2 rows:") and "too noisy" in last
    assert "--threads" in last and "--rounds" in last and "quieter machine" in last


def test_json_rows_carry_the_spread_and_the_noise(tmp_path) -> None:
    from dataclasses import asdict

    from numopt.bench import Row, render_table
    from numopt.bench._report import write_json

    rows = [_row_with_ratios([0.80, 0.79, 0.81], [5.0, 5.1, 4.9]), _row_with_ratios([0.8] * 3, [2.0, 85.0, 8778.0])]
    path = tmp_path / "bench.json"
    write_json({"rows": [asdict(r) for r in rows]}, str(path))
    data = json.loads(path.read_text())["rows"]
    assert data[0]["spread"]["roofline"] == pytest.approx([79.5, 80.5])
    assert data[0]["spread"]["default"] == pytest.approx([4.95, 5.05])
    assert data[0]["noise"] == [] and data[1]["noise"] == ["x default rounds 43.50–4431.50"]
    assert render_table([Row(**r) for r in data]) == render_table(rows)  # benchmarks/to_markdown reads it back
