"""The README's quick start runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quick_start_runs_and_fits(capsys) -> None:
    text = README.read_text()
    block = re.search(r"## Quick start\s+```python\n(.*?)```", text, re.S).group(1)
    assert len([line for line in block.splitlines() if line.strip()]) <= 10
    scope: dict = {}
    exec(compile(block, str(README), "exec"), scope)
    np.testing.assert_allclose(scope["w"].data, [1.0, -2.0, 0.5], atol=1e-3)
    assert "w = [" in capsys.readouterr().out


def test_ci_runs_the_readme_test_command() -> None:
    text = README.read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", text.split("## Quick start")[0], re.S)
    assert commands[0] == "python -m pip install -e . && python -m numopt bench --quick"
    test_command = commands[1]
    assert test_command == 'python -m pip install -e ".[test]" && python -m pytest'
    ci = (README.parent / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()


def test_readme_tells_embedders_about_the_serial_twins() -> None:
    text = README.read_text()
    section = text[text.index("## Inside your own `@njit` code") : text.index("## Training a PyTorch model")]
    assert "adam_serial" in section and "_serial" in section


def test_bfloat16_parameters_example_runs_and_shows_the_stall(capsys) -> None:
    text = README.read_text()
    block = re.search(r"### bfloat16 parameters.*?```python\n(.*?)```", text, re.S).group(1)
    exec(compile(block, str(README), "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("bfloat16 [")
    means = [float(line.rsplit(" ", 1)[1]) for line in lines[1:]]
    # nearest stalls; stochastic rounding and Kahan move (Kahan's parameter alone: the rest is in its buffer)
    assert means[0] == 1.5 and all(abs(m - 1.49) < 3e-3 for m in means[1:])
