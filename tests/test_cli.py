from __future__ import annotations

import subprocess
import sys


def test_info_prints_versions_threads_and_cuda() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "numopt", "info"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    for key in ("numopt", "numba", "numpy", "torch", "threads", "threading layer", "simd", "cuda"):
        assert any(line.startswith(key) for line in out.splitlines()), (key, out)
    import torch  # a test dependency: its version shows

    assert any(line.startswith("torch") and torch.__version__ in line for line in out.splitlines()), out


def test_bench_help_shows_no_rst_markup() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "numopt", "bench", "--help"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert "``" not in out and "python -m numopt bench: step times" in out
