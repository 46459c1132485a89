"""numopt.swa_utils.AveragedModel against torch.optim.swa_utils.AveragedModel (SWALR is in SCHED_DB)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch.optim import swa_utils as tswa

import numopt
from numopt import swa_utils as swa
from numopt.kernels import averaging

torch.set_num_threads(1)

MAX_REL_ERR: dict[str, float] = {}
#: (rtol, atol): values are ~3 in size, so an average near zero carries absolute rounding of ~ulp(3)
#: (torch's CPU lerp uses fused multiply-adds; numopt's kernels do not)
TOL = {np.dtype(np.float32): (1e-6, 1e-6), np.dtype(np.float64): (1e-12, 1e-13)}
#: parameters 0-2 in group 1 and 3-4 in group 2 of one SGD; 5 is loose
SHAPES: list[tuple[int, ...]] = [(5, 3), (7,), (), (2, 3, 4), (0, 2), (4, 4)]
UPDATES = 12


@pytest.fixture(scope="module", autouse=True)
def _report_worst_error(request: pytest.FixtureRequest) -> Any:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if MAX_REL_ERR and reporter is not None and capture is not None:
        name, worst = max(MAX_REL_ERR.items(), key=lambda kv: kv[1])
        with capture.global_and_fixture_disabled():
            reporter.write_line(
                f"\nAveragedModel vs torch: {len(MAX_REL_ERR)} runs, max relative error {worst:.3g} ({name})"
            )


def halfway_multi(averaged: list[np.ndarray], current: list[np.ndarray], n: Any) -> None:
    """A user multi_avg_fn (NumPy): move halfway, checking it is given per-parameter arrays."""
    assert [a.shape for a in averaged] == [c.shape for c in current]
    for a, c in zip(averaged, current):
        a += (c - a) * 0.5


def halfway_multi_torch(averaged: list[torch.Tensor], current: list[torch.Tensor], n: Any) -> None:
    for a, c in zip(averaged, current):
        a.add_((c - a) * 0.5)


def weighted_avg(averaged: Any, current: Any, n: Any) -> Any:
    """A user avg_fn, valid for NumPy arrays and tensors alike."""
    return averaged + (current - averaged) * 2 / (n + 2)


#: (description, numopt kwargs, torch kwargs)
VARIANTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("default mean", {}, {}),
    ("swa multi", {"multi_avg_fn": swa.get_swa_multi_avg_fn()}, {"multi_avg_fn": tswa.get_swa_multi_avg_fn()}),
    (
        "ema multi 0.9",
        {"multi_avg_fn": swa.get_ema_multi_avg_fn(0.9)},
        {"multi_avg_fn": tswa.get_ema_multi_avg_fn(0.9)},
    ),
    # weight 1 - decay = 0.7 >= 0.5: lerp's other branch
    (
        "ema multi 0.3",
        {"multi_avg_fn": swa.get_ema_multi_avg_fn(0.3)},
        {"multi_avg_fn": tswa.get_ema_multi_avg_fn(0.3)},
    ),
    ("ema avg_fn", {"avg_fn": swa.get_ema_avg_fn(0.95)}, {"avg_fn": tswa.get_ema_avg_fn(0.95)}),
    ("swa avg_fn", {"avg_fn": swa.get_swa_avg_fn()}, {"avg_fn": tswa.get_swa_avg_fn()}),
    ("user multi_avg_fn", {"multi_avg_fn": halfway_multi}, {"multi_avg_fn": halfway_multi_torch}),
    ("user avg_fn", {"avg_fn": weighted_avg}, {"avg_fn": weighted_avg}),
]


class Models:
    """Equal parameters on both sides: numopt's inside an SGD (two groups) plus one loose, torch's in a module."""

    def __init__(self, dtype: Any, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.dtype = np.dtype(dtype)
        init = [self.values(s) for s in SHAPES]
        self.params = [numopt.Parameter(v.copy()) for v in init]
        self.opt = numopt.SGD([{"params": self.params[:3]}, {"params": self.params[3:5]}], lr=0.1)
        self.module = torch.nn.ParameterList([torch.nn.Parameter(torch.from_numpy(v.copy())) for v in init])

    def values(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.asarray(self.rng.standard_normal(shape) * 3.0, self.dtype)

    def move(self) -> None:
        """New values for every parameter, written through p.data (into the flat buffer) and into torch's."""
        with torch.no_grad():
            for p, tp in zip(self.params, self.module):
                v = self.values(p.shape)
                p.data[...] = v
                tp.copy_(torch.from_numpy(v))


def _compare(ours: swa.AveragedModel, ref: tswa.AveragedModel, dtype: np.dtype, where: str) -> float:
    rtol, atol = TOL[dtype]
    worst = 0.0
    assert ours.n_averaged == int(ref.n_averaged), where
    for i, (q, tq) in enumerate(zip(ours.module, ref.module.parameters())):
        r = tq.detach().numpy()
        assert q.data.dtype == r.dtype
        np.testing.assert_allclose(q.data, r, rtol=rtol, atol=atol, err_msg=f"{where}: param {i}")
        if r.size:
            worst = max(
                worst, float(np.max(np.abs(q.data.astype(np.float64) - r) / np.maximum(np.abs(r), atol / rtol)))
            )
    return worst


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("desc", "kwargs", "tkwargs"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_averaged_model_matches_torch(desc: str, kwargs: dict, tkwargs: dict, dtype: Any) -> None:
    m = Models(dtype)
    ours = swa.AveragedModel(m.params, **kwargs)
    ref = tswa.AveragedModel(m.module, **tkwargs)
    worst = _compare(ours, ref, m.dtype, "construction")
    for t in range(UPDATES):
        m.move()
        ours.update_parameters([*m.opt.parameters(), m.params[5]])  # the same parameters, in the same order
        ref.update_parameters(m.module)
        worst = max(worst, _compare(ours, ref, m.dtype, f"update {t}"))
    MAX_REL_ERR[f"{desc}-{m.dtype.name}"] = worst


def test_one_pass_per_optimizer_buffer() -> None:
    """Parameters consecutive in one flat buffer are averaged as one contiguous range."""
    m = Models(np.float32)
    avg = swa.AveragedModel(m.params)
    key = (np.dtype(np.float32), False)  # (dtype, in GPU memory)
    pairs = avg._segments(m.params)[key]
    # group 1 (params 0-2), group 2 (params 3-4), the loose parameter: three ranges
    assert [a.size for a, _ in pairs] == [15 + 7 + 1, 24, 16]
    assert pairs[0][1].base is not None and np.shares_memory(pairs[0][1], m.params[0].data)
    assert len(avg._buffers) == 1 and avg._buffers[key].size == sum(p.size for p in m.params)
    for q in avg.module:
        assert np.shares_memory(q.data, avg._buffers[key]) or q.size == 0


def test_an_optimizer_is_accepted_and_n_averaged_counts() -> None:
    m = Models(np.float64)
    avg = swa.AveragedModel(m.opt)
    assert avg.n_averaged == 0 and len(avg.module) == 5
    np.testing.assert_array_equal(avg.module[0].data, m.params[0].data)  # starts as a copy
    m.move()
    avg.update_parameters(m.opt)
    assert avg.n_averaged == 1
    np.testing.assert_array_equal(avg.module[0].data, m.params[0].data)  # the first update copies
    first = [p.data.copy() for p in m.params[:5]]
    m.move()
    avg.update_parameters(m.opt)
    for q, a, p in zip(avg.module, first, m.params):
        np.testing.assert_allclose(q.data, (a + p.data) / 2, rtol=1e-15)


def test_state_dict_round_trip_continues_exactly() -> None:
    m = Models(np.float32)
    ema = swa.get_ema_multi_avg_fn(0.8)
    straight = swa.AveragedModel(m.params, multi_avg_fn=ema)
    for _ in range(3):
        m.move()
        straight.update_parameters(m.params)
    sd = straight.state_dict()
    resumed = swa.AveragedModel(m.params, multi_avg_fn=ema)
    resumed.load_state_dict(sd)
    for _ in range(3):
        m.move()
        straight.update_parameters(m.params)
        resumed.update_parameters(m.params)
    assert resumed.n_averaged == straight.n_averaged == 6
    for a, b in zip(resumed.module, straight.module):
        np.testing.assert_array_equal(a.data, b.data)
    with pytest.raises(ValueError, match="shape"):
        resumed.load_state_dict({"n_averaged": 1, "params": [np.zeros(1)] * len(m.params)})


def test_mixed_dtypes_use_one_buffer_each() -> None:
    a = numopt.Parameter(np.ones(3, np.float32))
    b = numopt.Parameter(np.ones(2, np.float64))
    opt = numopt.SGD([a, b], lr=0.1)
    avg = swa.AveragedModel(opt)
    assert {dt.name for dt, _ in avg._buffers} == {"float32", "float64"}
    avg.update_parameters(opt)
    a.data[...] = 3.0
    b.data[...] = 5.0
    avg.update_parameters(opt)
    np.testing.assert_array_equal(avg.module[0].data, np.full(3, 2.0, np.float32))
    np.testing.assert_array_equal(avg.module[1].data, np.full(2, 3.0))


def test_user_rebinding_is_adopted_and_packing_is_refused() -> None:
    m = Models(np.float64)
    avg = swa.AveragedModel(m.params)
    avg.update_parameters(m.params)
    avg.module[5].data = np.zeros((4, 4))  # a loose Parameter: rebinds to a new array
    m.move()
    avg.update_parameters(m.params)
    np.testing.assert_allclose(avg.module[5].data, m.params[5].data / 2, rtol=1e-15)
    assert np.shares_memory(avg.module[5].data, avg._buffers[(np.dtype(np.float64), False)])
    opt = numopt.SGD([avg.module[0]], lr=0.1)  # packs it into that optimizer's buffer
    with pytest.raises(RuntimeError, match="packed by an optimizer"):
        avg.update_parameters(m.params)
    del opt


def test_errors() -> None:
    m = Models(np.float32)
    with pytest.raises(AssertionError, match="Only one of avg_fn and multi_avg_fn"):
        swa.AveragedModel(m.params, avg_fn=swa.get_swa_avg_fn(), multi_avg_fn=swa.get_swa_multi_avg_fn())
    with pytest.raises(ValueError, match="device"):
        swa.AveragedModel(m.params, device="cuda")
    avg = swa.AveragedModel(m.params)
    with pytest.raises(ValueError, match="do not match"):
        avg.update_parameters(m.params[:3])
    with pytest.raises(TypeError, match="numopt.Parameter"):
        swa.AveragedModel([np.zeros(3)])
    for fn in (swa.get_ema_multi_avg_fn, swa.get_ema_avg_fn, tswa.get_ema_multi_avg_fn):
        with pytest.raises(ValueError, match="Invalid decay value"):
            fn(1.5)


def test_multi_avg_fns_work_on_plain_arrays() -> None:
    """The helper functions are usable on their own, also on arrays the kernels cannot take."""
    a = [np.zeros(4, np.float32), np.zeros((3, 2), np.float64)[:, 0]]  # the second one is strided
    c = [np.ones(4, np.float32), np.ones(3)]
    swa.get_ema_multi_avg_fn(0.75)(a, c, None)
    np.testing.assert_allclose(a[0], 0.25)
    np.testing.assert_allclose(a[1], 0.25)
    swa.get_swa_multi_avg_fn()(a, c, 2)
    np.testing.assert_allclose(a[0], 0.5, rtol=1e-7)


def test_kernels_compile_once_per_dtype() -> None:
    for dtype in (np.float32, np.float64):
        m = Models(dtype)
        for kwargs in (
            {},
            {"multi_avg_fn": swa.get_ema_multi_avg_fn(0.2)},
            {"multi_avg_fn": swa.get_swa_multi_avg_fn()},
        ):
            avg = swa.AveragedModel(m.params, **kwargs)
            for _ in range(3):
                m.move()
                avg.update_parameters(m.params)
    for kernel in (averaging.lerp_, averaging.running_mean_):
        sigs = kernel.signatures
        assert len(sigs) == len({sig[0].dtype for sig in sigs}) == 2, sigs
        for sig in sigs:
            assert all(t == sig[0].dtype or t == sig[0] for t in sig[1:]), sig


# -- the EMA updated inside the optimizer's step (in_step=True) -------------------------------------------
IN_STEP_CASES = [
    ("AdamW", {"lr": 1e-2}),  # one generated loop per run: the EMA is folded in by that loop
    ("SGD", {"lr": 1e-2, "momentum": 0.9}),
    ("Lion", {"lr": 1e-3}),
    ("Lamb", {"lr": 1e-2}),  # steps of several passes: folded in after the step
    ("NAdam", {"lr": 1e-2}),
    ("Adam", {"lr": 1e-2, "state_dtype": "int8"}),
]


def _in_step_pair(name: str, kwargs: dict) -> tuple[list, Any, list, Any]:
    def make() -> tuple[list, Any]:
        rng = np.random.default_rng(0)
        params = [numopt.Parameter(rng.standard_normal(s).astype(np.float32)) for s in [(300,), (70, 80), (5,)]]
        return params, getattr(numopt, name)(params, **kwargs)

    return (*make(), *make())


@pytest.mark.parametrize(
    "name, kwargs", IN_STEP_CASES, ids=[c[0] + "-" + "-".join(map(str, c[1])) for c in IN_STEP_CASES]
)
def test_in_step_ema_matches_update_parameters_after_each_step(name: str, kwargs: dict) -> None:
    fused_params, fused_opt, params, opt = _in_step_pair(name, kwargs)
    fused = swa.AveragedModel(fused_opt, multi_avg_fn=swa.get_ema_multi_avg_fn(0.9), in_step=True)
    ema = swa.AveragedModel(opt, multi_avg_fn=swa.get_ema_multi_avg_fn(0.9))
    rng = np.random.default_rng(1)
    for t in range(6):
        for k, (p, q) in enumerate(zip(fused_params, params)):
            if t == 3 and k == 1:  # a parameter without a gradient: not stepped, its average still moves
                p.grad = q.grad = None
                continue
            p.grad = rng.standard_normal(p.shape).astype(np.float32)
            q.grad = p.grad.copy()
        fused_opt.step()
        opt.step()
        ema.update_parameters(opt)
        assert fused.n_averaged == ema.n_averaged == t + 1
        for a, b in zip(fused.module, ema.module):
            np.testing.assert_array_equal(a.data, b.data, err_msg=f"step {t}")
        for p, q in zip(fused_params, params):
            np.testing.assert_array_equal(p.data, q.data)


def test_in_step_ema_is_folded_in_by_the_step_loop(monkeypatch) -> None:
    params, opt, _, _ = _in_step_pair("AdamW", {"lr": 1e-2})
    ema = swa.AveragedModel(opt, multi_avg_fn=swa.get_ema_multi_avg_fn(0.9), in_step=True)
    passes: list[int] = []
    real = swa._lerp_all
    monkeypatch.setattr(swa, "_lerp_all", lambda a, c, w: (passes.append(sum(x.size for x in a)), real(a, c, w)))
    for p in params:
        p.grad = np.ones(p.shape, np.float32)
    opt.step()  # the first update copies
    opt.step()
    assert passes == []  # every parameter stepped: no separate pass
    params[1].grad = None
    opt.step()
    assert passes == [params[1].size]  # the parameter without a gradient, after the step
    assert ema.n_averaged == 3


def test_in_step_ema_refusals_and_skipped_steps() -> None:
    params, opt, _, _ = _in_step_pair("SGD", {"lr": 0.1})
    ema = swa.AveragedModel(opt, multi_avg_fn=swa.get_ema_multi_avg_fn(0.5), in_step=True)
    with pytest.raises(RuntimeError, match="updated inside its optimizer's step"):
        ema.update_parameters(opt)
    with pytest.raises(ValueError, match="already update an AveragedModel"):
        swa.AveragedModel(opt, multi_avg_fn=swa.get_ema_multi_avg_fn(0.5), in_step=True)
    with pytest.raises(ValueError, match="get_ema_multi_avg_fn"):
        swa.AveragedModel(opt, in_step=True)  # the SWA mean is not an EMA
    with pytest.raises(TypeError, match="needs the optimizer"):
        swa.AveragedModel(params, multi_avg_fn=swa.get_ema_multi_avg_fn(0.5), in_step=True)
    lbfgs = numopt.LBFGS([numopt.Parameter(np.zeros(3, np.float32))])
    with pytest.raises(ValueError, match="LBFGS.step"):
        swa.AveragedModel(lbfgs, multi_avg_fn=swa.get_ema_multi_avg_fn(0.5), in_step=True)
    # a step skipped for a non-finite gradient norm updates nothing, the average included
    for p in params:
        p.grad = np.ones(p.shape, np.float32)
    opt.step()
    before = [q.data.copy() for q in ema.module]
    params[0].grad[0] = np.nan
    opt.clip_grad_norm_(None, skip_nonfinite=True)
    opt.step()
    assert opt.last_step_skipped and ema.n_averaged == 1
    for q, b in zip(ema.module, before):
        np.testing.assert_array_equal(q.data, b)


def test_in_step_ema_travels_with_a_copy_of_the_optimizer() -> None:
    import copy

    params, opt, _, _ = _in_step_pair("AdamW", {"lr": 1e-2})
    ema = swa.AveragedModel(opt, multi_avg_fn=swa.get_ema_multi_avg_fn(0.9), in_step=True)
    for p in params:
        p.grad = np.ones(p.shape, np.float32)
    opt.step()
    opt.step()
    twin = copy.deepcopy(opt)
    twin_ema = twin._in_step_average
    assert twin_ema is not ema and twin_ema._owner is twin
    for o in (opt, twin):
        for p in o.parameters():
            p.grad = np.full(p.shape, 0.5, np.float32)
        o.step()
    for a, b in zip(ema.module, twin_ema.module):
        np.testing.assert_array_equal(a.data, b.data)
