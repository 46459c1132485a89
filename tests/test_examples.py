"""Every script in examples/ runs as ``python examples/NAME.py OUT.png`` (quick settings) and writes its PNG."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    "lowbit_quality": (
        [],
        ["fp32 state", "bfloat16 state", "int8 state", "bf16 params, SR", "bf16 params, nearest", "state B/param"]
        + ["fp32 spread: min-max", "per seed"],
    ),
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


def test_lowbit_quality_measures_the_state_it_holds() -> None:
    # the table's "state B/param" comes from the optimizer's own arrays: 8 (fp32 Adam), 4 (bfloat16),
    # about 2 (int8: 1 byte per element and 4 per 256-element block; the biases keep float32 state)
    sys.path.insert(0, str(EXAMPLES))
    try:
        import lowbit_quality as lq
    finally:
        sys.path.remove(str(EXAMPLES))
    import numopt

    assert all(a * b >= numopt.AdamW.min_8bit_size for a, b in zip(lq.WIDTHS[:-1], lq.WIDTHS[1:]))
    x, y = np.random.default_rng(0).random((8, lq.WIDTHS[0]), np.float32), np.arange(8) % lq.WIDTHS[-1]
    measured = {}
    for v in lq.VARIANTS:
        params = lq.init_params(0, v.param_dtype)
        opt = numopt.AdamW(params, **v.options)
        lq.forward_backward(params, x, y)
        opt.step()
        measured[v.label] = lq.state_bytes_per_param(opt, params)
        del opt
    n = sum(p.size for p in params)
    weights = sum(p.size for p in params if p.ndim == 2) / n
    steps = 8 * len(params) / n  # each tensor's step count (float64)
    assert measured["fp32 state"] == pytest.approx(8.0 + steps)
    assert measured["bfloat16 state"] == pytest.approx(4.0 + steps)
    int8 = weights * 2 * (1 + 4 / 256) + (1 - weights) * 8
    assert measured["int8 state"] == pytest.approx(int8 + steps, rel=1e-3)
    # bfloat16 parameters: float32 state unless state_dtype says otherwise
    assert measured["bf16 params, SR"] == measured["bf16 params, nearest"] == pytest.approx(8.0 + steps)
    assert measured["bf16 params SR, int8"] == pytest.approx(int8 + steps, rel=1e-3)
