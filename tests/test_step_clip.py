"""Optimizer.clip_grad_norm_: clipping by norm and the non-finite guard inside the step."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

import numopt
from numopt.optimizer import registered

from .optim_db import LARGE_SHAPES, OPTIM_DB, prepared

torch.set_num_threads(1)

SHAPES = [(5, 3), (7,), (), (0, 2), (20_000,)]  # the last one above the serial-loop threshold: parallel loop
F32 = {"rtol": 1e-5, "atol": 1e-6}


def _grads(rng: np.random.Generator, t: int, dtype=np.float32, shapes=SHAPES) -> list[np.ndarray]:
    # total norm about 7 on most steps (clipped to 1), about 0.14 on every third (below the threshold)
    scale = 0.001 if t % 3 == 2 else 0.05
    return [np.asarray(rng.standard_normal(s) * scale, dtype=dtype) for s in shapes]


def _params(dtype=np.float32, shapes=SHAPES, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.asarray(rng.standard_normal(s), dtype=dtype) for s in shapes]


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("AdamW", {"lr": 1e-2, "weight_decay": 0.1}),
        ("AdamW", {"lr": 1e-2, "amsgrad": True, "maximize": True}),
        ("SGD", {"lr": 0.1, "momentum": 0.9}),
        ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ],
)
def test_clipped_steps_track_torch_clip_grad_norm_and_the_same_optimizer(name, kwargs) -> None:
    init = _params()
    ours = [numopt.Parameter(a.copy()) for a in init]
    ref = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    opt = getattr(numopt, name)(ours, **kwargs)
    topt = getattr(torch.optim, name)(ref, **kwargs)
    rng = np.random.default_rng(1)
    below = 0
    for t in range(100):
        for p, tp, g in zip(ours, ref, _grads(rng, t)):
            p.grad, tp.grad = g.copy(), torch.from_numpy(g.copy())
        norm = opt.clip_grad_norm_(1.0)
        tnorm = torch.nn.utils.clip_grad_norm_(ref, 1.0)
        below += float(tnorm) < 1.0
        assert isinstance(norm, np.float32)
        np.testing.assert_allclose(float(norm), float(tnorm), rtol=1e-6)
        opt.step()
        topt.step()
        for i, (p, tp) in enumerate(zip(ours, ref)):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), err_msg=f"step {t}, param {i}", **F32)
    assert 20 <= below <= 50  # steps below the threshold were covered too


def _first_rows() -> list:
    seen: dict[str, object] = {}
    for row in OPTIM_DB:
        if row.name not in seen and getattr(numopt, row.name)._fuses_grad_scale:
            seen[row.name] = row
    return list(seen.values())


def test_every_optimizer_with_a_generated_rule_fuses_clipping() -> None:
    fused = {c.__name__ for c in registered(elementwise=True) if c._fuses_grad_scale}
    assert fused == {c.__name__ for c in registered(elementwise=True)}
    assert {r.name for r in _first_rows()} == fused


@pytest.mark.parametrize("row", _first_rows(), ids=lambda r: r.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_clipping_equals_clipping_first_then_stepping_bit_for_bit(row, dtype) -> None:
    """The fused step reads each gradient times the coefficient, exactly what the scaling pass writes."""
    shapes = list(LARGE_SHAPES)
    init = _params(dtype, shapes)
    a = [numopt.Parameter(x.copy()) for x in init]
    b = [numopt.Parameter(x.copy()) for x in init]
    opt_a = prepared(row, getattr(numopt, row.name)(a, **row.kwargs))
    opt_b = prepared(row, getattr(numopt, row.name)(b, **row.kwargs))
    rng = np.random.default_rng(3)
    for t in range(6):
        grads = _grads(rng, t, dtype, shapes)
        for p, q, g in zip(a, b, grads):
            p.grad, q.grad = g.copy(), g.copy()
        fused = opt_a.clip_grad_norm_(0.5)
        separate = numopt.utils.clip_grad_norm_(b, 0.5)
        assert fused == separate and fused.dtype == separate.dtype
        opt_a.step()
        opt_b.step()
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.data, q.data)
        for key, value in opt_a.state[p].items():
            np.testing.assert_array_equal(value, opt_b.state[q][key], err_msg=key)


def test_gradients_stay_unclipped_until_the_step_and_apply_grad_scale_writes_them() -> None:
    w = numopt.Parameter(np.zeros(2, np.float32))
    opt = numopt.SGD([w], lr=1.0)
    w.grad = np.array([3.0, 4.0], np.float32)
    assert float(opt.clip_grad_norm_(1.0)) == 5.0
    np.testing.assert_array_equal(w.grad, [3.0, 4.0])  # not written: the step applies the coefficient
    opt.apply_grad_scale_()
    np.testing.assert_allclose(w.grad, [0.6, 0.8], rtol=1e-6)
    opt.step()  # the coefficient was used up by apply_grad_scale_: not applied twice
    np.testing.assert_allclose(w.data, [-0.6, -0.8], rtol=1e-6)
    np.testing.assert_allclose(w.grad, [0.6, 0.8], rtol=1e-6)


def test_zero_grad_drops_a_pending_coefficient_and_a_pending_skip() -> None:
    w = numopt.Parameter(np.zeros(2, np.float32))
    opt = numopt.SGD([w], lr=1.0)
    w.grad = np.array([30.0, 40.0], np.float32)
    opt.clip_grad_norm_(1.0)
    opt.zero_grad()
    w.grad = np.array([3.0, 4.0], np.float32)
    opt.step()
    np.testing.assert_array_equal(w.data, [-3.0, -4.0])
    w.grad = np.array([np.nan, 4.0], np.float32)
    opt.clip_grad_norm_(1.0, skip_nonfinite=True)
    opt.zero_grad()
    w.grad = np.array([1.0, 1.0], np.float32)
    opt.step()
    assert not opt.last_step_skipped and opt.skipped_steps == 0
    np.testing.assert_array_equal(w.data, [-4.0, -5.0])


def test_a_second_clip_before_the_step_compounds_as_torchs_does() -> None:
    init = _params()
    ours = [numopt.Parameter(a.copy()) for a in init]
    ref = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    opt, topt = numopt.Adam(ours, lr=0.01), torch.optim.Adam(ref, lr=0.01)
    rng = np.random.default_rng(4)
    for p, tp, g in zip(ours, ref, _grads(rng, 0)):
        p.grad, tp.grad = g.copy(), torch.from_numpy(g.copy())
    for max_norm in (2.0, 0.5):
        np.testing.assert_allclose(
            float(opt.clip_grad_norm_(max_norm)), float(torch.nn.utils.clip_grad_norm_(ref, max_norm)), rtol=1e-6
        )
    opt.step()
    topt.step()
    for p, tp in zip(ours, ref):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), **F32)


@pytest.mark.parametrize("name, kwargs", [("AdamW", {"lr": 0.01}), ("NAdam", {"lr": 0.01}), ("Lion", {"lr": 1e-3})])
@pytest.mark.parametrize("max_norm", [1.0, None])
def test_a_nonfinite_gradient_skips_the_step_and_leaves_everything_bit_identical(name, kwargs, max_norm) -> None:
    init = _params()
    guarded = [numopt.Parameter(a.copy()) for a in init]
    clean = [numopt.Parameter(a.copy()) for a in init]
    opt = getattr(numopt, name)(guarded, **kwargs)
    twin = getattr(numopt, name)(clean, **kwargs)  # never sees the bad step
    rng = np.random.default_rng(5)
    steps = [_grads(rng, t) for t in range(8)]
    bad = [g.copy() for g in steps[3]]
    bad[4][123] = np.nan if name != "NAdam" else np.inf
    for t, grads in enumerate(steps):
        if t == 3:
            for p, g in zip(guarded, bad):
                p.grad = g.copy()
            norm = opt.clip_grad_norm_(max_norm, skip_nonfinite=True)
            assert not math.isfinite(float(norm))
            before = pickle.loads(pickle.dumps((opt.state_dict(), [p.data.copy() for p in guarded])))
            assert opt.step() is None
            assert opt.last_step_skipped and opt.skipped_steps == 1
            after = opt.state_dict()
            for p, values in zip(guarded, before[1]):
                np.testing.assert_array_equal(p.data, values)
            assert after["param_groups"] == before[0]["param_groups"]
            for k, entry in before[0]["state"].items():
                for key, value in entry.items():
                    np.testing.assert_array_equal(after["state"][k][key], value, err_msg=key)
        for p, g in zip(guarded, grads):
            p.grad = g.copy()
        for p, g in zip(clean, grads):
            p.grad = g.copy()
        opt.clip_grad_norm_(max_norm, skip_nonfinite=True)
        twin.clip_grad_norm_(max_norm)
        opt.step()
        twin.step()
        assert not opt.last_step_skipped
    assert opt.skipped_steps == 1
    for p, q in zip(guarded, clean):  # as if the bad step never happened
        np.testing.assert_array_equal(p.data, q.data)
    assert opt.state_dict()["param_groups"] == twin.state_dict()["param_groups"]


def test_a_nonfinite_norm_without_the_guard_scales_by_nan_as_torch_does() -> None:
    w = numopt.Parameter(np.ones(3, np.float32))
    tw = torch.ones(3, requires_grad=True)
    opt, topt = numopt.SGD([w], lr=0.1), torch.optim.SGD([tw], lr=0.1)
    g = np.array([1.0, np.inf, 2.0], np.float32)
    w.grad, tw.grad = g.copy(), torch.from_numpy(g.copy())
    assert float(opt.clip_grad_norm_(1.0)) == float(torch.nn.utils.clip_grad_norm_([tw], 1.0)) == math.inf
    opt.step()
    topt.step()
    np.testing.assert_array_equal(w.data, tw.detach().numpy())
    w.grad = g.copy()
    with pytest.raises(RuntimeError, match="The total norm of order 2.0 for gradients from `parameters` is non-finite"):
        opt.clip_grad_norm_(1.0, error_if_nonfinite=True)


@pytest.mark.parametrize(
    "name, make",
    [
        ("Adafactor", lambda ps: numopt.Adafactor(ps, lr=0.01)),
        ("Muon", lambda ps: numopt.Muon([p for p in ps if p.ndim == 2], lr=0.01)),
        ("Lamb", lambda ps: numopt.Lamb(ps, lr=0.01)),
        ("LARS", lambda ps: numopt.LARS(ps, lr=0.01)),
        ("Prodigy", lambda ps: numopt.Prodigy(ps)),
    ],
)
def test_optimizers_without_a_generated_rule_clip_at_once(name, make) -> None:
    # their step reads gradients outside a generated loop: the coefficient is written into them at once
    init = _params(shapes=[(5, 3), (7, 4)])
    a = [numopt.Parameter(x.copy()) for x in init]
    b = [numopt.Parameter(x.copy()) for x in init]
    opt_a, opt_b = make(a), make(b)
    assert not type(opt_a)._fuses_grad_scale
    rng = np.random.default_rng(6)
    for t in range(4):
        grads = _grads(rng, t, shapes=[(5, 3), (7, 4)])
        for p, q, g in zip(a, b, grads):
            p.grad, q.grad = g.copy() * 30, g.copy() * 30
        assert opt_a.clip_grad_norm_(1.0) == numopt.utils.clip_grad_norm_(b, 1.0)
        np.testing.assert_array_equal(a[0].grad, b[0].grad)  # already clipped
        opt_a.step()
        opt_b.step()
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.data, q.data)


def test_lbfgs_refuses_with_what_to_do_instead() -> None:
    w = numopt.Parameter(np.ones(3, np.float32))
    opt = numopt.LBFGS([w])
    w.grad = np.ones(3, np.float32)
    with pytest.raises(TypeError, match="LBFGS.clip_grad_norm_ is not supported: .*clip inside the closure"):
        opt.clip_grad_norm_(1.0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"max_norm": "1"}, TypeError, "max_norm must be a real number or None"),
        ({"max_norm": 1.0, "skip_nonfinite": 1}, TypeError, "skip_nonfinite must be True or False"),
        ({"max_norm": 1.0, "foreach": "yes"}, TypeError, "foreach must be None, True or False"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, match) -> None:
    w = numopt.Parameter(np.ones(3, np.float32))
    opt = numopt.Adam([w])
    w.grad = np.ones(3, np.float32)
    with pytest.raises(error, match=match):
        opt.clip_grad_norm_(**kwargs)
    opt.step()  # nothing was left pending
    np.testing.assert_allclose(w.data, np.full(3, 0.999, np.float32), rtol=1e-6)


def test_no_gradients_give_a_zero_norm_and_change_nothing() -> None:
    w = numopt.Parameter(np.ones(3, np.float32))
    opt = numopt.Adam([w])
    assert float(opt.clip_grad_norm_(1.0)) == 0.0
    opt.step()
    np.testing.assert_array_equal(w.data, np.ones(3, np.float32))


def test_bound_torch_model_clips_as_torch_nn_utils_clip_grad_norm_() -> None:
    from numopt.interop.torch import bind

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    twin = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    twin.load_state_dict(model.state_dict())
    opt = bind(model, numopt.AdamW, lr=0.01)
    topt = torch.optim.AdamW(twin.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(1)
    for _ in range(30):
        x, y = torch.randn(32, 6, generator=g) * 10, torch.randn(32, 2, generator=g)
        for m, o in ((model, opt), (twin, topt)):
            o.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
        n = opt.clip_grad_norm_(0.5)
        tn = torch.nn.utils.clip_grad_norm_(twin.parameters(), 0.5)
        np.testing.assert_allclose(float(n), float(tn), rtol=1e-5)
        opt.step()
        topt.step()
    for (name, a), (_, b) in zip(model.named_parameters(), twin.named_parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), err_msg=name, **F32)


def test_a_pending_coefficient_survives_pickling() -> None:
    w = numopt.Parameter(np.zeros(2, np.float32))
    opt = numopt.SGD([w], lr=1.0)
    w.grad = np.array([3.0, 4.0], np.float32)
    opt.clip_grad_norm_(1.0)
    opt2 = pickle.loads(pickle.dumps(opt))
    opt2.step()
    w2 = opt2.param_groups[0]["params"][0]
    np.testing.assert_allclose(w2.data, [-0.6, -0.8], rtol=1e-6)


def test_adan_takes_its_own_gradient_norm_over_the_clipped_gradients() -> None:
    # Adan's max_grad_norm reduction reads the gradients before its fused pass: it must see them clipped
    init = _params(shapes=[(5, 3), (7,), (20_000,)])
    a = [numopt.Parameter(x.copy()) for x in init]
    b = [numopt.Parameter(x.copy()) for x in init]
    opt_a = numopt.Adan(a, lr=0.01, max_grad_norm=0.5)
    opt_b = numopt.Adan(b, lr=0.01, max_grad_norm=0.5)
    rng = np.random.default_rng(8)
    for t in range(6):
        for p, q, g in zip(a, b, _grads(rng, t, shapes=[(5, 3), (7,), (20_000,)])):
            p.grad, q.grad = g.copy(), g.copy()
        opt_a.clip_grad_norm_(2.0)
        numopt.utils.clip_grad_norm_(b, 2.0)
        opt_a.step()
        opt_b.step()
    for p, q in zip(a, b):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-6, atol=1e-7)


def test_lookahead_clips_and_skips_like_any_optimizer() -> None:
    init = _params(shapes=[(5, 3), (7,)])
    a = [numopt.Parameter(x.copy()) for x in init]
    b = [numopt.Parameter(x.copy()) for x in init]
    opt_a = numopt.Lookahead(numopt.AdamW(a, lr=0.01), k=2)
    opt_b = numopt.Lookahead(numopt.AdamW(b, lr=0.01), k=2)
    rng = np.random.default_rng(9)
    for t in range(5):
        grads = _grads(rng, t, shapes=[(5, 3), (7,)])
        for p, q, g in zip(a, b, grads):
            p.grad, q.grad = g.copy() * 50, g.copy() * 50
        if t == 2:
            a[0].grad[0, 0] = np.nan
            opt_a.clip_grad_norm_(1.0, skip_nonfinite=True)
            opt_a.step()
            assert opt_a.last_step_skipped and opt_a.skipped_steps == 1
            for p, g in zip(a, grads):
                p.grad = g.copy() * 50
        opt_a.clip_grad_norm_(1.0, skip_nonfinite=True)
        numopt.utils.clip_grad_norm_(b, 1.0)
        opt_a.step()
        opt_b.step()
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.data, q.data)
