"""numopt.distributed over real MPI processes: ``mpiexec -n 2`` and ``-n 3`` (uneven shards), from pytest.

Every scenario runs once per rank count in tests/mpi_worker.py; each test here
checks one part of what the ranks recorded against a single-process run on the
averaged gradients (rtol 1e-6). Needs the ``mpi`` extra (mpi4py + the mpich
wheel, both in the ``test`` extra): without an ``mpiexec`` these tests fail.
"""

from __future__ import annotations

import functools
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import numopt

from . import mpi_worker as W

ROOT = Path(__file__).resolve().parents[1]
RTOL, ATOL = 1e-6, 1e-7


def _mpiexec() -> list[str]:
    """``mpiexec`` next to this Python (the mpich wheel puts it there), else on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    exe = str(here) if here.exists() else shutil.which("mpiexec")
    if exe is None:
        pytest.fail("no mpiexec found: install the MPI extra, pip install -e '.[mpi]' (mpi4py and the mpich wheel)")
    cmd = [exe]
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    if "Open MPI" in version or "OpenRTE" in version:
        cmd += ["--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    return cmd


def _launch(n: int, script: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["NUMBA_NUM_THREADS"] = "1"  # n ranks share the cores: one kernel thread each
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [*_mpiexec(), "-n", str(n), sys.executable, str(script), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module", params=[2, 3], ids=lambda n: f"{n}ranks")
def ranks(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """What every rank of one ``mpiexec -n N tests/mpi_worker.py`` run recorded, by rank."""
    n = request.param
    outdir = tmp_path_factory.mktemp(f"mpi{n}")
    _launch(n, ROOT / "tests" / "mpi_worker.py", str(outdir))
    results = []
    for r in range(n):
        with open(outdir / f"rank{r}.pkl", "rb") as fh:
            results.append(pickle.load(fh))
    assert [res["rank"] for res in results] == list(range(n)) and all(res["size"] == n for res in results)
    return results


# -- single-process references (cached: several tests and ranks compare with the same run) ---
@functools.cache
def reference(name: str, size: int, extra_sync_step: bool) -> tuple[list[np.ndarray], dict, Any]:
    """``W.STEPS`` steps of a plain optimizer on the gradients averaged over ``size`` ranks."""
    cls = getattr(numopt, name)
    params = W.make_params()
    opt = cls(W.groups(params, name), **W.CONFIGS[name])
    loss = W.drive(opt, params, lambda t, j: W.mean_grad(t, size, j), 0, W.STEPS, (size + 1) / 2)
    if extra_sync_step:  # the DistributedOptimizer run's synchronize(), halve, step()
        for j, p in enumerate(params):
            g = W.mean_grad(W.STEPS, size, j)
            p.grad = None if g is None else g * np.asarray(0.5, g.dtype)
        opt.step()
    return [p.data.copy() for p in params], opt.state_dict(), loss


@functools.cache
def resumed_reference(name: str, size: int, sub_size: int) -> list[np.ndarray]:
    """The reference after ``W.STEPS`` steps on ``size`` ranks, saved, loaded and continued on ``sub_size``."""
    cls = getattr(numopt, name)
    final, sd, _ = reference(name, size, extra_sync_step=False)
    params = W.make_params()
    for p, v in zip(params, final):
        p.data = v
    opt = cls(W.groups(params, name), **W.CONFIGS[name])
    opt.load_state_dict(sd)
    W.drive(opt, params, lambda t, j: W.mean_grad(t, sub_size, j), W.STEPS, W.STEPS + W.RESUME_STEPS, None)
    return [p.data.copy() for p in params]


def assert_params_close(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    for j, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and g.dtype == w.dtype, f"parameter {j}"
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL, err_msg=f"parameter {j}")


def assert_state_dicts_close(got: dict, want: dict) -> None:
    assert got["param_groups"] == want["param_groups"]
    assert got["state"].keys() == want["state"].keys()
    for k, entry in want["state"].items():
        assert got["state"][k].keys() == entry.keys(), f"state of parameter {k}"
        for key, v in entry.items():
            g = got["state"][k][key]
            if isinstance(v, np.ndarray):
                assert isinstance(g, np.ndarray) and g.shape == v.shape and g.dtype == v.dtype, (k, key)
                np.testing.assert_allclose(g, v, rtol=RTOL, atol=ATOL, err_msg=f"state[{k}][{key!r}]")
            else:
                assert type(g) is type(v) and g == v, (k, key, g, v)


def assert_ranks_identical(ranks: list[dict[str, Any]], key: str) -> None:
    first = ranks[0][key]["params"]
    for res in ranks[1:]:
        for j, (a, b) in enumerate(zip(first, res[key]["params"])):
            assert np.array_equal(a, b), f"rank {res['rank']} differs from rank 0 on parameter {j}"


# -- tests --------------------------------------------------------------------------------
def test_optimizers_under_test() -> None:
    assert "SGD" in W.OPTIMIZERS and W.OPTIMIZERS == [n for n in ("SGD", "Adam", "AdamW") if hasattr(numopt, n)]


@pytest.mark.parametrize("name", W.OPTIMIZERS)
def test_distributed_optimizer_matches_single_process(ranks: list[dict[str, Any]], name: str) -> None:
    size = len(ranks)
    want, want_sd, want_loss = reference(name, size, extra_sync_step=True)
    key = f"ddp/{name}"
    assert_ranks_identical(ranks, key)
    for res in ranks:
        got = res[key]
        assert got["is_optimizer"]
        assert_params_close(got["params"], want)
        assert got["loss"] == pytest.approx(want_loss)  # the closure's loss, averaged over the ranks
        assert_state_dicts_close(got["state_dict"], want_sd)


@pytest.mark.parametrize("name", W.OPTIMIZERS)
def test_zero_matches_single_process(ranks: list[dict[str, Any]], name: str) -> None:
    size = len(ranks)
    want, want_sd, want_loss = reference(name, size, extra_sync_step=False)
    key = f"zero/{name}"
    assert_ranks_identical(ranks, key)
    for res in ranks:
        got = res[key]
        assert_params_close(got["params"], want)
        assert got["loss"] == pytest.approx(want_loss)
        # consolidate_state_dict(to=None): the full, rank-independent state on every rank
        assert_state_dicts_close(got["state_dict_all"], want_sd)
    # consolidate_state_dict(to=0): on rank 0 only; the others are told to consolidate first
    assert_state_dicts_close(ranks[0][key]["state_dict_to0"], want_sd)
    for res in ranks[1:]:
        assert res[key]["non_root_error"] and "consolidate_state_dict" in res[key]["non_root_error"]


@pytest.mark.parametrize("name", W.OPTIMIZERS)
def test_zero_state_is_sharded(ranks: list[dict[str, Any]], name: str) -> None:
    """Each rank holds the state of its shard only: about 1/N of the full state, and no overlap."""
    size = len(ranks)
    cls = getattr(numopt, name)
    params = W.make_params()
    full_opt = cls(W.groups(params, name), **W.CONFIGS[name])
    W.drive(full_opt, params, lambda t, j: W.mean_grad(t, size, j), 0, W.STEPS, None)
    full = W.state_nbytes(full_opt)
    per_rank = [res[f"zero/{name}"]["state_nbytes"] for res in ranks]
    assert full > 0
    assert sum(per_rank) == full
    # shards differ by at most one element per flat buffer: 3 buffers x 3 states x 8 bytes
    assert max(per_rank) <= full / size + 3 * 3 * 8
    sizes = np.array([res[f"zero/{name}"]["shard_sizes"] for res in ranks])
    assert (sizes.max(axis=0) - sizes.min(axis=0) <= 1).all()


@pytest.mark.parametrize("name", W.OPTIMIZERS)
def test_zero_state_loads_on_other_rank_counts(ranks: list[dict[str, Any]], name: str) -> None:
    """The state consolidated on N ranks, loaded on N-1 ranks and on 1 rank, goes on as a single process."""
    size = len(ranks)
    seen = set()
    for res in ranks:
        resume = res[f"zero/{name}"]["resume"]
        seen.add(resume["size"])
        assert_params_close(resume["params"], resumed_reference(name, size, resume["size"]))
    assert seen == {max(size - 1, 1), 1}


def test_collective_errors_raise_on_every_rank(ranks: list[dict[str, Any]]) -> None:
    for res in ranks:
        errors = res["errors"]
        for what in ("ddp_shapes", "zero_shapes"):
            assert errors[what] and re.search(r"parameter groups differ between ranks", errors[what]), what
        assert errors["broadcast_shapes"] and "differ between ranks" in errors["broadcast_shapes"]
        assert errors["zero_not_elementwise"] and "element-wise" in errors["zero_not_elementwise"]
        assert errors["mixed_closure"] and "closure returned a number" in errors["mixed_closure"]


def test_average_false_sums(ranks: list[dict[str, Any]]) -> None:
    n = len(ranks)
    for res in ranks:  # one SGD step with lr=1 on the summed gradients 1 + 2 + ... + n
        np.testing.assert_array_equal(res["extras"]["sum"], np.full(3, -n * (n + 1) / 2, np.float32))


def test_gradient_reassigned_after_synchronize(ranks: list[dict[str, Any]]) -> None:
    n = len(ranks)
    mean = (n + 1) / 2  # what synchronize() left on every rank; then rank 0 assigns zeros
    for res in ranks:
        np.testing.assert_allclose(res["extras"]["resync"], np.full(2, -(n - 1) * mean / n), rtol=RTOL)


def test_broadcast_some_parameters(ranks: list[dict[str, Any]]) -> None:
    n = len(ranks)
    for res in ranks:
        a, b = res["extras"]["partial_broadcast"]
        np.testing.assert_array_equal(a, np.full(3, res["rank"], np.float32))  # not broadcast
        assert b.shape == () and b == n - 1 + 0.5  # from root n - 1


def test_zero_with_empty_shards(ranks: list[dict[str, Any]]) -> None:
    """Two elements on three ranks: the last rank holds nothing, and everything still agrees."""
    n = len(ranks)
    w = numopt.Parameter(np.array([1.0, 2.0], np.float32))
    opt = numopt.SGD([w], lr=0.1, momentum=0.9)
    for t in range(W.TINY_STEPS):
        w.grad = (sum(W.tiny_grad(t, r).astype(np.float64) for r in range(n)) / n).astype(np.float32)
        opt.step()
    assert [res["extras"]["tiny"]["has_optim"] for res in ranks] == [r < 2 for r in range(n)]
    for res in ranks:
        np.testing.assert_allclose(res["extras"]["tiny"]["params"], w.data, rtol=RTOL, atol=ATOL)
    assert_state_dicts_close(ranks[0]["extras"]["tiny"]["state_dict"], opt.state_dict())


def test_schedulers_drive_both_wrappers(ranks: list[dict[str, Any]]) -> None:
    lr = [1.0, 0.5, 0.25]
    for res in ranks:
        extras = res["extras"]
        assert extras["lrs"]["ddp"] == lr
        # ZeRO's own groups (where the scheduler writes) reach its local optimizer at each step
        assert extras["lrs"]["zero"] == lr
        np.testing.assert_allclose(extras["scheduled"]["ddp"], np.full(3, -sum(lr)))
        np.testing.assert_allclose(extras["scheduled"]["zero"], np.full(5, -sum(lr)))


def test_readme_example_runs(tmp_path: Path) -> None:
    """The README's 'Distributed (MPI)' example, as written, on 2 ranks."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Distributed \(MPI\).*?```python\n(.*?)```", text, re.S).group(1)
    script = tmp_path / "train.py"
    script.write_text(block)
    out = _launch(2, script).stdout
    # each rank prints one string (the ranks' lines may interleave with each other's newlines)
    found = dict(re.findall(r"rank (\d+): w = \[([^\]]*)\]", out))
    assert sorted(found) == ["0", "1"], out
    values = [np.array([float(x) for x in found[r].split()]) for r in ("0", "1")]
    assert np.array_equal(values[0], values[1])  # the same parameters on both ranks
    np.testing.assert_allclose(values[0], [1.0, -2.0, 0.5], atol=1e-2)
