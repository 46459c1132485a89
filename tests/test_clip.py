"""numopt.utils gradient clipping against torch.nn.utils, on flat buffers, pending and loose gradients."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch

import numopt
from numopt.kernels import clip as clip_kernels
from numopt.utils import clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm

from .optim_db import reference_for

torch.set_num_threads(1)

MAX_REL_ERR: dict[str, float] = {}
#: float32: torch accumulates norms in float32 (up to ~5e-6 off on 40k elements); numopt in float64
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
#: how close numopt's float32 norm is to the exact (float64) one: about one rounding
EXACT_TOL32 = 2e-7

#: parameters 0-3 form group A and 4, 5, 7 group B of one SGD; 6 is loose (no optimizer)
SHAPES: list[tuple[int, ...]] = [(5, 3), (7,), (2, 3, 4), (), (4, 1), (0, 3), (3, 4), (2_000,)]
#: on the first seeds the last parameter spans several kernel chunks (kept small otherwise: tests stay fast)
BIG = (40_000,)
GROUP_A, GROUP_B, LOOSE = [0, 1, 2, 3], [4, 5, 7], 6
NORM_TYPES = [1.0, 2.0, math.inf, 3.0]
SEEDS = range(12)


@pytest.fixture(scope="module", autouse=True)
def _report_worst_error(request: pytest.FixtureRequest) -> Any:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if MAX_REL_ERR and reporter is not None and capture is not None:
        name, worst = max(MAX_REL_ERR.items(), key=lambda kv: kv[1])
        with capture.global_and_fixture_disabled():
            reporter.write_line(
                f"\nclipping vs torch: {len(MAX_REL_ERR)} runs, max relative error {worst:.3g} ({name})"
            )


class Setup:
    """One random gradient set, on numopt parameters (flat, pending, loose) and on torch tensors."""

    def __init__(self, seed: int, dtype: Any) -> None:
        rng = np.random.default_rng(seed)
        self.dtype = np.dtype(dtype)
        scale = 10.0 ** rng.uniform(-3, 3)
        shapes = SHAPES[:-1] + [BIG if seed < 3 else SHAPES[-1]]
        values = [np.asarray(rng.standard_normal(s), self.dtype) for s in shapes]
        grads: list[np.ndarray | None] = [np.asarray(rng.standard_normal(s) * scale, self.dtype) for s in shapes]
        if seed % 2:
            grads[1] = None  # a parameter without a gradient is ignored
        if seed % 3 == 0:
            grads[7][rng.integers(0, grads[7].size, 100)] = 0  # some exact zeros
        self.params = [numopt.Parameter(v.copy()) for v in values]
        self.opt = numopt.SGD(
            [{"params": [self.params[i] for i in GROUP_A]}, {"params": [self.params[i] for i in GROUP_B]}], lr=0.1
        )
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if g is None:
                continue
            if i == LOOSE:
                p.grad = np.ascontiguousarray(g.T).T if seed % 2 == 0 else g.copy()  # non-contiguous on even seeds
            elif i % 2 == 0:
                p.zero_grad_()  # p.grad is the flat buffer's view: written in place
                p.grad[...] = g
            else:
                p.grad = g.copy()  # a fresh array, pending until the next step
        self.tparams = [torch.tensor(v.copy(), requires_grad=True) for v in values]
        for tp, g in zip(self.tparams, grads):
            # torch cannot take the inf-norm of an empty gradient: give it none (it adds nothing to any norm)
            tp.grad = None if g is None or g.size == 0 else torch.from_numpy(g.copy())

    def check_grads(self, what: str) -> float:
        worst = 0.0
        rtol = TOL[self.dtype]
        for i, (p, tp) in enumerate(zip(self.params, self.tparams)):
            if tp.grad is None:
                assert p.grad is None or p.grad.size == 0, f"{what}: param {i} grew a gradient"
                continue
            ours, ref = np.asarray(p.grad), tp.grad.numpy()
            assert ours.dtype == ref.dtype
            np.testing.assert_allclose(ours, ref, rtol=rtol, atol=0, err_msg=f"{what}: param {i}")
            if ours.size:
                with np.errstate(invalid="ignore", divide="ignore"):
                    rel = np.abs(ours.astype(np.float64) - ref) / np.abs(ref)
                worst = max(worst, float(np.nanmax(np.where(ref == 0, 0.0, rel))))
        return worst


def _rel(a: Any, b: Any) -> float:
    a, b = float(a), float(b)
    return 0.0 if a == b else abs(a - b) / abs(b)


#: the four norm types on every seed; 0, -inf and a fractional order on a few
NORM_CASES = [(seed, p) for seed in SEEDS for p in NORM_TYPES] + [
    (seed, p) for seed in range(3) for p in (0.0, -math.inf, 0.5)
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("seed", "norm_type"), NORM_CASES)
def test_clip_grad_norm_matches_torch(seed: int, norm_type: float, dtype: Any) -> None:
    s = Setup(seed, dtype)
    tgrads = [tp.grad for tp in s.tparams if tp.grad is not None]
    ref_total = torch.nn.utils.get_total_norm(tgrads, norm_type)
    exact = np.linalg.norm(np.concatenate([g.numpy().astype(np.float64).ravel() for g in tgrads]), norm_type)
    # clip hard on most seeds, not at all on some
    max_norm = float(ref_total) * (0.3 if seed % 4 else 2.0)
    ref = torch.nn.utils.clip_grad_norm_(s.tparams, max_norm, norm_type)
    # the optimizer's parameters (flat buffers) plus the loose one, or the plain list
    params = [*s.opt.parameters(), s.params[LOOSE]] if seed % 2 else s.params
    total = clip_grad_norm_(params, max_norm, norm_type)
    assert isinstance(total, np.floating) and total.dtype == s.dtype
    err = _rel(total, ref)
    assert err <= TOL[s.dtype], (float(total), float(ref))
    if s.dtype == np.float32 and norm_type != 0:
        assert _rel(total, exact) <= EXACT_TOL32, "numopt's float32 norm is the exact norm, rounded"
    err = max(err, s.check_grads("clipped"))
    MAX_REL_ERR[f"norm{norm_type}-{np.dtype(dtype).name}-seed{seed}"] = err


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimizer_parameters_only_and_step_uses_clipped_grads(dtype: Any) -> None:
    """Passing opt.parameters() clips the flat buffers; the next step sees the clipped values."""
    s = Setup(5, dtype)
    ours_params = [s.params[i] for i in GROUP_A + GROUP_B]
    torch_params = [s.tparams[i] for i in GROUP_A + GROUP_B]
    ref = torch.nn.utils.clip_grad_norm_(torch_params, 1.0)
    total = clip_grad_norm_(s.opt.parameters(), 1.0)
    assert _rel(total, ref) <= TOL[s.dtype]
    for p, tp in zip(ours_params, torch_params):
        if tp.grad is not None:
            assert p.grad is p._flat.grad_view(p._index)  # pending arrays were moved into the buffer
            np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=TOL[s.dtype])
    topt = reference_for("SGD")([{"params": torch_params[:4]}, {"params": torch_params[4:]}], lr=0.1)
    s.opt.step()
    topt.step()
    for p, tp in zip(ours_params, torch_params):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=TOL[s.dtype], atol=1e-7)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_error_if_nonfinite_raises_like_torch(bad: float, norm_type: float) -> None:
    s = Setup(3, np.float32)
    s.params[2].grad[0, 1, 2] = bad
    s.tparams[2].grad[0, 1, 2] = bad
    before = [None if p.grad is None else np.array(p.grad) for p in s.params]
    with pytest.raises(RuntimeError) as ref_err:
        torch.nn.utils.clip_grad_norm_(s.tparams, 1.0, norm_type, error_if_nonfinite=True)
    with pytest.raises(RuntimeError) as our_err:
        clip_grad_norm_(s.params, 1.0, norm_type, error_if_nonfinite=True)
    assert str(our_err.value) == str(ref_err.value)
    for p, b in zip(s.params, before):  # nothing was scaled
        if b is not None:
            np.testing.assert_array_equal(p.grad, b)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_nonfinite_norm_scales_like_torch_when_allowed(bad: float, norm_type: float) -> None:
    s = Setup(4, np.float64)
    s.params[0].grad[1, 1] = bad
    s.tparams[0].grad[1, 1] = bad
    ref = torch.nn.utils.clip_grad_norm_(s.tparams, 1.0, norm_type)
    total = clip_grad_norm_(s.params, 1.0, norm_type)
    np.testing.assert_equal(float(total), float(ref))
    for p, tp in zip(s.params, s.tparams):
        if tp.grad is not None:
            np.testing.assert_array_equal(np.isnan(p.grad), np.isnan(tp.grad.numpy()))
            ok = ~np.isnan(tp.grad.numpy())
            np.testing.assert_allclose(np.asarray(p.grad)[ok], tp.grad.numpy()[ok], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(4))
def test_clip_grad_value_matches_torch(seed: int, dtype: Any) -> None:
    s = Setup(seed, dtype)
    s.params[0].grad[0, 0] = math.nan
    s.tparams[0].grad[0, 0] = math.nan
    limit = [0.5, 1e-3, 3.0, 100.0][seed]
    torch.nn.utils.clip_grad_value_(s.tparams, limit)
    assert clip_grad_value_(s.params, limit) is None
    for p, tp in zip(s.params, s.tparams):
        if tp.grad is not None:
            np.testing.assert_array_equal(np.asarray(p.grad), tp.grad.numpy())  # clamping is exact


def test_get_total_norm_and_clip_grads_with_norm_match_torch() -> None:
    s = Setup(7, np.float32)
    grads = [p.grad for p in s.params if p.grad is not None]
    tgrads = [tp.grad for tp in s.tparams if tp.grad is not None]
    for norm_type in NORM_TYPES:
        assert (
            _rel(get_total_norm(grads, norm_type), torch.nn.utils.get_total_norm(tgrads, norm_type))
            <= TOL[np.dtype(np.float32)]
        )
    ours_total = get_total_norm(s.params)  # Parameters: their gradients
    ref_total = torch.nn.utils.get_total_norm(tgrads)
    assert _rel(ours_total, ref_total) <= TOL[np.dtype(np.float32)]
    clip_grads_with_norm_(s.params, 0.5, ours_total)
    torch.nn.utils.clip_grads_with_norm_(s.tparams, 0.5, ref_total)
    s.check_grads("clip_grads_with_norm_")


def test_mixed_dtypes_give_a_float64_norm_like_torch() -> None:
    a = numopt.Parameter(np.zeros(3, np.float32))
    b = numopt.Parameter(np.zeros(2, np.float64))
    opt = numopt.SGD([a, b], lr=0.1)  # two flat buffers in one group
    a.grad = np.array([1.0, 2.0, 3.0], np.float32)
    b.grad = np.array([1.0, 2.0])
    ta = torch.zeros(3, requires_grad=True)
    tb = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    ta.grad, tb.grad = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0], dtype=torch.float64)
    ref = torch.nn.utils.clip_grad_norm_([ta, tb], 1.0)
    total = clip_grad_norm_(opt.parameters(), 1.0)
    # torch takes the float32 gradient's norm in float32 first: 1e-7, not 1e-15
    assert total.dtype == np.float64 and _rel(total, ref) <= 1e-7
    np.testing.assert_allclose(a.grad, ta.grad.numpy(), rtol=1e-7)
    np.testing.assert_allclose(b.grad, tb.grad.numpy(), rtol=1e-7)


def test_sparse_gradients_are_coalesced_and_clipped() -> None:
    emb = numopt.Parameter(np.zeros((6, 2), np.float64))
    emb.grad = numopt.SparseGrad([1, 4, 1], np.array([[3.0, 0.0], [0.0, 4.0], [1.0, 0.0]]))
    dense = np.zeros((6, 2))
    dense[1] = [4.0, 0.0]
    dense[4] = [0.0, 4.0]
    total = clip_grad_norm_([emb], 1.0)
    assert total == pytest.approx(math.sqrt(32.0), rel=1e-15)
    assert isinstance(emb.grad, numopt.SparseGrad)
    np.testing.assert_allclose(emb.grad.to_dense(np.empty((6, 2))), dense * (1.0 / (math.sqrt(32.0) + 1e-6)))


def test_norm_is_deterministic_across_thread_counts() -> None:
    rng = np.random.default_rng(0)
    g = rng.standard_normal(300_000).astype(np.float32)
    results = []
    original = numopt.get_num_threads()
    try:
        for n in sorted({1, original}):
            numopt.set_num_threads(n)
            for norm_type in NORM_TYPES:
                results.append((n, norm_type, float(get_total_norm([g], norm_type))))
    finally:
        numopt.set_num_threads(original)
    by_type: dict[float, set[float]] = {}
    for _, norm_type, value in results:
        by_type.setdefault(norm_type, set()).add(value)
    assert all(len(v) == 1 for v in by_type.values()), by_type


def test_empty_inputs() -> None:
    assert clip_grad_norm_([], 1.0) == 0.0
    p = numopt.Parameter(np.zeros(2, np.float32))
    assert clip_grad_norm_([p], 1.0) == 0.0  # no gradient at all
    with pytest.warns(UserWarning, match="empty generator"):
        clip_grad_norm_((q for q in []), 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clip_grad_value_([p], 1.0)


def test_bad_inputs() -> None:
    with pytest.raises(TypeError, match="numopt.Parameter"):
        clip_grad_norm_(np.zeros(3), 1.0)
    with pytest.raises(TypeError, match="numopt.Parameter"):
        clip_grad_value_([np.zeros(3)], 1.0)
    p = numopt.Parameter(np.zeros(2, np.float32))
    g = np.ones(2, np.float32)
    g.flags.writeable = False
    p.grad = g
    with pytest.raises(ValueError, match="read-only"):
        clip_grad_norm_([p], 0.1)
    assert get_total_norm([p]) == pytest.approx(math.sqrt(2))  # reading is fine


def test_kernels_compile_once_per_dtype() -> None:
    """One specialization per dtype, whatever the norm, flags or scalars (no int/float or float32/64 slips)."""
    for dtype in (np.float32, np.float64):
        s = Setup(1, dtype)
        for norm_type in [*NORM_TYPES, -math.inf, 0.5]:
            clip_grad_norm_(s.params, 0.01, norm_type)
        clip_grad_value_(s.params, 0.001)
    for kernel in (clip_kernels.norm_partials, clip_kernels.scale_, clip_kernels.clamp_):
        sigs = kernel.signatures
        assert {sig[0].dtype.name for sig in sigs} <= {"float32", "float64"}
        assert all(sig[0].mutable and sig[0].layout == "C" for sig in sigs)
        assert len(sigs) == len({sig[0].dtype for sig in sigs}), sigs
    for sig in clip_kernels.norm_partials.signatures:
        assert [str(t) for t in sig[1:3]] == ["int64", "float64"]
    for kernel in (clip_kernels.scale_, clip_kernels.clamp_):
        for sig in kernel.signatures:
            assert all(t == sig[0].dtype for t in sig[1:]), sig  # scalars cast to the array dtype
