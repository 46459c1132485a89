"""ADOPT and AdEMAMix beyond the parity table: schedules, the first step, the clip callable, group step counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_optimizer import ADOPT as RefADOPT
from pytorch_optimizer import AdEMAMix as RefAdEMAMix

import numopt
from numopt.functional import ademamix_scalars


@pytest.mark.parametrize(
    "betas, alpha, t_alpha_beta3",
    [
        ((0.9, 0.999, 0.9999), 5.0, None),
        ((0.9, 0.999, 0.9999), 5.0, 100.0),
        ((0.8, 0.95, 0.99), 2.0, 37),
        ((0.9, 0.999, 1.0), 8.0, 10.0),
        ((0.5, 0.9, 0.3), 1.5, 7.0),  # beta3 < beta1: the warm-up formula clamps at beta3
    ],
)
def test_ademamix_scalars_equal_the_reference_schedules_bit_for_bit(betas, alpha, t_alpha_beta3) -> None:
    beta1, beta2, beta3 = betas
    t = 0.0 if t_alpha_beta3 is None else float(t_alpha_beta3)
    for step in range(1, 400):
        bc1, bc2_sqrt, alpha_t, beta3_t = ademamix_scalars(beta1, beta2, beta3, alpha, t, float(step))
        assert bc1 == RefAdEMAMix.debias(beta1, step)
        assert bc2_sqrt == math.sqrt(RefAdEMAMix.debias(beta2, step))
        assert alpha_t == RefAdEMAMix.schedule_alpha(t_alpha_beta3, step, alpha)
        assert beta3_t == RefAdEMAMix.schedule_beta3(t_alpha_beta3, step, beta1, beta3)


def _pair(cls, ref_cls, n_groups: int = 1, **kwargs):
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(5).astype(np.float32) for _ in range(n_groups)]
    ours = [numopt.Parameter(a.copy()) for a in init]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    return (
        cls([{"params": [p]} for p in ours], **kwargs),
        ours,
        ref_cls([{"params": [p]} for p in theirs], **kwargs),
        theirs,
    )


def test_adopt_first_step_records_the_second_moment_only() -> None:
    w = numopt.Parameter(np.array([1.0, 2.0, -3.0], np.float32))
    opt = numopt.ADOPT([w], lr=0.1, weight_decay=0.5)  # coupled decay enters v, the parameters stay
    w.grad = np.array([0.5, -1.0, 0.0], np.float32)
    opt.step()
    np.testing.assert_array_equal(w.data, [1.0, 2.0, -3.0])
    np.testing.assert_array_equal(opt.state[w]["exp_avg"], 0.0)
    g = np.array([0.5, -1.0, 0.0], np.float32) + np.float32(0.5) * np.array([1.0, 2.0, -3.0], np.float32)
    np.testing.assert_array_equal(opt.state[w]["exp_avg_sq"], g * g)
    assert opt.param_groups[0]["step"] == 1


@pytest.mark.parametrize("clip", [lambda step: 0.25 * step, lambda step: 1e-3, None], ids=["linear", "tiny", "none"])
def test_adopt_clip_lambda_is_called_with_the_group_step_as_the_reference_calls_it(clip) -> None:
    seen: list[int] = []

    def recording(step):
        seen.append(step)
        return clip(step)

    fn = None if clip is None else recording
    ours, ps, ref, tps = _pair(numopt.ADOPT, RefADOPT, lr=0.05, clip_lambda=fn)
    rng = np.random.default_rng(1)
    for _ in range(8):
        g = rng.standard_normal(5).astype(np.float32)
        ps[0].grad, tps[0].grad = g.copy(), torch.from_numpy(g.copy())
        ours.step()
        ref.step()
        np.testing.assert_allclose(ps[0].data, tps[0].detach().numpy(), rtol=1e-6, atol=1e-7)
    if clip is not None:
        assert sorted(set(seen)) == list(range(2, 9))  # never on the first step, which does not clip
    assert ours.clip_lambda is fn


def test_a_group_without_gradients_keeps_its_step_count() -> None:
    # numopt's rule for every optimizer (Lion alike): a step in which a group has no gradient changes
    # nothing there, its count included. pytorch-optimizer counts that call for the group: documented.
    for cls, ref_cls in ((numopt.ADOPT, RefADOPT), (numopt.AdEMAMix, RefAdEMAMix)):
        ours, ps, ref, tps = _pair(cls, ref_cls, n_groups=2)
        g = np.ones(5, np.float32)
        ps[0].grad, tps[0].grad = g.copy(), torch.from_numpy(g.copy())
        ours.step()
        ref.step()
        assert [grp.get("step") for grp in ours.param_groups] == [1, None]
        assert [grp["step"] for grp in ref.param_groups] == [1, 1]


def test_ademamix_with_alpha_zero_and_beta3_unused_is_adam_without_amsgrad() -> None:
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal(50).astype(np.float64)
    a, b = numopt.Parameter(x0.copy()), numopt.Parameter(x0.copy())
    ours = numopt.AdEMAMix([a], lr=0.01, alpha=0.0, weight_decay=0.1, weight_decouple=True)
    adamw = numopt.AdamW([b], lr=0.01, weight_decay=0.1)
    for _ in range(20):
        g = rng.standard_normal(50)
        a.grad, b.grad = g.copy(), g.copy()
        ours.step()
        adamw.step()
    np.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(ours.state[a]["exp_avg"], adamw.state[b]["exp_avg"])
