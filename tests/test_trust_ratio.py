"""Lamb and LARS beyond the OPTIM_DB table: norm-zero branches, rectify's early steps, thread-count
independence of the per-parameter norms, refusals."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

import numopt

from .optim_db import LARGE_SHAPES, reference_for

SHAPES = [(4, 3), (5,), (), (3, 2), (2, 2)]


def _grads(rng: np.random.Generator, t: int, dtype) -> list[np.ndarray]:
    out = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    out[3][...] = 0  # a parameter whose gradient is always zero
    if t % 3 == 0:
        out[0][...] = 0  # and one whose gradient is zero now and then
    return out


def _run(name: str, kwargs: dict, steps: int = 8, dtype=np.float32, state_keys: str = "equal") -> None:
    rng = np.random.default_rng(0)
    init = [np.zeros(s, dtype) for s in SHAPES[:3]] + [rng.standard_normal(s).astype(dtype) for s in SHAPES[3:]]
    init[4][...] = 0  # zero-initialised and ...
    ours = [numopt.Parameter(a.copy()) for a in init]
    refs = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    opt = getattr(numopt, name)(ours, **kwargs)
    ref = reference_for(name)(refs, **kwargs)
    for t in range(steps):
        grads = _grads(rng, t, dtype)
        if t < 2:
            grads[4][...] = 0  # ... zero gradients at first: both norms zero
        for p, q, g in zip(ours, refs, grads):
            p.grad = g.copy()
            q.grad = torch.from_numpy(g.copy())
        opt.step()
        ref.step()
        for i, (p, q) in enumerate(zip(ours, refs)):
            np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=f"step {t} param {i}")
            st, rst = opt.state[p], ref.state[q]
            if state_keys == "equal":
                assert set(st) == set(rst), (t, i)
            for k, v in rst.items():
                v = v.detach().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
                np.testing.assert_allclose(np.asarray(st[k], v.dtype), v, rtol=1e-5, atol=1e-6, err_msg=f"{t} {i} {k}")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": 1e-2},
        {"lr": 1e-2, "foreach": False, "weight_decay": 0.1, "weight_decouple": False},
        {"lr": 1e-2, "weight_decay": 0.1, "pre_norm": True},
        {"lr": 1e-2, "rectify": True, "degenerated_to_sgd": True},
    ],
)
def test_lamb_zero_norms(kwargs: dict) -> None:
    _run("Lamb", kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": 0.1, "trust_coefficient": 0.02},
        {"lr": 0.1, "weight_decay": 0.1, "trust_coefficient": 0.02, "nesterov": True},
        {"lr": 0.1, "weight_decay": 0.1, "momentum": 0.0},
    ],
)
def test_lars_zero_norms(kwargs: dict) -> None:
    _run("LARS", kwargs)


def test_lamb_rectify_early_steps() -> None:
    """Without degenerated_to_sgd the first steps move nothing (the moments and the decay still update).
    The reference creates the norm scalars only once a step moves; numopt keeps them from the start."""
    _run("Lamb", {"lr": 1e-2, "rectify": True, "weight_decay": 0.1}, steps=12, state_keys="subset")


@pytest.mark.parametrize("name, kwargs", [("Lamb", {"lr": 1e-2, "pre_norm": True}), ("LARS", {"lr": 0.1})])
def test_norms_do_not_depend_on_the_thread_count(name: str, kwargs: dict) -> None:
    results = []
    threads = numba.get_num_threads()
    try:
        for n in sorted({1, threads, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(n)
            rng = np.random.default_rng(0)
            params = [numopt.Parameter(rng.standard_normal(s).astype(np.float32)) for s in LARGE_SHAPES]
            opt = getattr(numopt, name)(params, **kwargs)
            for _ in range(3):
                for p in params:
                    p.grad = rng.standard_normal(p.shape).astype(np.float32)
                opt.step()
            results.append([p.data.copy() for p in params])
    finally:
        numba.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["Lamb", "LARS"])
def test_refusals(name: str) -> None:
    p = numopt.Parameter(np.ones((2, 2), np.float32))
    opt = getattr(numopt, name)([p])
    p.grad = numopt.SparseGrad(np.array([0]), np.ones((1, 2), np.float32))
    with pytest.raises(RuntimeError, match=f"{name} does not support sparse gradients"):
        opt.step()
