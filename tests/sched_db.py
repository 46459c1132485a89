"""The table of learning-rate scheduler configurations compared with torch.

One row per configuration: the class name (the same in ``numopt.lr_scheduler``
/ ``numopt.swa_utils`` and ``torch.optim.lr_scheduler`` / ``torch.optim.swa_utils``),
the constructor kwargs, a description and the kind of optimizer it drives.
Nested schedulers (``SequentialLR``, ``ChainedScheduler``) are written as
:class:`Sub` entries and built on each side's optimizer. Every row runs on an
optimizer with two parameter groups of different learning rates.

torch is the reference: importing this module without torch fails the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import numopt
from numopt import lr_scheduler, swa_utils

#: the learning rates of the two parameter groups
GROUP_LRS = (0.1, 0.03)
STEPS = 300


# -- functions used as lr_lambda / scale_fn (plain functions: not saved in state dicts) ---------------
def decay_097(epoch: int) -> float:
    return 0.97**epoch


def warmup_then_inverse_sqrt(epoch: int) -> float:
    return min(1.0, (epoch + 1) / 10) / math.sqrt(max(1, epoch - 9))


def multiply_099(epoch: int) -> float:
    return 0.99


def multiply_wavy(epoch: int) -> float:
    return 1.0 + 0.05 * math.sin(epoch / 7.0)


def cycle_scale(x: float) -> float:
    return 1.0 / (1.0 + 0.1 * x)


class Warmup:
    """A callable object as ``lr_lambda``: its ``__dict__`` is saved in the state dict."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def __call__(self, epoch: int) -> float:
        return min(1.0, (epoch + 1) / self.epochs)


class PlainOpt(numopt.Optimizer):
    """A do-nothing optimizer with neither ``momentum`` nor ``betas`` (torch side: Adagrad)."""

    _tracks_step = False

    def __init__(self, params: Any, lr: float = 1e-2) -> None:
        super().__init__(params, {"lr": lr})

    def _update(self, group: dict[str, Any], flat: Any, run: Any) -> None:
        pass


@dataclass(frozen=True)
class Sub:
    """A scheduler nested in another's arguments."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SchedCase:
    name: str
    kwargs: dict[str, Any]
    desc: str
    #: 'sgd' (SGD with momentum), 'betas' (Adam: cycle_momentum drives betas[0]) or 'plain' (neither)
    optim: str = "sgd"
    #: ReduceLROnPlateau: step(metric) with METRICS[t]
    metrics: bool = False
    #: whether the row can be rebuilt with ``last_epoch=k`` after loading an optimizer state
    last_epoch_resume: bool = True

    @property
    def id(self) -> str:
        return f"{self.name}-{self.desc}".replace(" ", "_")


def _metrics() -> list[float]:
    """A loss curve with noise, long plateaus and a bump, for ReduceLROnPlateau."""
    rng = np.random.default_rng(0)
    out = []
    for t in range(STEPS):
        level = 1.0 / (1.0 + 0.05 * min(t, 60)) if t < 200 else 0.4 + 0.001 * (t - 200)
        out.append(float(level + 0.01 * rng.standard_normal()) if t % 3 else float(level))
    return out


METRICS = _metrics()


def _rows() -> list[SchedCase]:
    c = SchedCase
    rows = [
        c("LambdaLR", {"lr_lambda": decay_097}, "one function"),
        c("LambdaLR", {"lr_lambda": [decay_097, warmup_then_inverse_sqrt]}, "one function per group"),
        c("LambdaLR", {"lr_lambda": Warmup(25)}, "callable object"),
        c("MultiplicativeLR", {"lr_lambda": multiply_099}, "constant factor"),
        c("MultiplicativeLR", {"lr_lambda": [multiply_099, multiply_wavy]}, "per group"),
        c("StepLR", {"step_size": 30}, "default gamma"),
        c("StepLR", {"step_size": 7, "gamma": 0.8}, "short steps"),
        c("MultiStepLR", {"milestones": [10, 40, 40, 120]}, "repeated milestone"),
        c("MultiStepLR", {"milestones": [250, 5], "gamma": 0.5}, "unsorted milestones"),
        c("ConstantLR", {}, "defaults"),
        c("ConstantLR", {"factor": 0.5, "total_iters": 40}, "factor 0.5"),
        c("LinearLR", {}, "defaults"),
        c("LinearLR", {"start_factor": 0.05, "total_iters": 40}, "warmup"),
        c("LinearLR", {"start_factor": 1.0, "end_factor": 0.1, "total_iters": 100}, "decay"),
        c("LinearLR", {"start_factor": 0.5, "end_factor": 0.0, "total_iters": 300}, "to zero"),
        c("ExponentialLR", {"gamma": 0.98}, "gamma 0.98"),
        c("PolynomialLR", {}, "defaults"),
        c("PolynomialLR", {"total_iters": 100, "power": 2.0}, "quadratic"),
        c("PolynomialLR", {"total_iters": 250, "power": 0.5}, "square root"),
        c("CosineAnnealingLR", {"T_max": 300}, "one half period"),
        c("CosineAnnealingLR", {"T_max": 50, "eta_min": 0.001}, "eta_min, several periods"),
        c("CosineAnnealingLR", {"T_max": 7, "eta_min": 0.01}, "short period"),
        c("CosineAnnealingWarmRestarts", {"T_0": 10}, "T_0 10"),
        c("CosineAnnealingWarmRestarts", {"T_0": 5, "T_mult": 2, "eta_min": 1e-4}, "T_mult 2"),
        c("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 20}, "triangular"),
        c(
            "CyclicLR",
            {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 10, "step_size_down": 30, "mode": "triangular2"},
            "triangular2 asymmetric",
        ),
        c(
            "CyclicLR",
            {"base_lr": 0.001, "max_lr": 0.1, "step_size_up": 15, "mode": "exp_range", "gamma": 0.99},
            "exp_range",
        ),
        c(
            "CyclicLR",
            {"base_lr": 0.01, "max_lr": 0.2, "step_size_up": 12, "scale_fn": cycle_scale, "scale_mode": "iterations"},
            "scale_fn per iteration",
        ),
        c(
            "CyclicLR",
            {"base_lr": 0.01, "max_lr": 0.2, "step_size_up": 8, "scale_fn": cycle_scale},
            "scale_fn per cycle",
        ),
        c(
            "CyclicLR",
            {"base_lr": [0.01, 0.002], "max_lr": [0.1, 0.05], "step_size_up": 25, "cycle_momentum": False},
            "per-group bounds, no momentum",
        ),
        c(
            "CyclicLR",
            {
                "base_lr": 0.01,
                "max_lr": 0.1,
                "step_size_up": 20,
                "base_momentum": [0.8, 0.7],
                "max_momentum": [0.9, 0.95],
            },
            "per-group momentum",
        ),
        c(
            "CyclicLR",
            {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 20, "mode": "triangular2"},
            "betas",
            optim="betas",
        ),
        c("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "cycle_momentum": False}, "plain optimizer", optim="plain"),
        c("OneCycleLR", {"max_lr": 0.1, "total_steps": 300}, "cos"),
        c("OneCycleLR", {"max_lr": 0.1, "total_steps": 320, "anneal_strategy": "linear"}, "linear"),
        c("OneCycleLR", {"max_lr": 0.1, "total_steps": 300, "three_phase": True}, "three phase"),
        c(
            "OneCycleLR",
            {"max_lr": 0.1, "total_steps": 300, "three_phase": True, "anneal_strategy": "linear"},
            "three phase linear",
        ),
        c("OneCycleLR", {"max_lr": [0.1, 0.02], "epochs": 30, "steps_per_epoch": 10}, "epochs, per-group max_lr"),
        c(
            "OneCycleLR",
            {
                "max_lr": 0.5,
                "total_steps": 300,
                "pct_start": 0.25,
                "div_factor": 10.0,
                "final_div_factor": 100.0,
                "base_momentum": [0.8, 0.85],
                "max_momentum": 0.9,
            },
            "custom factors",
        ),
        c("OneCycleLR", {"max_lr": 0.1, "total_steps": 300, "cycle_momentum": False}, "no momentum"),
        c("OneCycleLR", {"max_lr": 0.1, "total_steps": 300}, "betas", optim="betas"),
        c("ReduceLROnPlateau", {}, "defaults", metrics=True, last_epoch_resume=False),
        c(
            "ReduceLROnPlateau",
            {"patience": 2, "factor": 0.5, "cooldown": 3, "min_lr": [0.001, 0.0005]},
            "cooldown, per-group min_lr",
            metrics=True,
            last_epoch_resume=False,
        ),
        c(
            "ReduceLROnPlateau",
            {"mode": "max", "threshold_mode": "abs", "threshold": 0.01, "patience": 3, "min_lr": 0.004},
            "max abs",
            metrics=True,
            last_epoch_resume=False,
        ),
        c(
            "ReduceLROnPlateau",
            {"mode": "max", "patience": 1, "factor": 0.9, "eps": 0.005},
            "max rel, large eps",
            metrics=True,
            last_epoch_resume=False,
        ),
        c(
            "ReduceLROnPlateau",
            {"threshold_mode": "abs", "threshold": 0.0, "patience": 4, "factor": 0.3},
            "min abs",
            metrics=True,
            last_epoch_resume=False,
        ),
        c(
            "SequentialLR",
            {
                "schedulers": [
                    Sub("LinearLR", {"start_factor": 0.1, "total_iters": 10}),
                    Sub("ExponentialLR", {"gamma": 0.99}),
                ],
                "milestones": [10],
            },
            "warmup then decay",
            last_epoch_resume=False,
        ),
        c(
            "SequentialLR",
            {
                "schedulers": [
                    Sub("ConstantLR", {"factor": 0.5, "total_iters": 30}),
                    Sub("CosineAnnealingLR", {"T_max": 100, "eta_min": 0.001}),
                    Sub("StepLR", {"step_size": 20, "gamma": 0.7}),
                ],
                "milestones": [20, 150],
            },
            "three schedulers",
            last_epoch_resume=False,
        ),
        c(
            "ChainedScheduler",
            {
                "schedulers": [
                    Sub("ConstantLR", {"factor": 0.1, "total_iters": 20}),
                    Sub("ExponentialLR", {"gamma": 0.99}),
                ]
            },
            "constant and exponential",
            last_epoch_resume=False,
        ),
        c(
            "ChainedScheduler",
            {
                "schedulers": [
                    Sub("LinearLR", {"start_factor": 0.2, "total_iters": 15}),
                    Sub("CosineAnnealingWarmRestarts", {"T_0": 40}),
                    Sub("MultiStepLR", {"milestones": [100, 200], "gamma": 0.5}),
                ]
            },
            "three schedulers",
            last_epoch_resume=False,
        ),
        c("SWALR", {"swa_lr": 0.05}, "defaults"),
        c("SWALR", {"swa_lr": [0.05, 0.2], "anneal_epochs": 30, "anneal_strategy": "linear"}, "per-group linear"),
        c("SWALR", {"swa_lr": 0.01, "anneal_epochs": 0}, "no annealing"),
    ]
    return rows


SCHED_DB: list[SchedCase] = _rows()


# -- building both sides ------------------------------------------------------------------------------
def scheduler_class(name: str, lib: str) -> type:
    if lib == "numopt":
        return getattr(swa_utils if name == "SWALR" else lr_scheduler, name)
    return getattr(torch.optim.swa_utils if name == "SWALR" else torch.optim.lr_scheduler, name)


def make_optimizer(kind: str, lib: str) -> Any:
    """An optimizer with two groups (learning rates GROUP_LRS) over fresh small parameters."""
    if lib == "numopt":
        params = [numopt.Parameter(np.zeros(3, np.float32)), numopt.Parameter(np.zeros(2, np.float32))]
        groups = [{"params": [params[0]], "lr": GROUP_LRS[0]}, {"params": [params[1]], "lr": GROUP_LRS[1]}]
        if kind == "sgd":
            return numopt.SGD(groups, lr=GROUP_LRS[0], momentum=0.9)
        if kind == "betas":
            return numopt.Adam(groups)
        return PlainOpt(groups)
    params = [torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)]
    groups = [{"params": [params[0]], "lr": GROUP_LRS[0]}, {"params": [params[1]], "lr": GROUP_LRS[1]}]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=GROUP_LRS[0], momentum=0.9)
    if kind == "betas":
        return torch.optim.Adam(groups)
    return torch.optim.Adagrad(groups)


def _resolve(value: Any, opt: Any, lib: str) -> Any:
    if isinstance(value, Sub):
        return scheduler_class(value.name, lib)(opt, **value.kwargs)
    if isinstance(value, list):
        return [_resolve(v, opt, lib) for v in value]
    return value


def make_scheduler(case: SchedCase, opt: Any, lib: str, **extra: Any) -> Any:
    kwargs = {k: _resolve(v, opt, lib) for k, v in case.kwargs.items()}
    cls = scheduler_class(case.name, lib)
    if case.name == "ChainedScheduler":
        return cls(**kwargs, **extra)
    return cls(opt, **kwargs, **extra)


def step(case: SchedCase, opt: Any, sched: Any, t: int) -> None:
    """One training iteration: the optimizer's step, then the scheduler's."""
    opt.step()
    if case.metrics:
        sched.step(METRICS[t])
    else:
        sched.step()


#: param-group entries the schedulers write, compared at every step
GROUP_KEYS = ("lr", "initial_lr", "momentum", "betas", "max_lr", "min_lr", "max_momentum", "base_momentum", "swa_lr")


def group_values(opt: Any) -> list[dict[str, Any]]:
    return [{k: g[k] for k in GROUP_KEYS if k in g} for g in opt.param_groups]
