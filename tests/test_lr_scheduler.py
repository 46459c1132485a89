"""Every row of SCHED_DB against torch.optim.lr_scheduler, at every step, straight and resumed."""

from __future__ import annotations

import copy
import importlib.util
import math
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import numopt
from numopt import lr_scheduler as S

from .sched_db import (
    SCHED_DB,
    STEPS,
    PlainOpt,
    SchedCase,
    group_values,
    make_optimizer,
    make_scheduler,
    scheduler_class,
    step,
)

RTOL = 1e-12
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lr_schedules.py"
MAX_REL_ERR: dict[str, float] = {}


def _rel(a: Any, b: Any) -> float:
    a, b = float(a), float(b)
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(b), 1e-300)


def _compare_groups(ours: list[dict[str, Any]], ref: list[dict[str, Any]], where: str) -> float:
    assert [sorted(g) for g in ours] == [sorted(g) for g in ref], f"{where}: group keys differ"
    worst = 0.0
    for gi, (og, tg) in enumerate(zip(ours, ref)):
        for key, tv in tg.items():
            ov = og[key]
            pairs = zip(ov, tv) if isinstance(tv, tuple) else [(ov, tv)]
            for a, b in pairs:
                err = _rel(a, b)
                assert err <= RTOL, f"{where}: group {gi} {key!r} {a!r} != torch {b!r} (rel {err:.3g})"
                worst = max(worst, err)
    return worst


def _compare_lrs(ours: list[float], ref: list[float], where: str) -> float:
    assert len(ours) == len(ref), where
    worst = 0.0
    for a, b in zip(ours, ref):
        assert isinstance(a, float), f"{where}: get_last_lr() entry {a!r} is not a float"
        err = _rel(a, b)
        assert err <= RTOL, f"{where}: lr {a!r} != torch {b!r} (rel {err:.3g})"
        worst = max(worst, err)
    return worst


def _torch_run(case: SchedCase) -> tuple[list[list[float]], list[list[dict[str, Any]]]]:
    opt = make_optimizer(case.optim, "torch")
    sched = make_scheduler(case, opt, "torch")
    lrs, groups = [list(sched.get_last_lr())], [copy.deepcopy(group_values(opt))]
    for t in range(STEPS):
        step(case, opt, sched, t)
        lrs.append(list(sched.get_last_lr()))
        groups.append(copy.deepcopy(group_values(opt)))
    return lrs, groups


@pytest.fixture(scope="module", autouse=True)
def _report_worst_error(request: pytest.FixtureRequest) -> Any:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if MAX_REL_ERR and reporter is not None and capture is not None:
        name, worst = max(MAX_REL_ERR.items(), key=lambda kv: kv[1])
        with capture.global_and_fixture_disabled():
            reporter.write_line(
                f"\nschedulers vs torch: {len(MAX_REL_ERR)} runs, max relative error {worst:.3g} ({name})"
            )


@pytest.fixture(scope="module")
def torch_runs() -> dict[str, tuple[list[list[float]], list[list[dict[str, Any]]]]]:
    return {}


def _reference(case: SchedCase, cache: dict) -> tuple[list[list[float]], list[list[dict[str, Any]]]]:
    if case.id not in cache:
        cache[case.id] = _torch_run(case)
    return cache[case.id]


def test_table_ids_are_unique() -> None:
    ids = [c.id for c in SCHED_DB]
    assert len(ids) == len(set(ids))
    covered = {c.name for c in SCHED_DB}
    assert set(S.__all__) - {"LRScheduler"} <= covered, "every scheduler class has a row"


@pytest.mark.parametrize("case", SCHED_DB, ids=lambda c: c.id)
def test_matches_torch_every_step(case: SchedCase, torch_runs: dict) -> None:
    ref_lrs, ref_groups = _reference(case, torch_runs)
    opt = make_optimizer(case.optim, "numopt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the right call order must not warn
        sched = make_scheduler(case, opt, "numopt")
        worst = _compare_lrs(sched.get_last_lr(), ref_lrs[0], "after construction")
        worst = max(worst, _compare_groups(group_values(opt), ref_groups[0], "after construction"))
        for t in range(STEPS):
            step(case, opt, sched, t)
            worst = max(worst, _compare_lrs(sched.get_last_lr(), ref_lrs[t + 1], f"step {t}"))
            worst = max(worst, _compare_groups(group_values(opt), ref_groups[t + 1], f"step {t}"))
    MAX_REL_ERR[case.id] = worst


@pytest.mark.parametrize("case", SCHED_DB, ids=lambda c: c.id)
def test_resume_from_state_dict_half_way(case: SchedCase, torch_runs: dict) -> None:
    """Stop at step 150, save both state dicts (through pickle), rebuild, load, go on: still torch's curve."""
    ref_lrs, ref_groups = _reference(case, torch_runs)
    half = STEPS // 2
    opt = make_optimizer(case.optim, "numopt")
    sched = make_scheduler(case, opt, "numopt")
    for t in range(half):
        step(case, opt, sched, t)
    saved = pickle.dumps((opt.state_dict(), sched.state_dict()))
    del opt, sched
    opt_sd, sched_sd = pickle.loads(saved)

    opt = make_optimizer(case.optim, "numopt")
    sched = make_scheduler(case, opt, "numopt")  # built first: construction rewrites group['lr']
    opt.load_state_dict(opt_sd)
    sched.load_state_dict(sched_sd)
    worst = _compare_lrs(sched.get_last_lr(), ref_lrs[half], "after loading")
    for t in range(half, STEPS):
        step(case, opt, sched, t)
        worst = max(worst, _compare_lrs(sched.get_last_lr(), ref_lrs[t + 1], f"resumed step {t}"))
        worst = max(worst, _compare_groups(group_values(opt), ref_groups[t + 1], f"resumed step {t}"))
    MAX_REL_ERR[case.id + "-resumed"] = worst


@pytest.mark.parametrize("case", SCHED_DB, ids=lambda c: c.id)
def test_state_dict_survives_numopt_save(case: SchedCase, tmp_path: Path, torch_runs: dict) -> None:
    """Scheduler and optimizer state dicts hold only what numopt.save stores (no code); resuming from the file works."""
    ref_lrs, _ = _reference(case, torch_runs)
    opt = make_optimizer(case.optim, "numopt")
    sched = make_scheduler(case, opt, "numopt")
    for t in range(100):
        step(case, opt, sched, t)
    numopt.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, tmp_path / "ckpt")
    loaded = numopt.load(tmp_path / "ckpt")
    opt = make_optimizer(case.optim, "numopt")
    sched = make_scheduler(case, opt, "numopt")
    opt.load_state_dict(loaded["optimizer"])
    sched.load_state_dict(loaded["scheduler"])
    for t in range(100, 160):
        step(case, opt, sched, t)
        _compare_lrs(sched.get_last_lr(), ref_lrs[t + 1], f"step {t} after numopt.load")
    if case.name == "MultiStepLR":
        with pytest.warns(UserWarning, match="epoch parameter"):
            sched.step(40)  # the closed form needs the milestones as a Counter again


def _run_last_epoch_resume(case: SchedCase, lib: str) -> list[list[float]] | type:
    """Run 100 steps, load the optimizer state into a new optimizer, rebuild with last_epoch=100, run 100 more."""
    opt = make_optimizer(case.optim, lib)
    sched = make_scheduler(case, opt, lib)
    for t in range(100):
        step(case, opt, sched, t)
    opt_sd = copy.deepcopy(opt.state_dict())
    opt = make_optimizer(case.optim, lib)
    opt.load_state_dict(opt_sd)
    try:
        sched = make_scheduler(case, opt, lib, last_epoch=100)
        out = [list(sched.get_last_lr())]
        for t in range(100, 200):
            step(case, opt, sched, t)
            out.append(list(sched.get_last_lr()))
    except Exception as e:  # both libraries must fail the same way
        return type(e)
    return out


@pytest.mark.parametrize("case", [c for c in SCHED_DB if c.last_epoch_resume], ids=lambda c: c.id)
def test_resume_with_last_epoch_matches_torch(case: SchedCase) -> None:
    """``last_epoch=k`` uses the loaded ``initial_lr`` and torch's rules for the constructor's step."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about the order in some of these
        ours = _run_last_epoch_resume(case, "numopt")
        ref = _run_last_epoch_resume(case, "torch")
    if isinstance(ref, type):
        assert ours is ref
        return
    assert not isinstance(ours, type), f"numopt raised {ours}, torch did not"
    worst = 0.0
    for t, (a, b) in enumerate(zip(ours, ref)):
        worst = max(worst, _compare_lrs(a, b, f"step {t}"))
    MAX_REL_ERR[case.id + "-last_epoch"] = worst


@pytest.mark.parametrize("case", SCHED_DB, ids=lambda c: c.id)
def test_state_dict_keys_match_torch(case: SchedCase) -> None:
    scheds = []
    for lib in ("numopt", "torch"):
        opt = make_optimizer(case.optim, lib)
        sched = make_scheduler(case, opt, lib)
        for t in range(20):
            step(case, opt, sched, t)
        scheds.append(sched.state_dict())
    ours, ref = scheds
    assert set(ours) == set(ref)
    for key in ("last_epoch", "_step_count", "base_lrs", "_last_lr"):
        if key in ref:
            assert ours[key] == pytest.approx(ref[key], rel=RTOL), key


# -- closed forms (step(epoch)) ---------------------------------------------------------------------------------
CLOSED_FORM = [
    ("StepLR", {"step_size": 3, "gamma": 0.5}, [0, 4, 9, 2, 30]),
    ("MultiStepLR", {"milestones": [2, 5, 5, 9]}, [1, 5, 3, 12]),
    ("ConstantLR", {"factor": 0.25, "total_iters": 4}, [1, 4, 2, 10]),
    ("LinearLR", {"start_factor": 0.2, "total_iters": 8}, [3, 8, 1, 20]),
    ("ExponentialLR", {"gamma": 0.9}, [5, 1, 17]),
    ("PolynomialLR", {"total_iters": 10, "power": 1.5}, [2, 9, 12]),
    ("CosineAnnealingLR", {"T_max": 10, "eta_min": 0.01}, [3, 10, 15, 0]),
    ("CosineAnnealingWarmRestarts", {"T_0": 4, "T_mult": 2}, [1.5, 4, 7.25, 13, 2, 30]),
    ("CosineAnnealingWarmRestarts", {"T_0": 6}, [3.5, 13, 6]),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "epochs"), CLOSED_FORM, ids=[f"{c[0]}-{i}" for i, c in enumerate(CLOSED_FORM)]
)
def test_step_with_epoch_uses_the_closed_form(name: str, kwargs: dict, epochs: list) -> None:
    runs = []
    for lib in ("numopt", "torch"):
        opt = make_optimizer("sgd", lib)
        sched = scheduler_class(name, lib)(opt, **kwargs)
        out = []
        for e in epochs:
            opt.step()
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                sched.step(e)
            # the deprecated argument warns, except in CosineAnnealingWarmRestarts where it is supported
            assert any("epoch parameter" in str(w.message) for w in seen) == (name != "CosineAnnealingWarmRestarts")
            out.append(list(sched.get_last_lr()))
        runs.append(out)
    for t, (a, b) in enumerate(zip(*runs)):
        _compare_lrs(a, b, f"epoch {epochs[t]}")


# -- warnings and errors ---------------------------------------------------------------------------------------
def _opt(lr: float = 0.1) -> numopt.SGD:
    return numopt.SGD([numopt.Parameter(np.zeros(2, np.float32))], lr=lr, momentum=0.9)


def test_warns_when_scheduler_steps_before_optimizer() -> None:
    opt = _opt()
    sched = S.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match=r"`lr_scheduler.step\(\)` before `optimizer.step\(\)`"):
        sched.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.step()  # warned once only, as in torch


def test_no_warning_in_the_right_order_and_shared_counter() -> None:
    opt = _opt()
    first = S.ExponentialLR(opt, gamma=0.9)
    second = S.StepLR(opt, step_size=2)  # the step counter hook is installed once per optimizer
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            opt.step()
            first.step()
            second.step()
    assert opt._opt_step_count == 3


def test_warns_when_optimizer_step_overridden_after_construction() -> None:
    opt = _opt()
    sched = S.StepLR(opt, step_size=2)
    opt.step = lambda closure=None: None  # replaced, never reaches the hooks
    opt.step()
    with pytest.warns(UserWarning, match="overridden"):
        sched.step()


def test_get_lr_outside_step_warns() -> None:
    sched = S.StepLR(_opt(), step_size=2)
    with pytest.warns(UserWarning, match="get_last_lr"):
        sched.get_lr()


def test_resuming_without_initial_lr_raises_key_error() -> None:
    for lib in ("numopt", "torch"):
        opt = make_optimizer("sgd", lib)
        with pytest.raises(KeyError, match="initial_lr"):
            scheduler_class("StepLR", lib)(opt, step_size=3, last_epoch=5)


def test_lambda_state_dict_saves_callable_objects_only() -> None:
    from .sched_db import Warmup, decay_097

    opt = make_optimizer("sgd", "numopt")
    warm = Warmup(10)
    sched = S.LambdaLR(opt, [warm, decay_097])
    sd = sched.state_dict()
    assert sd["lr_lambdas"] == [{"epochs": 10}, None]
    warm.epochs = 3
    sched.load_state_dict(sd)
    assert warm.epochs == 10


def test_scheduler_needs_a_numopt_optimizer() -> None:
    with pytest.raises(TypeError, match="is not an Optimizer"):
        S.StepLR(object(), step_size=1)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        S.ReduceLROnPlateau([1, 2])


def test_onecycle_past_total_steps_raises() -> None:
    for lib in ("numopt", "torch"):
        opt = make_optimizer("sgd", lib)
        sched = scheduler_class("OneCycleLR", lib)(opt, max_lr=0.1, total_steps=5)
        for _ in range(5):
            opt.step()
            sched.step()
        with pytest.raises(ValueError, match="Tried to step 6 times"):
            opt.step()
            sched.step()


def test_reduce_on_plateau_new_group_without_default_min_lr() -> None:
    opt = _opt()
    sched = S.ReduceLROnPlateau(opt, patience=0, min_lr=[0.0])
    opt.add_param_group({"params": [numopt.Parameter(np.zeros(1, np.float32))]})
    sched.step(1.0)
    with pytest.raises(RuntimeError, match="number of param groups"):
        sched.step(2.0)


ERROR_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("ConstantLR", {"factor": 1.5}, "sgd"),
    ("LinearLR", {"start_factor": 0.0}, "sgd"),
    ("LinearLR", {"end_factor": 1.5}, "sgd"),
    ("CosineAnnealingWarmRestarts", {"T_0": 0}, "sgd"),
    ("CosineAnnealingWarmRestarts", {"T_0": 2.5}, "sgd"),
    ("CosineAnnealingWarmRestarts", {"T_0": 5, "T_mult": 0}, "sgd"),
    ("CosineAnnealingWarmRestarts", {"T_0": 5, "eta_min": "0"}, "sgd"),
    ("CyclicLR", {"base_lr": 0.1, "max_lr": 1.0, "mode": "sawtooth"}, "sgd"),
    ("CyclicLR", {"base_lr": [0.1], "max_lr": 1.0}, "sgd"),
    ("CyclicLR", {"base_lr": 0.1, "max_lr": 1.0}, "plain"),
    ("OneCycleLR", {"max_lr": 0.1}, "sgd"),
    ("OneCycleLR", {"max_lr": 0.1, "total_steps": 0}, "sgd"),
    ("OneCycleLR", {"max_lr": 0.1, "epochs": 0, "steps_per_epoch": 3}, "sgd"),
    ("OneCycleLR", {"max_lr": 0.1, "epochs": 2, "steps_per_epoch": -3}, "sgd"),
    ("OneCycleLR", {"max_lr": 0.1, "total_steps": 10, "pct_start": 1.5}, "sgd"),
    ("OneCycleLR", {"max_lr": 0.1, "total_steps": 10, "pct_start": 1}, "sgd"),
    ("OneCycleLR", {"max_lr": 0.1, "total_steps": 10, "anneal_strategy": "step"}, "sgd"),
    ("OneCycleLR", {"max_lr": 0.1, "total_steps": 10}, "plain"),
    ("OneCycleLR", {"max_lr": [0.1, 0.2, 0.3], "total_steps": 10}, "sgd"),
    ("ReduceLROnPlateau", {"factor": 1.0}, "sgd"),
    ("ReduceLROnPlateau", {"mode": "median"}, "sgd"),
    ("ReduceLROnPlateau", {"threshold_mode": "pct"}, "sgd"),
    ("ReduceLROnPlateau", {"min_lr": [0.1]}, "sgd"),
    ("LambdaLR", {"lr_lambda": [math.exp]}, "sgd"),
    ("MultiplicativeLR", {"lr_lambda": 0.5}, "sgd"),
    ("SWALR", {"swa_lr": 0.1, "anneal_strategy": "step"}, "sgd"),
    ("SWALR", {"swa_lr": 0.1, "anneal_epochs": -1}, "sgd"),
    ("SWALR", {"swa_lr": 0.1, "anneal_epochs": 2.5}, "sgd"),
    ("SWALR", {"swa_lr": [0.1, 0.2, 0.3]}, "sgd"),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "kind"), ERROR_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(ERROR_CASES)]
)
def test_invalid_arguments_raise_like_torch(name: str, kwargs: dict, kind: str) -> None:
    errors = []
    for lib in ("numopt", "torch"):
        opt = make_optimizer(kind, lib)
        with pytest.raises(Exception) as info:  # noqa: B017 (compared below)
            scheduler_class(name, lib)(opt, **kwargs)
        errors.append(info.value)
    ours, ref = errors
    assert type(ours) is type(ref), (ours, ref)
    assert str(ours) == str(ref)


def test_composite_schedulers_reject_bad_members() -> None:
    for lib in ("numopt", "torch"):
        mod = S if lib == "numopt" else torch.optim.lr_scheduler
        opt, other = make_optimizer("sgd", lib), make_optimizer("sgd", lib)
        a, b = mod.ExponentialLR(opt, 0.9), mod.StepLR(other, 2)
        plateau = mod.ReduceLROnPlateau(opt)
        with pytest.raises(ValueError, match="same optimizer"):
            mod.SequentialLR(opt, [a, b], milestones=[3])
        with pytest.raises(ValueError, match="ReduceLROnPlateau"):
            mod.ChainedScheduler([a, plateau])
        with pytest.raises(ValueError, match="number of milestones"):
            mod.SequentialLR(opt, [a], milestones=[3])
        with pytest.raises(ValueError, match="at least one scheduler"):
            mod.SequentialLR(opt, [], milestones=[])
        with pytest.raises(TypeError, match="should have `optimizer`"):
            mod.ChainedScheduler([object()], optimizer=opt)


def test_cycle_momentum_drives_adam_betas() -> None:
    w = numopt.Parameter(np.zeros(2, np.float32))
    opt = numopt.Adam([w], lr=0.1, betas=(0.9, 0.99))
    sched = S.OneCycleLR(opt, max_lr=0.1, total_steps=10, base_momentum=0.8, max_momentum=0.95)
    assert opt.param_groups[0]["betas"] == (0.95, 0.99)
    for _ in range(3):
        w.grad = np.ones(2, np.float32)
        opt.step()  # Adam steps with the cycled beta1
        sched.step()
    beta1, beta2 = opt.param_groups[0]["betas"]
    assert 0.8 <= beta1 < 0.95 and beta2 == 0.99
    assert "momentum" not in opt.param_groups[0]
    with pytest.raises(ValueError, match="momentum or beta1"):
        S.CyclicLR(PlainOpt([numopt.Parameter(np.zeros(1, np.float32))]), base_lr=0.1, max_lr=1.0)


def test_lr_changes_reach_the_optimizer_step() -> None:
    """The scheduler's rate is the one the next optimizer step uses."""
    w = numopt.Parameter(np.zeros(1, np.float64))
    opt = numopt.SGD([w], lr=1.0)
    sched = S.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        w.grad = -np.ones(1)
        opt.step()
        sched.step()
    assert w.data[0] == 1.0 + 0.5 + 0.25


def test_lr_scheduler_is_reachable_like_torch() -> None:
    assert numopt.optim.lr_scheduler is S
    assert numopt.lr_scheduler.StepLR is S.StepLR
    assert issubclass(S._LRScheduler, S.LRScheduler)


def test_example_draws_every_scheduler(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("lr_schedules_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = example.main([str(tmp_path / "curves.png"), "--steps", "40"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    drawn = {title.split(" ")[0] for title, _, _ in example.SCHEDULES}
    assert set(S.__all__) - {"LRScheduler"} | {"SWALR"} <= drawn, "every scheduler is drawn"
    assert f"wrote {out}" in printed and "ReduceLROnPlateau" in printed


@pytest.mark.parametrize("kind", ["sgd", "betas"])
def test_training_with_a_schedule_matches_torch(kind: str) -> None:
    """End to end: the scheduled lr and momentum / beta1 are what the next optimizer step uses."""
    rng = np.random.default_rng(4)
    init = rng.standard_normal(6)
    w = numopt.Parameter(init.copy())
    tw = torch.tensor(init.copy(), requires_grad=True)
    if kind == "sgd":
        opt, topt = numopt.SGD([w], lr=0.1, momentum=0.9), torch.optim.SGD([tw], lr=0.1, momentum=0.9)
    else:
        opt, topt = numopt.Adam([w], lr=0.1), torch.optim.Adam([tw], lr=0.1)
    sched = S.OneCycleLR(opt, max_lr=0.5, total_steps=30)
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=0.5, total_steps=30)
    for _ in range(30):
        g = rng.standard_normal(6)
        w.grad = g.copy()
        tw.grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
        np.testing.assert_allclose(w.data, tw.detach().numpy(), rtol=1e-10, atol=1e-12)
