"""Editing a group's ``params`` list is honoured at the next step, as torch honours it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import numopt


def _pair(values: list[np.ndarray], **kwargs):
    ours = [numopt.Parameter(v.copy()) for v in values]
    ref = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    return ours, numopt.Adam(ours[:1], **kwargs), ref, torch.optim.Adam(ref[:1], **kwargs)


def _step(ours, opt, ref, ref_opt, rng, which) -> None:
    for i in which:
        g = rng.standard_normal(ours[i].shape).astype(np.float32)
        ours[i].grad = g
        ref[i].grad = torch.from_numpy(g.copy())
    opt.step()
    ref_opt.step()


def _same(ours, opt, ref, ref_opt) -> None:
    for p, t in zip(ours, ref):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-6, atol=1e-7)
    members = [[id(p) for p in g["params"]] for g in opt.param_groups]
    index = [id(r) for r in ref]
    assert members == [[id(ours[index.index(id(t))]) for t in g["params"]] for g in ref_opt.param_groups]
    for group in ref_opt.param_groups:  # torch's state_dict() breaks once a parameter left its group
        for t in group["params"]:
            p = ours[[id(r) for r in ref].index(id(t))]
            assert sorted(opt.state[p]) == sorted(ref_opt.state[t])
            for name, v in ref_opt.state[t].items():
                np.testing.assert_allclose(np.asarray(opt.state[p][name]), v.numpy(), rtol=1e-6, atol=1e-7)
    opt.state_dict()  # numopt's lists the parameters of its groups, whatever left


def test_append_remove_reorder_replace_and_clear_match_torch() -> None:
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (5,), (2, 2))]
    ours, opt, ref, ref_opt = _pair(values, lr=0.05)
    _step(ours, opt, ref, ref_opt, rng, [0])
    for g, tg in zip(opt.param_groups, ref_opt.param_groups):  # append
        g["params"].append(ours[1])
        tg["params"].append(ref[1])
    _step(ours, opt, ref, ref_opt, rng, [0, 1])
    _same(ours, opt, ref, ref_opt)
    assert ours[1]._flat is ours[0]._flat  # packed together, one pass
    opt.param_groups[0]["params"] = [ours[1], ours[0], ours[2]]  # replace: reorder and add
    ref_opt.param_groups[0]["params"] = [ref[1], ref[0], ref[2]]
    _step(ours, opt, ref, ref_opt, rng, [0, 1, 2])
    _same(ours, opt, ref, ref_opt)
    del opt.param_groups[0]["params"][1]  # remove ours[0]: it is no longer updated
    del ref_opt.param_groups[0]["params"][1]
    frozen = ours[0].data.copy()
    _step(ours, opt, ref, ref_opt, rng, [0, 1, 2])
    np.testing.assert_array_equal(ours[0].data, frozen)
    assert ours[0]._flat is None
    _same(ours, opt, ref, ref_opt)
    opt.param_groups[0]["params"].clear()  # clear: nothing is updated
    ref_opt.param_groups[0]["params"].clear()
    before = [p.data.copy() for p in ours]
    _step(ours, opt, ref, ref_opt, rng, [0, 1, 2])
    for p, b in zip(ours, before):
        np.testing.assert_array_equal(p.data, b)
    opt.param_groups[0]["params"].append(ours[1])  # a parameter that comes back takes up its state
    ref_opt.param_groups[0]["params"].append(ref[1])
    _step(ours, opt, ref, ref_opt, rng, [1])
    _same(ours, opt, ref, ref_opt)


def test_an_edit_that_cannot_be_packed_raises_naming_the_group_and_changes_nothing() -> None:
    a, b = numopt.Parameter(np.ones(3, np.float32)), numopt.Parameter(np.ones(2, np.float32))
    opt = numopt.SGD([{"params": [a]}, {"params": [b]}], lr=0.1)
    opt.param_groups[1]["params"].append(a)  # a is in group 0 already
    a.grad = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\] was edited.*more than one parameter group"):
        opt.step()
    np.testing.assert_array_equal(a.data, 1.0)  # nothing moved
    assert a._flat is opt._flats[0][0] and opt.param_groups[1]["params"] == [b, a]
    opt.param_groups[1]["params"].pop()  # fixed: steps again
    opt.step()
    np.testing.assert_allclose(a.data, 0.9)


def test_optimizers_that_cannot_repack_say_what_to_do() -> None:
    x = numopt.Parameter(np.ones(2))
    opt = numopt.LBFGS([x])
    opt.param_groups[0]["params"].append(numopt.Parameter(np.ones(2)))

    def closure() -> float:
        x.grad = 2 * x.data
        return float((x.data**2).sum())

    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\] was edited.*build a new optimizer"):
        opt.step(closure)
