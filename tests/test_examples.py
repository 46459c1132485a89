"""Every script in examples/ runs as ``python examples/NAME.py OUT.png`` (quick settings) and writes its PNG."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

#: example -> (extra arguments, phrases its summary must print)
EXPECT: dict[str, tuple[list[str], list[str]]] = {
    "lr_and_momentum": ([], ["0.27         -1.16", "diverges", "momentum", "0.63"]),
    "digits_mlp": ([], ["AdamW + OneCycleLR", "test acc"]),
    "simulation_fit": (["--starts", "1"], ["Adam in the jitted loop", "numopt.minimize (L-BFGS)", "scipy L-BFGS-B"]),
    "torch_model": ([], ["bind + numopt.AdamW + OneCycleLR", "weights live in numopt's flat buffer: True"]),
    "checkpoint_resume": ([], ["resumed in a new process", "-> bit-identical"]),
    "lr_schedules": (["--steps", "40"], ["OneCycleLR"]),
    "lj_clusters": (["--clusters", "20"], ["numopt.minimize_batch", "scipy L-BFGS-B loop", "speed-up"]),
    "optimizer_shootout": ([], ["AdamW", "Lion", "test acc", "step us", "left out: LBFGS"]),
}


def test_examples_write_their_png_next_to_themselves_by_default(tmp_path: Path) -> None:
    # run from another folder with no OUTPUT argument: nothing lands in the current folder
    env = {**os.environ, "NUMOPT_EXAMPLES_QUICK": "1", "MPLBACKEND": "Agg"}
    target = EXAMPLES / "lr_schedules.png"
    existed = target.exists()
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "lr_schedules.py"), "--steps", "5"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert list(tmp_path.iterdir()) == [] and target.exists(), proc.stdout
    finally:
        if not existed:
            target.unlink(missing_ok=True)


def test_every_example_is_tested() -> None:
    assert {p.stem for p in EXAMPLES.glob("*.py")} == set(EXPECT)


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_example_runs_and_writes_its_png(name: str, tmp_path: Path) -> None:
    args, phrases = EXPECT[name]
    out = tmp_path / f"{name}.png"
    env = {**os.environ, "NUMOPT_EXAMPLES_QUICK": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), str(out), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    for phrase in phrases:
        assert phrase in proc.stdout, f"{name}: {phrase!r} not in its summary:\n{proc.stdout}"
    assert f"wrote {out}" in proc.stdout
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, f"{name}: {out} is not a real PNG"
    assert not list(EXAMPLES.glob("*.npt")), "examples must not leave files in the repository"
