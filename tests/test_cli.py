from __future__ import annotations

import subprocess
import sys


def test_info_prints_versions_threads_and_cuda() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "numopt", "info"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    for key in ("numopt", "numba", "numpy", "threads", "threading layer", "simd", "cuda"):
        assert any(line.startswith(key) for line in out.splitlines()), (key, out)
