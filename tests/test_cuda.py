"""The CUDA path, without a GPU: ``tests/cuda_suite.py`` under Numba's CUDA simulator.

The simulator must be enabled before Numba is imported, so the suite runs in a
subprocess with ``NUMBA_ENABLE_CUDASIM=1``; this process keeps the compiled
CPU kernels. On a machine with a GPU the suite also runs on the real device.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import numopt

ROOT = Path(__file__).resolve().parents[1]
SUITE = Path(__file__).with_name("cuda_suite.py")
KERNELS = ROOT / "numopt" / "kernels"


def _run(
    args: list[str], simulator: bool, timeout: float = 300, threads: int | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ}
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    if threads is not None:
        env["NUMBA_NUM_THREADS"] = str(threads)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _pytest_suite(simulator: bool) -> None:
    # One CPU thread: the suite compares against the CPU kernels on tiny arrays, where waking a
    # thread pool costs more than the work (results do not depend on the thread count).
    r = _run(["-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider", "-x"], simulator, threads=1)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert " passed" in r.stdout and "skipped" not in r.stdout, r.stdout[-2000:]
    print(r.stdout.strip().splitlines()[-1])


def test_cuda_suite_under_the_simulator() -> None:
    """The parity table and the device-buffer checks, on the CUDA path run by Numba's simulator."""
    _pytest_suite(simulator=True)


def test_cuda_suite_on_a_real_gpu_when_present() -> None:
    """With a usable GPU the same suite runs on it; without one, ``bench --device cuda`` says so and exits 0."""
    r = _run(["-c", "from numba import cuda; print(cuda.is_available())"], simulator=False, timeout=120)
    assert r.returncode == 0, r.stderr
    if r.stdout.strip() == "True":
        _pytest_suite(simulator=False)
    else:
        r = _run(["-m", "numopt", "bench", "--device", "cuda", "--quick"], simulator=False, timeout=120)
        assert r.returncode == 0 and "no GPU timings on this machine" in r.stdout, r.stdout + r.stderr


def test_bench_device_cuda_refuses_to_time_the_simulator() -> None:
    r = _run(["-m", "numopt", "bench", "--device", "cuda", "--quick"], simulator=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "NUMBA_ENABLE_CUDASIM" in r.stdout and "no GPU timings" in r.stdout, r.stdout


def test_importing_numopt_does_not_import_cuda() -> None:
    code = (
        "import sys, numpy as np, numopt\n"
        "p = numopt.Parameter(np.ones(3, np.float32)); p.grad = np.ones(3, np.float32)\n"
        "numopt.Adam([p]).step()\n"
        "assert 'numba.cuda' not in sys.modules, 'numba.cuda was imported'\n"
    )
    r = _run(["-c", code], simulator=False, timeout=120)
    assert r.returncode == 0, r.stderr


def test_host_parameters_are_not_cuda() -> None:
    p = numopt.Parameter(np.ones(2, np.float32))
    assert not p.is_cuda
    assert not hasattr(p, "__cuda_array_interface__")
    opt = numopt.SGD([p], lr=0.1)
    assert not opt._flats[0][0].is_cuda


class _Normalize(ast.NodeTransformer):
    """One spelling per operation: ``np.sqrt`` / ``math.sqrt`` -> ``sqrt``, ``np.abs`` -> ``abs``."""

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if isinstance(node.value, ast.Name) and node.value.id in ("np", "math") and node.attr in ("sqrt", "abs"):
            return ast.copy_location(ast.Name(node.attr, ast.Load()), node)
        return self.generic_visit(node)


def _body(fn: ast.FunctionDef, cpu: bool) -> list[str]:
    """The statements of a kernel, its docstring left out and its loop reduced to the per-element body."""
    out = []
    for stmt in fn.body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # docstring
        if isinstance(stmt, ast.For):
            # CPU: one prange loop over elements (or chunk / element loops); CUDA: a grid-stride loop
            inner = stmt.body[0] if cpu and isinstance(stmt.body[0], ast.For) else stmt
            out += [ast.dump(_Normalize().visit(s)) for s in inner.body]
            continue
        out.append(ast.dump(_Normalize().visit(stmt)))
    return out


def test_cuda_kernels_do_what_the_cpu_kernels_do() -> None:
    """Each CUDA twin's statements equal its CPU kernel's, loop header aside (a drift check, read from the sources).

    The simulator suite checks the results bit for bit on the parity table; this also covers
    branches that table may not reach. ``clip.norm_partials`` is a different reduction on
    purpose (one block per chunk) and is compared by value in the suite.
    """
    compared = 0
    for cuda_file in sorted((KERNELS / "cuda").glob("*.py")):
        cpu_file = KERNELS / cuda_file.name
        if cuda_file.name.startswith("_") or not cpu_file.exists():
            continue
        cpu_fns = {f.name: f for f in ast.parse(cpu_file.read_text()).body if isinstance(f, ast.FunctionDef)}
        for fn in ast.parse(cuda_file.read_text()).body:
            if not isinstance(fn, ast.FunctionDef) or fn.name not in cpu_fns or fn.name == "norm_partials":
                continue
            cpu = cpu_fns[fn.name]
            assert ast.dump(fn.args) == ast.dump(cpu.args), fn.name
            assert _body(fn, cpu=False) == _body(cpu, cpu=True), (
                f"{cuda_file.name}: {fn.name} differs from the CPU kernel"
            )
            compared += 1
    assert compared == 14  # 10 optimizers, 2 averaging, 2 clipping kernels
