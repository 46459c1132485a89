"""pickle (and copy.deepcopy) of Parameters, optimizers, schedulers and AveragedModel.

An unpickled optimizer steps on to the same numbers as the original, bit for bit,
with its parameters bound to its own flat buffers (as after construction).
"""

from __future__ import annotations

import copy
import pickle
import warnings
from typing import Any

import numpy as np
import pytest

import numopt
from numopt import lr_scheduler, swa_utils
from numopt.optimizer import registered

from .optim_db import OPTIM_DB, prepared
from .sched_db import SCHED_DB, group_values, make_optimizer, make_scheduler
from .sched_db import step as sched_step

SHAPES = [(3, 4), (5,)]
#: Muon takes 2-D parameters only
MUON_SHAPES = [(3, 4), (4, 5)]


def _row_kwargs() -> dict[str, tuple[dict[str, Any], dict[str, Any], type]]:
    """One OPTIM_DB row per class: the one with the most options (its kwargs, group-2 overrides, dtype)."""
    best: dict[str, Any] = {}
    for row in OPTIM_DB:
        if row.name not in best or len(row.kwargs) + len(row.group2) > len(best[row.name].kwargs) + len(
            best[row.name].group2
        ):
            best[row.name] = row
    return {name: (row.kwargs, row.group2, row.dtype) for name, row in best.items()}


ROWS = _row_kwargs()
#: the classes OPTIM_DB has no row for
EXTRA: dict[str, tuple[dict[str, Any], dict[str, Any], type]] = {
    "Adafactor": ({"lr": 0.05, "weight_decay": 0.1}, {"lr": 0.02}, np.float32),
    "LBFGS": ({"lr": 0.5, "max_iter": 4, "history_size": 3, "line_search_fn": "strong_wolfe"}, {}, np.float64),
    "Muon": ({"lr": 0.02, "weight_decay": 0.1}, {"lr": 0.01}, np.float32),
    "SparseAdam": ({"lr": 0.05}, {"lr": 0.02}, np.float32),
}
NAMES = sorted({c.__name__ for c in registered()})


def _config(name: str) -> tuple[dict[str, Any], dict[str, Any], type]:
    return ROWS[name] if name in ROWS else EXTRA[name]


def _shapes(name: str) -> list[tuple[int, ...]]:
    return MUON_SHAPES if name == "Muon" else SHAPES


def make_opt(name: str, seed: int = 0) -> tuple[numopt.Optimizer, list[numopt.Parameter]]:
    kwargs, group2, dtype = _config(name)
    rng = np.random.default_rng(seed)
    params = [numopt.Parameter(rng.standard_normal(s).astype(dtype), name=f"p{i}") for i, s in enumerate(_shapes(name))]
    groups = [{"params": [params[0]]}, {"params": [params[1]], **group2}]
    return prepared(name, getattr(numopt, name)(groups, **kwargs)), params


def grads_for(name: str, params: list[numopt.Parameter], step: int) -> list[Any]:
    rng = np.random.default_rng(1000 + step)
    out: list[Any] = []
    for p in params:
        g = rng.standard_normal(p.shape).astype(p.dtype)
        if name == "SparseAdam":
            rows = np.array([0, p.shape[0] - 1, 0])
            out.append(numopt.SparseGrad(rows, g[rows]))
        else:
            out.append(g)
    return out


def do_step(name: str, opt: numopt.Optimizer, step: int) -> None:
    params = [p for g in opt.param_groups for p in g["params"]]
    if name == "LBFGS":
        coef = [np.linspace(0.5, 2.0, p.size, dtype=p.dtype).reshape(p.shape) for p in params]
        shift = grads_for(name, params, step)

        def closure() -> float:
            loss = 0.0
            for p, c, b in zip(params, coef, shift):
                loss += float(np.sum(0.5 * c * p.data**2 + b * p.data))
                p.grad = c * p.data + b
            return loss

        opt.step(closure)
        return
    for p, g in zip(params, grads_for(name, params, step)):
        p.grad = g
    opt.step()


def _bits(v: Any) -> Any:
    """A value as comparable bytes (arrays bit for bit, lists element-wise)."""
    if isinstance(v, np.ndarray) or isinstance(v, np.generic):
        a = np.asarray(v)
        return (a.dtype.str, a.shape, a.tobytes())
    if isinstance(v, (list, tuple)):
        return [_bits(x) for x in v]
    if isinstance(v, float):
        return np.float64(v).tobytes()
    return v


def _grad_bits(p: numopt.Parameter) -> Any:
    """The gradient's bytes, and whether it is the flat buffer's view (or a pending array)."""
    g = p.grad
    if isinstance(g, numopt.SparseGrad):
        return ("sparse", _bits(g.indices), _bits(g.values))
    bound = p._flat is not None and g is p._flat.grad_view(p._index)
    return (bound, _bits(g) if g is not None else None)


def assert_same(a: numopt.Optimizer, b: numopt.Optimizer) -> None:
    pa = [p for g in a.param_groups for p in g["params"]]
    pb = [p for g in b.param_groups for p in g["params"]]
    assert len(pa) == len(pb)
    for i, (p, q) in enumerate(zip(pa, pb)):
        assert _bits(p.data) == _bits(q.data), f"param {i} differs"
        assert _grad_bits(p) == _grad_bits(q), f"grad of param {i} differs"
        sp, sq = a.state.get(p, {}), b.state.get(q, {})
        assert list(sp) == list(sq), f"state keys of param {i} differ"
        for k in sp:
            assert _bits(sp[k]) == _bits(sq[k]), f"state[{k!r}] of param {i} differs"
    for ga, gb in zip(a.param_groups, b.param_groups):
        assert {k: v for k, v in ga.items() if k != "params"} == {k: v for k, v in gb.items() if k != "params"}


def assert_bound(opt: numopt.Optimizer, other: numopt.Optimizer | None = None) -> None:
    """Every parameter of ``opt`` (and its state) views ``opt``'s own flat buffers, and none of ``other``'s."""
    own = [f for flats in opt._flats for f in flats]
    foreign = [f for flats in other._flats for f in flats] if other is not None else []
    for g, flats in zip(opt.param_groups, opt._flats):
        for p in g["params"]:
            flat = p._flat
            assert flat is not None and any(flat is f for f in flats)
            assert flat.owner is opt
            assert flat.params[p._index] is p
            assert np.shares_memory(p.data, flat.data)
            if isinstance(p.grad, np.ndarray) and np.shares_memory(p.grad, flat.grad):
                assert p.grad is flat.grad_view(p._index)
            for k, v in opt.state.get(p, {}).items():
                if k == "step" and isinstance(v, np.ndarray):
                    assert np.shares_memory(v, flat.steps)
                elif k in flat.state and isinstance(v, np.ndarray):
                    assert np.shares_memory(v, flat.state[k]), k
                elif k in flat.scalars:
                    assert np.shares_memory(v, flat.scalars[k]), k
            for f in foreign:
                assert not np.shares_memory(p.data, f.data)
    assert all(any(f is flat for flat in own) for f in own)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_optimizer_round_trip_steps_on_bit_for_bit(name: str, how: str) -> None:
    opt, _ = make_opt(name)
    for t in range(3):
        do_step(name, opt, t)
    data = pickle.dumps(opt)
    assert b"numba" not in data  # kernels stay on the classes, never pickled by value
    twin = pickle.loads(data) if how == "pickle" else copy.deepcopy(opt)
    assert type(twin) is type(opt)
    assert_same(opt, twin)
    assert_bound(twin, opt)
    assert_bound(opt, twin)
    for t in range(3, 6):
        do_step(name, opt, t)
        do_step(name, twin, t)
        assert_same(opt, twin)
    assert_bound(twin, opt)
    # independent: writing to the copy leaves the original alone
    before = [p.data.copy() for p in opt.parameters()]
    for q in twin.parameters():
        q.data[...] = 7
    assert all(np.array_equal(p.data, b) for p, b in zip(opt.parameters(), before))
    # the copy's state dict loads into the original's kind of optimizer like any other
    fresh, _ = make_opt(name, seed=5)
    fresh.load_state_dict(twin.state_dict())


def test_unpickled_optimizer_takes_new_groups_and_hooks() -> None:
    opt, _ = make_opt("Adam")
    opt.register_step_post_hook(_count_hook)
    do_step("Adam", opt, 0)
    twin = pickle.loads(pickle.dumps(opt))
    assert twin.calls == 1 and len(twin._step_post_hooks) == 1
    twin.register_step_post_hook(_count_hook)  # a new handle id: the unpickled one is kept
    assert len(twin._step_post_hooks) == 2
    do_step("Adam", twin, 1)
    assert twin.calls == 3
    extra = numopt.Parameter(np.ones(4, np.float32))
    twin.add_param_group({"params": [extra]})
    extra.grad = np.ones(4, np.float32)
    twin.step()
    assert extra._flat.owner is twin and not np.array_equal(extra.data, np.ones(4, np.float32))
    # the unpickled parameters belong to the copy only: the original can be dropped, the copy goes on
    del opt
    do_step("Adam", twin, 2)


def test_unpickled_optimizer_notices_hparam_edits() -> None:
    opt, _ = make_opt("SGD")
    do_step("SGD", opt, 0)
    twin = pickle.loads(pickle.dumps(opt))
    twin.param_groups[0]["lr"] = float("nan")
    with pytest.raises(ValueError, match="param_groups\\[0\\]"):
        twin.step()


def _count_hook(opt: numopt.Optimizer, args: Any, kwargs: Any) -> None:
    opt.calls = getattr(opt, "calls", 0) + 1


def test_lambda_hook_fails_with_pickles_own_error() -> None:
    opt, _ = make_opt("SGD")
    opt.register_step_pre_hook(lambda *a: None)
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError), match="lambda|local"):
        pickle.dumps(opt)


# -- Parameter ----------------------------------------------------------------------------------------
def test_parameter_unbound_round_trip() -> None:
    p = numopt.Parameter(np.arange(6, dtype=np.float64).reshape(2, 3), name="w")
    p.grad = np.full((2, 3), 0.5)
    q = pickle.loads(pickle.dumps(p))
    assert q.name == "w" and q.dtype == np.float64 and q.shape == (2, 3)
    assert np.array_equal(q.data, p.data) and np.array_equal(q.grad, p.grad)
    assert q._flat is None and q.data.flags.writeable and q.data.flags.c_contiguous
    assert not np.shares_memory(q.data, p.data)
    r = pickle.loads(pickle.dumps(numopt.Parameter((4,))))
    assert r.grad is None and r.dtype == np.float32 and not r.data.any()
    # one whose optimizer is gone (it still remembers the buffer, weakly)
    orphan = numopt.Parameter(np.ones(3, np.float32))
    opt = numopt.SGD([orphan], lr=0.5)
    orphan.grad = np.ones(3, np.float32)
    opt.step()
    del opt
    o2 = pickle.loads(pickle.dumps(orphan))
    assert o2._flat is None and np.array_equal(o2.data, np.full(3, 0.5, np.float32))


def test_parameter_bound_alone_unpickles_unbound() -> None:
    opt, params = make_opt("Adam")
    do_step("Adam", opt, 0)
    p = params[0]
    q = pickle.loads(pickle.dumps(p))
    assert q._flat is None and q.name == p.name
    assert np.array_equal(q.data, p.data) and np.array_equal(q.grad, p.grad)
    assert not np.shares_memory(q.data, p.data)
    numopt.SGD([q], lr=0.1)  # free to join another optimizer: the original's buffer is not its own
    sparse = numopt.Parameter(np.zeros((3, 2), np.float32))
    sparse.grad = numopt.SparseGrad([0, 2], np.ones((2, 2), np.float32))
    s2 = pickle.loads(pickle.dumps(sparse))
    assert isinstance(s2.grad, numopt.SparseGrad) and s2.grad.indices.tolist() == [0, 2]


def test_parameters_pickled_with_their_optimizer_are_its_own() -> None:
    opt, params = make_opt("AdamW")
    do_step("AdamW", opt, 0)
    params2, opt2 = pickle.loads(pickle.dumps((params, opt)))
    assert [id(p) for p in opt2.parameters()] == [id(p) for p in params2]
    assert_bound(opt2, opt)


# -- schedulers ----------------------------------------------------------------------------------------
def _optimizer_of(sched: Any) -> list[Any]:
    out = [getattr(sched, "optimizer", None)]
    for sub in getattr(sched, "_schedulers", ()):
        out += _optimizer_of(sub)
    return [o for o in out if o is not None]


@pytest.mark.parametrize("case", SCHED_DB, ids=[c.id for c in SCHED_DB])
def test_scheduler_round_trip_with_optimizer(case: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = make_optimizer(case.optim, "numopt")
        sched = make_scheduler(case, opt, "numopt")
        for t in range(5):
            sched_step(case, opt, sched, t)
        opt2, sched2 = pickle.loads(pickle.dumps((opt, sched)))
        assert type(sched2) is type(sched)
        assert all(o is opt2 for o in _optimizer_of(sched2))
        assert sched2.get_last_lr() == sched.get_last_lr()
        for t in range(5, 25):
            sched_step(case, opt, sched, t)
            sched_step(case, opt2, sched2, t)
            assert sched2.get_last_lr() == sched.get_last_lr()
            assert group_values(opt2) == group_values(opt)


def test_scheduler_steps_its_unpickled_optimizer() -> None:
    opt, _ = make_opt("SGD")
    sched = lr_scheduler.OneCycleLR(opt, max_lr=[0.1, 0.05], total_steps=20)
    for t in range(3):
        do_step("SGD", opt, t)
        sched.step()
    opt2, sched2 = pickle.loads(pickle.dumps((opt, sched)))
    assert sched2.optimizer is opt2
    for t in range(3, 10):
        for o, s in ((opt, sched), (opt2, sched2)):
            do_step("SGD", o, t)
            s.step()
        assert_same(opt, opt2)
    assert_bound(opt2, opt)


def test_cyclic_exp_range_round_trip() -> None:
    opt, _ = make_opt("SGD")
    sched = lr_scheduler.CyclicLR(opt, 0.01, 0.1, step_size_up=3, mode="exp_range", gamma=0.9)
    for t in range(4):
        do_step("SGD", opt, t)
        sched.step()
    opt2, sched2 = pickle.loads(pickle.dumps((opt, sched)))
    for t in range(4, 12):
        for o, s in ((opt, sched), (opt2, sched2)):
            do_step("SGD", o, t)
            s.step()
        assert sched2.get_last_lr() == sched.get_last_lr()
    assert sched2.state_dict() == sched.state_dict()


# -- AveragedModel ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("multi", [False, True], ids=["default", "multi_avg_fn"])
def test_averaged_model_round_trip(multi: bool) -> None:
    opt, _ = make_opt("SGD")
    kwargs = {"multi_avg_fn": _swa_multi} if multi else {}
    avg = swa_utils.AveragedModel(opt, **kwargs)
    for t in range(3):
        do_step("SGD", opt, t)
        avg.update_parameters(opt)
    opt2, avg2 = pickle.loads(pickle.dumps((opt, avg)))
    assert avg2.n_averaged == avg.n_averaged == 3
    for q, v in zip(avg2.module, avg2._views):
        assert q.data is v and q._flat is None
        assert any(np.shares_memory(q.data, b) for b in avg2._buffers.values())
        assert not any(np.shares_memory(q.data, b) for b in avg._buffers.values())
    assert_bound(opt2, opt)
    for t in range(3, 6):
        for o, a in ((opt, avg), (opt2, avg2)):
            do_step("SGD", o, t)
            a.update_parameters(o)
        assert [_bits(q.data) for q in avg2.module] == [_bits(q.data) for q in avg.module]
    alone = pickle.loads(pickle.dumps(avg))
    assert [_bits(q.data) for q in alone.module] == [_bits(q.data) for q in avg.module]
    alone.update_parameters([numopt.Parameter(np.ones(s, np.float32)) for s in SHAPES])
    assert alone.n_averaged == 7


def _swa_multi(averaged: list[np.ndarray], current: list[np.ndarray], n: Any) -> None:
    """A picklable multi_avg_fn (the factories' closures are not, as in torch)."""
    swa_utils.get_swa_multi_avg_fn()(averaged, current, n)
