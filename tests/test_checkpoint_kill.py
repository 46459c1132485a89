"""A process killed with SIGKILL while saving never leaves a corrupt or mixed checkpoint.

A child process saves a large Adam-like state in a loop, each save distinguishable
(every array and the step count encode the save's number ``k``). The parent kills it
with SIGKILL at random moments, then checks that the file on disk loads and is
exactly state ``k`` for the last save that completed or the one in flight, never
a mix of two states, then starts the next child.

Sizes: ``NUMOPT_KILL_ELEMENTS`` (elements per array, three float32 arrays; default
4M, i.e. 48 MB a save) and ``NUMOPT_KILL_COUNT`` (kills, default 32). The issue's
figure (50M-element Adam state: three 50M-element arrays, 600 MB a save) runs
with ``NUMOPT_KILL_ELEMENTS=50000000``.
"""

from __future__ import annotations

import glob
import multiprocessing as mp
import os
import signal
import sys
import time

import numpy as np
import pytest

import numopt

ELEMENTS = int(os.environ.get("NUMOPT_KILL_ELEMENTS", 4_000_000))
KILLS = int(os.environ.get("NUMOPT_KILL_COUNT", 32))


def _bases(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i = np.arange(n, dtype=np.float32)
    return i % 4099, (i % 257) * 2, (i % 63) + 0.5  # exact in float32, like state(k) below


def make_state(k: int, bases, out=None) -> dict:
    """Save number ``k``: an Adam state dict whose every value encodes ``k``."""
    arrays = out if out is not None else [np.empty_like(b) for b in bases]
    for a, b in zip(arrays, bases):
        np.add(b, np.float32(k), out=a)
    return {
        "state": {0: {"step": float(k), "exp_avg": arrays[1], "exp_avg_sq": arrays[2]}},
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "params": [0], "param_names": ["w"]}],
        "model": {"w": arrays[0]},
        "counter": k,
    }


def check_state(loaded: dict, k: int, bases) -> None:
    """``loaded`` is exactly ``make_state(k)``: no value from another save."""
    assert loaded["counter"] == k and loaded["state"][0]["step"] == float(k)
    arrays = (loaded["model"]["w"], loaded["state"][0]["exp_avg"], loaded["state"][0]["exp_avg_sq"])
    for a, b in zip(arrays, bases):
        assert a.dtype == np.float32 and a.shape == b.shape
        assert np.array_equal(a - np.float32(k), b), f"array from a different save than counter {k}"


def _saver(path: str, first: int, progress, n: int) -> None:
    """Child: save states first, first+1, ... forever; record each start and finish."""
    bases = _bases(n)
    out = [np.empty_like(b) for b in bases]
    k = first
    while True:
        state = make_state(k, bases, out)
        progress[0] = k  # started
        numopt.save(state, path)
        progress[1] = k  # completed
        k += 1


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and fork are POSIX")
def test_sigkill_during_save_never_corrupts(tmp_path) -> None:
    ctx = mp.get_context("fork")  # the child inherits the imported modules: no start-up cost per kill
    path = str(tmp_path / "ckpt.npt")
    bases = _bases(ELEMENTS)
    numopt.save(make_state(0, bases), path)
    t0 = time.perf_counter()
    numopt.save(make_state(0, bases), path)
    save_time = time.perf_counter() - t0
    rng = np.random.default_rng(12345)
    progress = ctx.RawArray("q", [-1, -1])  # last save started, last save completed, by the current child
    on_disk = 0  # the counter of the state the file holds
    next_k = 1
    kills = mid_save = completed = 0
    while kills < KILLS:
        progress[0] = progress[1] = -1
        child = ctx.Process(target=_saver, args=(path, next_k, progress, ELEMENTS), daemon=True)
        child.start()
        # Wait for the first save to begin, then kill at a random moment within ~1.5 saves.
        deadline = time.perf_counter() + 60
        while progress[0] < next_k and time.perf_counter() < deadline and child.is_alive():
            time.sleep(0.001)
        assert child.is_alive(), f"saver exited early with code {child.exitcode}"
        time.sleep(rng.uniform(0, 1.5 * save_time))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        assert child.exitcode == -signal.SIGKILL
        kills += 1
        started, done = progress[0], progress[1]
        last_complete = done if done >= 0 else on_disk
        completed += done - next_k + 1 if done >= 0 else 0
        mid_save += started != done
        loaded = numopt.load(path)  # never raises: the file is always a complete checkpoint
        # the last completed save, or the one the kill interrupted if it got as far as the rename
        assert loaded["counter"] in (last_complete, started), (loaded["counter"], last_complete, started)
        check_state(loaded, loaded["counter"], bases)
        on_disk = loaded["counter"]
        for tmp in glob.glob(str(tmp_path / ".ckpt.npt.*.tmp")):  # orphans of killed saves
            os.unlink(tmp)
        next_k = started + 1
    print(f"\nSIGKILL test: {kills} kills ({mid_save} mid-save), {completed} saves completed, 0 corrupt or mixed")
    assert mid_save >= KILLS // 3, "too few kills landed inside a save for the test to mean anything"
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npt"]
