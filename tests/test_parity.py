"""Every row of OPTIM_DB, stepped side by side with its reference and compared at every step."""

from __future__ import annotations

import numpy as np
import pytest

import numopt

from .optim_db import OPTIM_DB, OptimCase
from .reference import compare_row, make_pair, random_grads

MAX_REL_ERR: dict[str, float] = {}


@pytest.mark.parametrize("case", OPTIM_DB, ids=lambda c: c.id)
def test_matches_torch_every_step(case: OptimCase) -> None:
    pair = make_pair(case)
    init = [p.data.copy() for p in pair.params]
    rng = np.random.default_rng(1)
    worst = 0.0
    for t in range(case.steps):
        pair.set_grads(random_grads(rng, t, pair.dtype, pair.shapes))
        pair.step()
        worst = max(worst, compare_row(pair, case, t, init))
    MAX_REL_ERR[case.id] = worst


@pytest.mark.parametrize("case", OPTIM_DB, ids=lambda c: c.id)
def test_state_dict_resume_is_exact(case: OptimCase) -> None:
    """Stopping half-way, loading the state into a new optimizer and going on equals not stopping."""
    rng = np.random.default_rng(2)
    steps = 20
    grads = [random_grads(rng, t, np.dtype(case.dtype), case.shapes) for t in range(steps)]

    def run(split: int | None) -> list[np.ndarray]:
        pair = make_pair(case)
        opt, params = pair.ours, pair.params
        for t in range(steps):
            if t == split:
                sd = opt.state_dict()
                values = [p.data.copy() for p in params]
                del pair, opt
                params = [numopt.Parameter(v) for v in values]
                opt = getattr(numopt, case.name)([{"params": params[:4]}, {"params": params[4:]}], **case.kwargs)
                opt.load_state_dict(sd)
            for p, g in zip(params, grads[t]):
                p.grad = None if g is None else g.copy()
            opt.step()
        return [p.data.copy() for p in params]

    straight = run(None)
    resumed = run(steps // 2)
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", OPTIM_DB, ids=lambda c: c.id)
def test_state_dict_layout_matches_torch(case: OptimCase) -> None:
    pair = make_pair(case)
    rng = np.random.default_rng(3)
    for t in range(6):
        pair.set_grads(random_grads(rng, t, pair.dtype, pair.shapes))
        pair.step()
    ours, ref = pair.ours.state_dict(), pair.ref.state_dict()
    assert [sorted(g) for g in ours["param_groups"]] == [sorted(g) for g in ref["param_groups"]]
    assert [g["params"] for g in ours["param_groups"]] == [g["params"] for g in ref["param_groups"]]
    assert {k: set(v) for k, v in ours["state"].items() if v} == {k: set(v) for k, v in ref["state"].items() if v}
    for k, entry in ours["state"].items():
        for name, v in entry.items():
            assert isinstance(v, (float, np.ndarray)), (k, name, type(v))
