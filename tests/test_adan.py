"""numopt.Adan beyond the OPTIM_DB rows: float64 clipping, steps without gradients, the functional rule."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytorch_optimizer
import torch
from numba import njit

import numopt
import numopt.functional as F

from .optim_db import OptimCase
from .reference import SPLIT, make_pair, random_grads

CLIP_SHAPES = ((5, 3), (7,), (2, 3, 4), (1,), (4, 1), (0, 3), (6,))


def test_docstring_example_runs() -> None:
    result = doctest.testmod(importlib.import_module("numopt.optim.adan"), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_float64_clipping_matches_the_reference_to_its_float32_clip_factor() -> None:
    # the reference forms the clipping factor in float32 even for float64 parameters; numopt in float64
    case = OptimCase(
        "Adan",
        {"lr": 1e-2, "weight_decay": 0.1, "max_grad_norm": 1.0},
        "float64 clipped",
        dtype=np.float64,
        shapes=CLIP_SHAPES,
    )
    pair = make_pair(case)
    rng = np.random.default_rng(1)
    for step in range(40):
        pair.set_grads(random_grads(rng, step, pair.dtype, pair.shapes))
        pair.step()
        for p, tp in zip(pair.params, pair.ref_params):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-6, atol=1e-9)
            for key, tv in pair.ref.state.get(tp, {}).items():
                np.testing.assert_allclose(pair.ours.state[p][key], tv.numpy(), rtol=1e-6, atol=1e-9, err_msg=key)


def test_a_step_without_gradients_counts_the_groups_step_as_the_reference() -> None:
    init = np.linspace(-1, 1, 6).astype(np.float32)
    w = numopt.Parameter(init.copy())
    tw = torch.tensor(init.copy(), requires_grad=True)
    ours, ref = numopt.Adan([w], lr=0.01), pytorch_optimizer.Adan([tw], lr=0.01)
    for t in range(6):
        g = None if t in (0, 2, 3) else np.cos(np.arange(6) + t).astype(np.float32)
        w.grad = None if g is None else g.copy()
        tw.grad = None if g is None else torch.from_numpy(g.copy())
        ours.step()
        ref.step()
        assert ours.param_groups[0]["step"] == ref.param_groups[0]["step"] == t + 1
        np.testing.assert_allclose(w.data, tw.detach().numpy(), rtol=1e-6)


def test_resume_from_state_dict_is_exact() -> None:
    case = OptimCase("Adan", {"lr": 1e-2, "max_grad_norm": 1.0}, "resume", shapes=CLIP_SHAPES)
    a = make_pair(case)
    rng = np.random.default_rng(2)
    grads = [random_grads(rng, s, np.dtype(np.float32), CLIP_SHAPES) for s in range(20)]
    for s in range(10):
        a.set_grads(grads[s])
        a.ours.step()
    sd = a.ours.state_dict()
    fresh = [numopt.Parameter(p.data.copy()) for p in a.params]
    c = numopt.Adan([{"params": fresh[:SPLIT]}, {"params": fresh[SPLIT:]}], **case.kwargs)
    c.load_state_dict(sd)
    for s in range(10, 20):
        for opt, params in ((a.ours, a.params), (c, fresh)):
            for p, g in zip(params, grads[s]):
                p.grad = None if g is None else g.copy()
            opt.step()
    for p, q in zip(a.params, fresh):
        np.testing.assert_array_equal(p.data, q.data)


@njit(cache=True)
def _loop_adan(x, g_table, st, steps, lr, beta1, beta2, beta3, eps, weight_decay):
    for t in range(1, steps + 1):
        g = g_table[(t - 1) % g_table.shape[0]]
        bc1, bc2, bc3_sqrt = F.adan_scalars(beta1, beta2, beta3, t)
        F.adan(
            x,
            g,
            st.exp_avg,
            st.exp_avg_sq,
            st.exp_avg_diff,
            st.previous_grad,
            lr,
            beta1,
            beta2,
            beta3,
            eps,
            weight_decay,
            bc1,
            bc2,
            bc3_sqrt,
            1.0,
            False,
            False,
            t == 1,
        )


def test_jitted_loop_equals_the_class() -> None:
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal(67).astype(np.float32)
    table = rng.standard_normal((5, 67)).astype(np.float32)
    p = numopt.Parameter(x0.copy())
    opt = numopt.Adan([p], lr=0.02, weight_decay=0.05)
    for t in range(30):
        p.grad = table[t % 5].copy()
        opt.step()
    x = x0.copy()
    st = F.init_state("adan", x)
    _loop_adan(x, table, st, 30, 0.02, 0.98, 0.92, 0.99, 1e-8, 0.05)
    np.testing.assert_array_equal(x, p.data)
    for key in st._fields:
        np.testing.assert_array_equal(getattr(st, key), np.asarray(opt.state[p][key]).reshape(-1), err_msg=key)


def test_serial_twin_gives_the_same_result() -> None:
    rng = np.random.default_rng(4)
    x1 = rng.standard_normal(40_000).astype(np.float32)
    x2 = x1.copy()
    g = rng.standard_normal(40_000).astype(np.float32)
    s1, s2 = F.init_state("adan", x1), F.init_state("adan", x2)
    for fn, x, s in ((F.adan, x1, s1), (F.adan_serial, x2, s2)):
        for t in (1, 2):
            bc = F.adan_scalars(0.98, 0.92, 0.99, t)
            fn(x, g, *s, 0.01, 0.98, 0.92, 0.99, 1e-8, 0.1, *bc, 0.5, True, True, t == 1)
    np.testing.assert_array_equal(x1, x2)
