"""numopt.Prodigy beyond the OPTIM_DB table: the reference's cross-group semantics, the fixed-order reduction."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest
import torch

import numopt
from numopt._jit import CHUNK
from numopt.kernels.prodigy import prodigy_reduce
from numopt.kernels.segments import BlockTable

from .optim_db import OptimCase
from .reference import compare, make_pair, random_grads


def test_docstring_example_runs() -> None:
    result = doctest.testmod(importlib.import_module("numopt.optim.prodigy"), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_groups_read_as_the_reference_reads_them() -> None:
    # lr, betas, d0 from the first group; d_coef, d0 (for "d == d0"), d_max, growth_rate from the last one
    case = OptimCase(
        "Prodigy",
        {"d0": 1e-3},
        "cross-group",
        group2={"lr": 0.3, "betas": (0.5, 0.9), "d0": 1e-2, "d_coef": 3.0, "growth_rate": 1.2, "eps": None},
        steps=25,
    )
    pair = make_pair(case)
    rng = np.random.default_rng(4)
    for t in range(case.steps):
        pair.set_grads(random_grads(rng, t, pair.dtype, pair.shapes))
        pair.step()
        compare(pair, t, rtol=1e-5, atol=1e-6)
        for ours, ref in zip(pair.ours.param_groups, pair.ref.param_groups):
            assert ours["step"] == ref["step"]
            # d_numerator sums terms of both signs: the reference's float32 dot products move it most
            for key, rel in (("d", 1e-5), ("d_max", 1e-5), ("d_de_nom", 1e-5), ("d_numerator", 1e-3), ("d_hat", 1e-3)):
                assert ours[key] == pytest.approx(float(ref[key]), rel=rel), key


def test_a_step_without_gradients_counts_like_the_reference() -> None:
    ps = [numopt.Parameter(np.ones(3, np.float32)), numopt.Parameter(np.ones(2, np.float32))]
    ts = [torch.ones(3, requires_grad=True), torch.ones(2, requires_grad=True)]
    ours = numopt.Prodigy([{"params": ps[:1]}, {"params": ps[1:]}])
    from pytorch_optimizer import Prodigy as ReferenceProdigy

    ref = ReferenceProdigy([{"params": ts[:1]}, {"params": ts[1:]}])
    ours.step()
    ref.step()
    assert [g["step"] for g in ours.param_groups] == [g["step"] for g in ref.param_groups] == [2, 2]
    assert ours.param_groups[0]["d_numerator"] == 0.0 and "d_numerator" not in ours.param_groups[1]
    assert "d_numerator" not in ref.param_groups[1]
    assert not ours.state and not ref.state
    np.testing.assert_array_equal(ps[0].data, 1.0)


def test_zero_gradients_create_state_and_move_nothing() -> None:
    p = numopt.Parameter(np.arange(4, dtype=np.float32))
    opt = numopt.Prodigy([p])
    p.grad = np.zeros(4, np.float32)
    opt.step()  # sum |s| == 0: the reference returns before the update
    assert set(opt.state[p]) == {"s", "p0", "exp_avg", "exp_avg_sq"}
    np.testing.assert_array_equal(opt.state[p]["p0"], np.arange(4))
    np.testing.assert_array_equal(p.data, np.arange(4))
    assert "d_hat" not in opt.param_groups[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reduction_is_the_same_for_any_thread_count(dtype) -> None:
    rng = np.random.default_rng(0)
    sizes = [3, CHUNK * 2 + 5, 0, CHUNK - 1, 1]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(offsets[-1])
    param, grad, p0 = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    state = [rng.standard_normal(n).astype(dtype) for _ in range(3)]
    state[2] = np.abs(state[2])
    scalars = (np.float32(0.5), np.float32(0.0), np.float32(0.25), 0.9, 1e-3, 0.999, 1e-6, 0.95, 2.0, True)
    results = []
    for fn in (prodigy_reduce, prodigy_reduce.serial):
        s, m, v = (x.copy() for x in state)
        out = fn(param, grad, p0, s, m, v, BlockTable(offsets, dtype), *scalars)
        results.append((out, s, m, v))
    (a, *sa), (b, *sb) = results
    assert a == b
    for x, y in zip(sa, sb):
        np.testing.assert_array_equal(x, y)


def test_sparse_gradients_are_refused() -> None:
    p = numopt.Parameter(np.zeros((3, 2), np.float32))
    opt = numopt.Prodigy([p])
    p.grad = numopt.SparseGrad(np.array([1]), np.ones((1, 2), np.float32))
    with pytest.raises(RuntimeError, match="Prodigy does not support sparse gradients"):
        opt.step()
