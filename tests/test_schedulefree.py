"""Schedule-Free SGD / AdamW: train()/eval() switching, modes and group scalars against schedulefree 1.4.1.

The OPTIM_DB rows check every step in train mode (tests/test_parity.py); here the parameters are
also compared after each switch between the sequences (``eval()``: x, ``train()``: y), on
parameters above the serial-loop threshold, and the modes' bookkeeping is compared with the
reference's: the initial mode, a step in eval mode, idempotent switches, the group scalars, and
checkpoints saved in eval mode.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import numopt
from numopt.kernels.schedulefree import adamw_schedulefree_scalars, schedule_scalars, sgd_schedulefree_scalars

from .optim_db import LARGE_SHAPES, OptimCase
from .reference import Pair, compare, make_pair, random_grads

#: the per-group scalars the reference keeps
GROUP_SCALARS = ("k", "train_mode", "weight_sum", "lr_max", "scheduled_lr")

CASES = [
    OptimCase("SGDScheduleFree", {"lr": 0.1, "weight_decay": 0.1}, "switch", {"momentum": 0.7}, prepare="train"),
    OptimCase("SGDScheduleFree", {"lr": 0.1, "warmup_steps": 4}, "switch large", shapes=LARGE_SHAPES, prepare="train"),
    OptimCase(
        "SGDScheduleFree",
        {"lr": 0.1, "r": 0.5, "weight_decay": 0.1},
        "switch float64",
        {"momentum": 0.5},
        np.float64,
        prepare="train",
    ),
    OptimCase(
        "AdamWScheduleFree", {"lr": 1e-2, "weight_decay": 0.1}, "switch", {"betas": (0.8, 0.99)}, prepare="train"
    ),
    OptimCase(
        "AdamWScheduleFree", {"lr": 1e-2, "warmup_steps": 4}, "switch large", shapes=LARGE_SHAPES, prepare="train"
    ),
    OptimCase(
        "AdamWScheduleFree",
        {"lr": 1e-2, "r": 1.0, "weight_lr_power": 1.0},
        "switch float64",
        {"betas": (0.5, 0.9)},
        np.float64,
        prepare="train",
    ),
]
NAMES = ["SGDScheduleFree", "AdamWScheduleFree"]


def _groups_match(pair: Pair) -> None:
    for gi, (ours, ref) in enumerate(zip(pair.ours.param_groups, pair.ref.param_groups)):
        for key in GROUP_SCALARS:
            assert ours[key] == ref[key], f"param_groups[{gi}][{key!r}]: {ours[key]!r} != reference {ref[key]!r}"
            assert type(ours[key]) is type(ref[key]), (gi, key, type(ours[key]), type(ref[key]))


def _step(pair: Pair, rng: np.random.Generator, t: int) -> None:
    pair.set_grads(random_grads(rng, t, pair.dtype, pair.shapes))
    pair.step()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_train_eval_switching_matches_the_reference(case: OptimCase) -> None:
    pair = make_pair(case)
    tol = case.tolerances
    rng = np.random.default_rng(5)
    t = 0
    for block in range(4):
        for _ in range(3 + block):  # a few steps in train mode
            _step(pair, rng, t)
            compare(pair, t, **tol)
            t += 1
        for switch in ("eval", "train"):
            getattr(pair.ours, switch)()
            getattr(pair.ref, switch)()
            compare(pair, t, **tol)  # x after eval(), y again after train()
            _groups_match(pair)
    pair.ours.eval()
    pair.ref.eval()
    compare(pair, t, **tol)
    # a parameter above the serial threshold took the parallel loops
    if case.shapes is LARGE_SHAPES:
        assert max(p.size for p in pair.params) > 16384


@pytest.mark.parametrize("case", [c for c in CASES if c.shapes is None and c.dtype == np.float32], ids=lambda c: c.id)
def test_switches_are_idempotent_as_in_the_reference(case: OptimCase) -> None:
    pair = make_pair(case)
    rng = np.random.default_rng(6)
    for t in range(5):
        _step(pair, rng, t)
    pair.ours.train()  # already in train mode: nothing moves
    pair.ref.train()
    before = [p.data.copy() for p in pair.params]
    compare(pair, 5, **case.tolerances)
    for _ in range(3):
        pair.ours.eval()
        pair.ref.eval()
        compare(pair, 5, **case.tolerances)
    x = [p.data.copy() for p in pair.params]
    assert any(not np.array_equal(a, b) for a, b in zip(before, x))  # eval() did move them, once
    for _ in range(3):
        pair.ours.train()
        pair.ref.train()
        compare(pair, 5, **case.tolerances)
    _groups_match(pair)


@pytest.mark.parametrize("name", NAMES)
def test_starts_in_eval_mode_and_refuses_a_step_there(name: str) -> None:
    case = next(c for c in CASES if c.name == name)
    bare = OptimCase(name, case.kwargs, "no prepare")  # both sides as constructed: eval mode
    pair = make_pair(bare)
    assert [g["train_mode"] for g in pair.ours.param_groups] == [g["train_mode"] for g in pair.ref.param_groups]
    assert not pair.ours.param_groups[0]["train_mode"]
    pair.set_grads(random_grads(np.random.default_rng(0), 0, pair.dtype, pair.shapes))
    with pytest.raises(Exception, match="Optimizer was not in train mode"):
        pair.ref.step()
    before = [p.data.copy() for p in pair.params]
    with pytest.raises(RuntimeError, match="not in train mode.*train\\(\\)"):
        pair.ours.step(lambda: pytest.fail("the closure ran before the mode was checked"))
    assert all(np.array_equal(a, p.data) for a, p in zip(before, pair.params))
    assert pair.ours.param_groups[0]["k"] == 0 and not pair.ours.state
    # switches without state move nothing, and only flip the modes
    pair.ours.eval()
    pair.ours.train()
    assert all(np.array_equal(a, p.data) for a, p in zip(before, pair.params))
    assert all(g["train_mode"] for g in pair.ours.param_groups)
    pair.ours.step()
    pair.ref.train()
    pair.ref.step()
    compare(pair, 0, **case.tolerances)
    _groups_match(pair)


@pytest.mark.parametrize("name", NAMES)
def test_only_the_first_groups_mode_gates_the_step_as_in_the_reference(name: str) -> None:
    case = next(c for c in CASES if c.name == name)
    pair = make_pair(case)
    for opt in (pair.ours, pair.ref):
        opt.param_groups[1]["train_mode"] = False
    rng = np.random.default_rng(7)
    for t in range(3):
        _step(pair, rng, t)
        compare(pair, t, **case.tolerances)
    pair.ours.train()  # the second group only: it was in "eval" mode
    pair.ref.train()
    compare(pair, 3, **case.tolerances)
    _groups_match(pair)


@pytest.mark.parametrize("case", [c for c in CASES if c.shapes is None], ids=lambda c: c.id)
def test_group_scalars_follow_the_reference_and_round_trip(case: OptimCase) -> None:
    pair = make_pair(case)
    rng = np.random.default_rng(8)
    for t in range(6):
        _step(pair, rng, t)
        _groups_match(pair)
    # a checkpoint taken in eval mode, as the reference recommends, resumes exactly
    pair.ours.eval()
    pair.ref.eval()
    sd = pair.ours.state_dict()
    ref_sd = pair.ref.state_dict()
    for g, rg in zip(sd["param_groups"], ref_sd["param_groups"]):
        assert {k: g[k] for k in GROUP_SCALARS} == {k: rg[k] for k in GROUP_SCALARS}
    blob = pickle.dumps(pair.ours)
    fresh = make_pair(OptimCase(case.name, case.kwargs, "fresh", case.group2, case.dtype))  # eval mode, no state
    for p, q in zip(fresh.params, pair.params):
        p.data[...] = q.data
    fresh.ours.load_state_dict(copy.deepcopy(sd))
    restored = pickle.loads(blob)
    restored_params = [p for g in restored.param_groups for p in g["params"]]
    assert [g["train_mode"] for g in fresh.ours.param_groups] == [False, False]
    for other in (fresh.ours, restored):
        for g, saved in zip(other.param_groups, sd["param_groups"]):
            assert {k: g[k] for k in GROUP_SCALARS} == {k: saved[k] for k in GROUP_SCALARS}
    for opt in (pair.ours, pair.ref, fresh.ours, restored):
        opt.train()
    grads = [random_grads(rng, t, pair.dtype, pair.shapes) for t in range(6, 10)]
    for t, gs in enumerate(grads, 6):
        pair.set_grads(gs)
        pair.step()
        for opt, params in ((fresh.ours, fresh.params), (restored, restored_params)):
            for p, g in zip(params, gs):
                p.grad = None if g is None else g.copy()
            opt.step()
        compare(pair, t, **case.tolerances)
        for params in (fresh.params, restored_params):
            for p, q in zip(params, pair.params):
                np.testing.assert_array_equal(p.data, q.data)
    for opt in (pair.ours, fresh.ours, restored):
        assert opt.param_groups[0]["k"] == 10


def test_validation_names_the_argument() -> None:
    p = [numopt.Parameter(np.ones(3, np.float32))]
    for kwargs, match in [
        ({"momentum": 1.0}, "momentum must be a finite number > 0.0 and < 1.0"),
        ({"momentum": 0.0}, "momentum must be"),
        ({"lr": -1.0}, "Invalid learning rate"),
        ({"warmup_steps": -1}, "warmup_steps must be"),
        ({"weight_lr_power": -2.0}, "weight_lr_power must be"),
    ]:
        with pytest.raises(ValueError, match=match):
            numopt.SGDScheduleFree(p, **kwargs)
    with pytest.raises(ValueError, match=r"betas\[0\] must be > 0"):
        numopt.AdamWScheduleFree(p, betas=(0.0, 0.9))
    with pytest.raises(ValueError, match="Invalid epsilon value"):
        numopt.AdamWScheduleFree(p, eps=-1.0)
    opt = numopt.AdamWScheduleFree(p)
    opt.train()
    opt.param_groups[0]["train_mode"] = "yes"  # an edit is validated at the next step
    p[0].grad = np.ones(3, np.float32)
    with pytest.raises(TypeError, match="train_mode must be True or False"):
        opt.step()


def test_scalar_helpers_match_the_plain_schedule() -> None:
    lr_max, weight_sum = -1.0, 0.0
    for k in range(12):
        out = schedule_scalars(0.1, k, 5, 0.5, 2.0, lr_max, weight_sum)
        assert sgd_schedulefree_scalars(0.1, k, 5, 0.5, 2.0, lr_max, weight_sum) == out
        assert adamw_schedulefree_scalars(0.1, 0.99, k, 5, 0.5, 2.0, lr_max, weight_sum) == (*out, 1 - 0.99 ** (k + 1))
        _, lr_max, weight_sum, _ = out
    assert schedule_scalars(0.0, 0, 0, 0.0, 2.0, -1.0, 0.0)[3] == 0.0  # lr 0: no weight yet, ckp1 0


def test_reference_is_not_imported_by_numopt() -> None:
    import subprocess
    import sys

    code = "import sys, numopt; numopt.SGDScheduleFree; print('schedulefree' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
