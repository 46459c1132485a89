"""Properties of the compiled core: no per-step allocation, on-disk cache (also under
concurrent compilation), thread-count control. No wall-clock thresholds here: timings
live in `python -m numopt bench` and benchmarks/."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

import numopt
from numopt.optimizer import registered

from .optim_db import prepared

#: every optimizer declared with an elementwise rule (derived from the registry)
ELEMENTWISE = [c.__name__ for c in registered(elementwise=True)]
KWARGS = {"SGD": {"lr": 0.01, "momentum": 0.9}, "Adam": {"amsgrad": True}}


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_step_allocates_nothing_proportional_to_the_parameters(name: str) -> None:
    """A step over 2M float32 parameters (8 MB per buffer) allocates well under one buffer."""
    rng = np.random.default_rng(0)
    params = [numopt.Parameter(rng.standard_normal(s).astype(np.float32)) for s in [(1000, 1000), (1000, 1000), (7,)]]
    opt = prepared(name, getattr(numopt, name)(params, **KWARGS.get(name, {})))
    for p in params:
        p.grad = rng.standard_normal(p.shape).astype(np.float32)
    opt.step()
    opt.step()  # state exists, grads live in the flat buffer
    tracemalloc.start()
    try:
        for _ in range(3):
            opt.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, f"{name}: a step allocated {peak} bytes"


def _run(code: str, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


_STEP_AND_REPORT = """
    import json, numpy as np, numopt
    from numopt.kernels.adam import adam_step
    from numopt.kernels.sgd import sgd_step
    rng = np.random.default_rng(0)
    ps = [numopt.Parameter(rng.standard_normal(40000).astype(np.float32)) for _ in range(2)]
    small = [numopt.Parameter(np.ones(5, np.float32))]
    for cls, group in ((numopt.Adam, ps), (numopt.SGD, small)):
        opt = cls(group, lr=0.1)
        for _ in range(3):
            for p in group:
                p.grad = np.ones(p.shape, np.float32)
            opt.step()
    hits = sum(k.stats.cache_hits.get(s, 0) for k in (adam_step, sgd_step.serial) for s in k.signatures)
    misses = sum(k.stats.cache_misses.get(s, 0) for k in (adam_step, sgd_step.serial) for s in k.signatures)
    print(json.dumps({"sum": float(sum(p.data.sum() for p in ps + small)), "hits": hits, "misses": misses}))
"""


def test_second_process_loads_kernels_from_the_cache(tmp_path) -> None:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NUMOPT_CACHE="1")
    first = _run(_STEP_AND_REPORT, env)
    second = _run(_STEP_AND_REPORT, env)
    assert first["misses"] >= 2 and first["hits"] == 0
    assert second["hits"] >= 2 and second["misses"] == 0
    assert first["sum"] == second["sum"]


def test_cache_off_compiles_in_every_process(tmp_path) -> None:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NUMOPT_CACHE="0")
    _run(_STEP_AND_REPORT, env)
    assert _run(_STEP_AND_REPORT, env)["hits"] == 0


def test_concurrent_processes_compiling_into_one_cache_are_safe(tmp_path) -> None:
    """numba issue 4807: parallel=True kernels cached by several processes at once.

    Four processes start together on an empty cache directory; each must finish with
    the right numbers, and a fifth must then load everything from the cache.
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NUMOPT_CACHE="1", NUMBA_NUM_THREADS="2")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_STEP_AND_REPORT)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert len({r["sum"] for r in results}) == 1
    last = _run(_STEP_AND_REPORT, env)
    assert last["sum"] == results[0]["sum"] and last["misses"] == 0 and last["hits"] >= 2


def test_set_num_threads_is_respected_and_results_do_not_depend_on_it() -> None:
    import numba

    before = numopt.get_num_threads()
    results = []
    try:
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numopt.set_num_threads(threads)
            assert numopt.get_num_threads() == threads == numba.get_num_threads()
            p = numopt.Parameter(np.linspace(-1, 1, 100_000, dtype=np.float32))
            opt = numopt.Adam([p], lr=0.01)
            for k in range(5):
                p.grad = np.sin(p.data * (k + 1))
                opt.step()
            results.append(p.data.copy())
    finally:
        numopt.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[-1])


def _layer(code: str, **env: str) -> str:
    full = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "NUMOPT_THREADING_LAYER")}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


_STEP = (
    "import numpy as np, numopt; p = numopt.Parameter(np.zeros(100_000, np.float32)); o = numopt.SGD([p]); "
    "p.grad = np.ones(100_000, np.float32); o.step(); print(numopt.threading_layer())"
)


def test_threading_layer_policy() -> None:
    """torch in the process: a layer without a second OpenMP pool; the user's choice always wins."""
    import numba

    alone = _layer(_STEP)
    assert alone in ("omp", "tbb", "workqueue")
    with_torch = _layer("import torch; " + _STEP)
    assert with_torch in ("tbb", "workqueue")
    assert _layer("import torch; " + _STEP, NUMBA_THREADING_LAYER="omp") == "omp"
    assert _layer(_STEP, NUMOPT_THREADING_LAYER="workqueue") == "workqueue"
    assert numba.config.THREADING_LAYER  # the parent process is untouched


def test_deleting_an_optimizer_frees_its_state_without_the_garbage_collector() -> None:
    """No reference cycles between buffers, runs and parameters: state memory goes with the optimizer."""
    import gc

    gc.collect()
    gc.disable()
    try:
        tracemalloc.start()
        p = numopt.Parameter(np.zeros(1_000_000, np.float32))
        opt = numopt.Adam([p], amsgrad=True)
        p.grad = np.ones(1_000_000, np.float32)
        opt.step()
        held = tracemalloc.get_traced_memory()[0]
        del opt
        freed = held - tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert freed >= 12_000_000, f"only {freed} bytes freed"  # exp_avg, exp_avg_sq, max_exp_avg_sq
        assert p._flat is None  # the parameter is free to join another optimizer
        numopt.SGD([p], lr=0.1)
    finally:
        gc.enable()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="reads x86 assembly")
def test_kernels_and_their_serial_twins_compile_to_vector_code(tmp_path) -> None:
    # A serial loop compiled with Numba's default (Python) error model checks every float
    # division for zero and does not vectorize (6-14x slower); kernels use the NumPy model.
    code = textwrap.dedent(
        """
        import re, numpy as np
        from numopt.kernels.adam import adam_step
        x = [np.ones(64, np.float32) for _ in range(4)]
        args = (*x, np.empty(0, np.float32), 1e-3, 0.9, 0.999, 1e-8, 0.0, 0.1, 0.03, False, False, False)
        for k in (adam_step, adam_step.serial):
            k(*args)
            asm = "".join(k.inspect_asm().values())
            print(k.__name__, bool(re.search(r"v?sqrtps", asm)), bool(re.search(r"v?divps", asm)))
        """
    )
    env = dict(os.environ, NUMOPT_CACHE="0", NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["adam_step", "True", "True", "adam_step_serial", "True", "True"], out


def test_division_by_zero_gives_nan_in_both_twins_like_torch() -> None:
    from numopt.kernels.adam import adam_step

    for k in (adam_step, adam_step.serial):
        p, g, m, v = (np.zeros(8, np.float32) for _ in range(4))
        k(p, g, m, v, np.empty(0, np.float32), 1e-3, 0.9, 0.999, 0.0, 0.0, 0.1, 0.03, False, False, False)
        assert np.isnan(p).all()  # eps=0 and a zero gradient: 0/0, as torch.optim.Adam gives
