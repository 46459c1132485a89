"""numopt.Lookahead side by side with pytorch_optimizer.Lookahead (pytorch-optimizer 4.1.0).

Lookahead wraps an optimizer instead of taking parameter groups, so it has no OPTIM_DB rows:
here numopt.Lookahead(numopt.X(...)) steps next to pytorch_optimizer.Lookahead(torch.optim.X(...))
on the parity problems of tests/reference.py (two groups, gradients None on some steps).
"""

from __future__ import annotations

import copy
import doctest
import importlib
import pickle
from typing import Any

import numpy as np
import pytest
import pytorch_optimizer
import torch

import numopt

from .optim_db import LARGE_SHAPES
from .reference import SHAPES, SPLIT, random_grads

STEPS = 100

#: (id, inner class name, inner kwargs, group-2 overrides, Lookahead kwargs, dtype, shapes)
CASES = [
    ("adamw-default", "AdamW", {"lr": 1e-2, "weight_decay": 0.1}, {"lr": 5e-3}, {}, np.float32, SHAPES),
    (
        "adamw-k3-alpha0.8-pullback",
        "AdamW",
        {"lr": 1e-2},
        {"lr": 5e-3},
        {"k": 3, "alpha": 0.8, "pullback_momentum": "pullback"},
        np.float32,
        SHAPES,
    ),
    (
        "sgd-momentum-pullback",
        "SGD",
        {"lr": 1e-2, "momentum": 0.9},
        {"lr": 5e-3},
        {"k": 5, "alpha": 0.5, "pullback_momentum": "pullback"},
        np.float32,
        SHAPES,
    ),
    (
        "sgd-momentum-reset-k4-alpha0.3",
        "SGD",
        {"lr": 1e-2, "momentum": 0.9, "weight_decay": 0.01},
        {"lr": 5e-3},
        {"k": 4, "alpha": 0.3, "pullback_momentum": "reset"},
        np.float32,
        SHAPES,
    ),
    (
        "sgd-nesterov-k2-alpha0.6",
        "SGD",
        {"lr": 1e-2, "momentum": 0.8, "nesterov": True},
        {"momentum": 0.5},
        {"k": 2, "alpha": 0.6},
        np.float32,
        SHAPES,
    ),
    (
        "adamw-large-pullback",
        "AdamW",
        {"lr": 1e-2, "weight_decay": 0.1},
        {"lr": 5e-3},
        {"k": 5, "alpha": 0.5, "pullback_momentum": "pullback"},
        np.float32,
        LARGE_SHAPES,
    ),
    (
        "sgd-large-pullback",
        "SGD",
        {"lr": 1e-2, "momentum": 0.9},
        {"lr": 5e-3},
        {"k": 3, "alpha": 0.7, "pullback_momentum": "pullback"},
        np.float32,
        LARGE_SHAPES,
    ),
    ("adam-float64", "Adam", {"lr": 1e-2}, {"lr": 5e-3}, {"k": 4, "alpha": 0.4}, np.float64, SHAPES),
    (
        "sgd-float64-reset",
        "SGD",
        {"lr": 1e-2, "momentum": 0.9},
        {},
        {"k": 3, "pullback_momentum": "reset"},
        np.float64,
        SHAPES,
    ),
]


class _Pair:
    def __init__(self, case: tuple, seed: int = 0) -> None:
        _, name, kwargs, group2, la_kwargs, dtype, shapes = case
        rng = np.random.default_rng(seed)
        self.dtype = np.dtype(dtype)
        self.shapes = shapes
        init = [rng.standard_normal(s).astype(dtype) for s in shapes]
        self.params = [numopt.Parameter(a.copy()) for a in init]
        self.ref_params = [torch.tensor(a.copy(), requires_grad=True) for a in init]
        inner = getattr(numopt, name)(
            [{"params": self.params[:SPLIT]}, {"params": self.params[SPLIT:], **group2}], **kwargs
        )
        ref_inner = getattr(torch.optim, name)(
            [{"params": self.ref_params[:SPLIT]}, {"params": self.ref_params[SPLIT:], **group2}], **kwargs
        )
        self.ours = numopt.Lookahead(inner, **la_kwargs)
        self.ref = pytorch_optimizer.Lookahead(ref_inner, **la_kwargs)

    def set_grads(self, grads: list[np.ndarray | None]) -> None:
        for p, tp, g in zip(self.params, self.ref_params, grads):
            p.grad = None if g is None else g.copy()
            tp.grad = None if g is None else torch.from_numpy(g.copy())

    def step(self) -> None:
        self.ours.step()
        self.ref.step()

    def compare(self, step: int) -> float:
        tol = {"rtol": 1e-12, "atol": 1e-14} if self.dtype == np.float64 else {"rtol": 1e-5, "atol": 1e-6}
        worst = 0.0
        for i, (p, tp) in enumerate(zip(self.params, self.ref_params)):
            pairs = [("param", p.data, tp.detach().numpy())]
            tstate = self.ref.state[tp]
            assert set(self.ours.state[p]) == set(tstate), (i, set(self.ours.state[p]), set(tstate))
            pairs += [(k, self.ours.state[p][k], v.numpy()) for k, v in tstate.items()]
            inner_ref = self.ref.optimizer.state.get(tp, {})
            if "momentum_buffer" in self.ours.optimizer.state.get(p, {}):
                pairs.append(
                    (
                        "momentum_buffer",
                        self.ours.optimizer.state[p]["momentum_buffer"],
                        inner_ref["momentum_buffer"].numpy(),
                    )
                )
            for what, ours, ref in pairs:
                ours = np.asarray(ours)
                assert ours.dtype == ref.dtype
                np.testing.assert_allclose(ours, ref, err_msg=f"step {step}: param {i} {what}", **tol)
                if ours.size:
                    scale = np.maximum(np.abs(ref), tol["atol"] / tol["rtol"])
                    worst = max(worst, float(np.max(np.abs(ours.astype(np.float64) - ref) / scale)))
        for g, tg in zip(self.ours.param_groups, self.ref.param_groups):
            assert g["counter"] == tg["counter"]
        return worst


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_the_reference_every_step(case: tuple) -> None:
    pair = _Pair(case)
    rng = np.random.default_rng(1)
    worst = 0.0
    for step in range(STEPS):
        pair.set_grads(random_grads(rng, step, pair.dtype, pair.shapes))
        pair.step()
        worst = max(worst, pair.compare(step))
    print(f"Lookahead {case[0]}: max relative error {worst:.3g}")


def _drive(opt: Any, params: list[numopt.Parameter], grads: list[list[np.ndarray | None]]) -> None:
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = None if g is None else g.copy()
        opt.step()


def _fresh(case: tuple, seed: int = 0) -> tuple[numopt.Lookahead, list[numopt.Parameter]]:
    pair = _Pair(case, seed)
    return pair.ours, pair.params


@pytest.mark.parametrize("case", [CASES[1], CASES[3]], ids=[CASES[1][0], CASES[3][0]])
def test_state_dict_resume_is_exact(case: tuple) -> None:
    rng = np.random.default_rng(2)
    grads = [random_grads(rng, s, np.dtype(case[5]), case[6]) for s in range(25)]
    a, pa = _fresh(case)
    _drive(a, pa, grads[:13])  # mid-cycle: counters not at 0
    sd = copy.deepcopy(a.state_dict())
    assert set(sd) == {"lookahead_state", "base_optimizer"}
    assert sorted(sd["lookahead_state"]) == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2)]
    assert [g["counter"] for g in sd["base_optimizer"]["param_groups"]] == [13 % case[4]["k"]] * 2
    b, pb = _fresh(case, seed=5)  # other initial values: everything comes from the state dict and the params
    for p, q in zip(pa, pb):
        q.data[...] = p.data
    b.load_state_dict(sd)
    _drive(a, pa, grads[13:])
    _drive(b, pb, grads[13:])
    for p, q in zip(pa, pb):
        np.testing.assert_array_equal(p.data, q.data)
        for key in a.state[p]:
            np.testing.assert_array_equal(a.state[p][key], b.state[q][key])


def test_state_dict_loads_into_the_reference_form() -> None:
    # the same layout as the reference's: keys, (group, index) entries, counters in the base optimizer's groups
    pair = _Pair(CASES[2])
    rng = np.random.default_rng(3)
    for step in range(7):
        pair.set_grads(random_grads(rng, step, pair.dtype, pair.shapes))
        pair.step()
    ours, ref = pair.ours.state_dict(), pair.ref.state_dict()
    assert set(ours) == set(ref)
    assert set(ours["lookahead_state"]) == set(ref["lookahead_state"])
    for key, entry in ref["lookahead_state"].items():
        assert set(ours["lookahead_state"][key]) == set(entry)
    assert [g["counter"] for g in ours["base_optimizer"]["param_groups"]] == [
        g["counter"] for g in ref["base_optimizer"]["param_groups"]
    ]


def test_load_state_dict_refuses_a_mismatch_and_changes_nothing() -> None:
    a, pa = _fresh(CASES[0])
    sd = a.state_dict()
    before = [p.data.copy() for p in pa]
    bad = copy.deepcopy(sd)
    del bad["lookahead_state"][(1, 2)]
    with pytest.raises(ValueError, match="does not match"):
        a.load_state_dict(bad)
    bad = copy.deepcopy(sd)
    bad["lookahead_state"][(0, 0)]["slow_params"] = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="shape"):
        a.load_state_dict(bad)
    with pytest.raises(ValueError, match="base_optimizer"):
        a.load_state_dict({"lookahead_state": {}})
    pull, _ = _fresh(CASES[1])
    with pytest.raises(ValueError, match="slow_momentum"):
        _load_without_momentum(pull)
    for p, b in zip(pa, before):
        np.testing.assert_array_equal(p.data, b)


def _load_without_momentum(opt: numopt.Lookahead) -> None:
    sd = opt.state_dict()
    for entry in sd["lookahead_state"].values():
        del entry["slow_momentum"]
    opt.load_state_dict(sd)


def test_pickle_round_trip_steps_alike() -> None:
    case = CASES[2]
    rng = np.random.default_rng(4)
    grads = [random_grads(rng, s, np.dtype(np.float32), case[6]) for s in range(16)]
    a, pa = _fresh(case)
    _drive(a, pa, grads[:7])
    b = pickle.loads(pickle.dumps(a))
    pb = [p for g in b.param_groups for p in g["params"]]
    assert b.param_groups is b.optimizer.param_groups
    for slows in b._slow:  # the restored state views the restored slow buffers
        for flat, arrays in slows:
            for p in (q for q in flat.params if q.size):
                assert np.shares_memory(b.state[p]["slow_params"], arrays["slow_params"])
    _drive(a, pa, grads[7:])
    _drive(b, pb, grads[7:])
    for p, q in zip(pa, pb):
        np.testing.assert_array_equal(p.data, q.data)
        np.testing.assert_array_equal(a.state[p]["slow_params"], b.state[q]["slow_params"])


def test_scheduler_edits_reach_the_wrapped_optimizer() -> None:
    pair = _Pair(CASES[0])
    ours = numopt.lr_scheduler.StepLR(pair.ours, step_size=4, gamma=0.5)
    ref = torch.optim.lr_scheduler.StepLR(pair.ref, step_size=4, gamma=0.5)
    assert pair.ours.param_groups is pair.ours.optimizer.param_groups
    rng = np.random.default_rng(5)
    for step in range(20):
        pair.set_grads(random_grads(rng, step, pair.dtype, pair.shapes))
        pair.step()
        ours.step()
        ref.step()
        pair.compare(step)
    assert [g["lr"] for g in pair.ours.optimizer.param_groups] == [g["lr"] for g in pair.ref.optimizer.param_groups]
    assert pair.ours.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**5)


def test_zero_grad_add_param_group_and_defaults() -> None:
    w = numopt.Parameter(np.ones(3, np.float32))
    opt = numopt.Lookahead(numopt.SGD([w], lr=0.1, momentum=0.9), k=2)
    assert opt.defaults["lookahead_k"] == 2 and opt.defaults["lookahead_alpha"] == 0.5
    assert opt.defaults["momentum"] == 0.9
    w.grad = np.ones(3, np.float32)
    opt.zero_grad()
    assert w.grad is None
    v = numopt.Parameter(np.full(4, 2.0, np.float64))
    opt.add_param_group({"params": [v], "lr": 0.5})
    assert opt.param_groups[1]["counter"] == 0 and opt.optimizer.param_groups[1]["lr"] == 0.5
    np.testing.assert_array_equal(opt.state[v]["slow_params"], v.data)
    for _ in range(2):
        w.grad = np.ones(3, np.float32)
        v.grad = np.ones(4, np.float64)
        opt.step()
    assert opt.state[v]["slow_params"].dtype == np.float64
    np.testing.assert_array_equal(opt.state[v]["slow_params"], v.data)


def test_backup_and_load_cache_round_trip() -> None:
    pair = _Pair(CASES[0])
    rng = np.random.default_rng(6)
    for step in range(7):
        pair.set_grads(random_grads(rng, step, pair.dtype, pair.shapes))
        pair.step()
    fast = [p.data.copy() for p in pair.params]
    pair.ours.backup_and_load_cache()
    pair.ref.backup_and_load_cache()
    for p, tp in zip(pair.params, pair.ref_params):
        np.testing.assert_array_equal(p.data, pair.ours.state[p]["slow_params"])
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-5, atol=1e-6)
    pair.ours.clear_and_load_backup()
    for p, f in zip(pair.params, fast):
        np.testing.assert_array_equal(p.data, f)
        assert "backup_params" not in pair.ours.state[p]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k": 0}, ValueError, "k must be positive"),
        ({"k": 2.5}, TypeError, "k must be a positive integer"),
        ({"alpha": 1.0}, ValueError, r"alpha must be a finite number >= 0.0 and < 1.0"),
        ({"alpha": -0.1}, ValueError, "alpha"),
        ({"pullback_momentum": "nesterov"}, ValueError, "pullback_momentum must be one of"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    w = numopt.Parameter(np.ones(3, np.float32))
    with pytest.raises(error, match=match):
        numopt.Lookahead(numopt.SGD([w], lr=0.1), **kwargs)


def test_refuses_a_torch_optimizer() -> None:
    t = torch.zeros(3, requires_grad=True)
    with pytest.raises(TypeError, match="numopt Optimizer instance"):
        numopt.Lookahead(torch.optim.SGD([t], lr=0.1))


def test_docstring_example_runs() -> None:
    result = doctest.testmod(importlib.import_module("numopt.optim.lookahead"), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
