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


def test_every_cuda_loop_compiles_for_a_real_gpu() -> None:
    """Each generated CUDA loop (plain, bfloat16 and 8-bit state, block passes) and the norm reduction are
    typed and lowered for compute capability 9.0 by numba-cuda (``tests/cuda_lowering.py``; no GPU needed).

    The simulator runs kernels as Python, so only this catches a call numba-cuda cannot compile:
    ``np.sqrt`` on a scalar was one, in 76 of the 108 loops, until rule bodies took ``sqrt`` from the pieces.
    """
    r = _run([str(ROOT / "tests" / "cuda_lowering.py")], simulator=False, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    lowered = int(r.stdout.strip().splitlines()[-1].split()[1])
    assert lowered >= 100, r.stdout[-2000:]


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


def _loop_calls(src: str) -> dict[str, list[str]]:
    """For each loop function of generated source ``src``: the functions its element loop calls."""
    out = {}
    for fn in ast.parse(src).body:
        loops = [s for s in fn.body if isinstance(s, ast.For)] if isinstance(fn, ast.FunctionDef) else []
        if loops:
            calls = [n.func.id for n in ast.walk(loops[0]) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
            out[fn.name] = calls
    return out


def _calls(tree: ast.AST) -> set[str]:
    """The names of the plain functions called anywhere in ``tree``."""
    return {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def test_cuda_loops_are_generated_from_the_same_rule_bodies() -> None:
    """No elementwise kernel is written twice: its CUDA loop is generated from the body its CPU loops use.

    The only hand-written CUDA kernels left are reductions (a different reduction on purpose: one
    block per chunk), compared by value in the simulator suite: the gradient norm (``clip.norm_partials``)
    and the per-block partials of Lamb, LARS and Prodigy (``segments``), whose per-element work calls
    the same pieces as their CPU kernels.
    """
    hand_written = sorted(p.name for p in (KERNELS / "cuda").glob("*.py"))
    assert hand_written == ["__init__.py", "_launch.py", "clip.py", "memory.py", "segments.py", "stream.py"]
    clip_cuda = ast.parse((KERNELS / "cuda" / "clip.py").read_text())
    assert [f.name for f in clip_cuda.body if isinstance(f, ast.FunctionDef) and not f.name.startswith("_")] == [
        "norm_partials"
    ]
    seg_cuda = ast.parse((KERNELS / "cuda" / "segments.py").read_text())
    public = [f.name for f in seg_cuda.body if isinstance(f, ast.FunctionDef) and not f.name.startswith("_")]
    assert public == ["block_sum", "launch"]  # no loop: the passes' CUDA loops are generated (below)
    from numopt.kernels import lamb, lars, prodigy, segments

    passes = [lamb.MOMENTS, lamb.APPLY, lars.NORMS, lars.STEP, prodigy.MOMENTS, segments.SQUARES]
    for block_pass in passes:
        cpu, gpu = _loop_calls(block_pass.source("cpu")), _loop_calls(block_pass.source("cuda"))
        assert len(cpu) == 2 and len(gpu) == 1, block_pass
        # parallel, serial and CUDA loops call the one piece once per element
        assert all(calls.count("piece") == 1 for calls in [*cpu.values(), *gpu.values()]), block_pass
    from numopt.kernels import averaging, clip
    from numopt.optimizer import registered

    kernels = {id(k): k for k in [c.rule for c in registered(elementwise=True)]}
    kernels.update({id(k): k for k in (averaging.lerp_, averaging.running_mean_, clip.scale_, clip.clamp_)})
    for kernel in kernels.values():
        rule = kernel.rule
        cpu, gpu = _loop_calls(rule.source("cpu")), _loop_calls(rule.source("cuda"))
        assert f"{rule.name}_cuda" in gpu and len(cpu) == 2 * 2 ** len(rule.optional), rule.name
        # every loop, CPU (serial and parallel, each combination of optional arrays) and CUDA,
        # calls the one body once per element: nothing but the loop header differs
        assert all(calls.count("body") == 1 for calls in [*cpu.values(), *gpu.values()]), rule.name
    assert len(kernels) >= 14  # 10 torch optimizers' rules (Adam and AdamW share one) and more, 2 averaging, 2 clipping


def test_compact_state_cuda_loops_are_generated_from_the_same_rule_bodies() -> None:
    """Compact state on the GPU: the bfloat16 loop (``load`` / ``store``) and the 8-bit kernel (a thread block per
    quantization block) of every optimizer that takes ``state_dtype`` call its one body once per element, and
    quantize with the pieces of the CPU 8-bit loop."""
    import inspect

    from numopt.kernels._lowbit import blocked_cuda_source, blocked_source
    from numopt.optimizer import registered

    compact = [c for c in registered(elementwise=True) if "state_dtype" in inspect.signature(c.__init__).parameters]
    assert {"Adam", "AdamW", "SGD", "Lion", "RMSprop", "Adagrad"} <= {c.__name__ for c in compact}
    pieces = {"magnitude_bits", "scale_of", "inverse", "quantize"}
    for rule in {id(c.rule.rule): c.rule.rule for c in compact}.values():
        storage = _loop_calls(rule.source("cuda", storage=True))
        assert list(storage) == [f"{rule.name}_cuda"] and storage[f"{rule.name}_cuda"].count("body") == 1, rule.name
        assert {"load", "store"} <= set(storage[f"{rule.name}_cuda"]), rule.name
        for dtype in ("float32", "float64"):
            q8 = _loop_calls(blocked_cuda_source(rule, dtype))
            assert list(q8) == [f"{rule.name}_q8_cuda"] and q8[f"{rule.name}_q8_cuda"].count("body") == 1, rule.name
            assert pieces <= set(q8[f"{rule.name}_q8_cuda"]) & _calls(ast.parse(blocked_source(rule))), rule.name
