"""The table of optimizer configurations that drives every optimizer test.

In the spirit of torch's ``OptimizerInfo``: one row per configuration. A new
optimizer or option is one more row here, and gets parity with torch, state-dict
round trips and the error/property checks that read this table.

Each row: the class name (the same in ``torch.optim`` and ``numopt``), the
constructor kwargs, a description, the overrides given to the second parameter
group, and the dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class OptimCase:
    name: str
    kwargs: dict[str, Any]
    desc: str
    group2: dict[str, Any] = field(default_factory=dict)
    dtype: type = np.float32
    steps: int = 60

    @property
    def id(self) -> str:
        return f"{self.name}-{self.desc}-{np.dtype(self.dtype).name}".replace(" ", "_")

    @property
    def tolerances(self) -> dict[str, float]:
        if np.dtype(self.dtype) == np.float64:
            return {"rtol": 1e-12, "atol": 1e-14}
        return {"rtol": 1e-5, "atol": 1e-6}


def _sgd_rows() -> list[OptimCase]:
    # torch's optim_inputs_func_sgd, plus the combinations the issue names.
    rows = [
        ({}, "default"),
        ({"lr": 1e-2}, "non-default lr"),
        ({"lr": np.float32(1e-3)}, "numpy scalar lr"),
        ({"lr": 0.05, "weight_decay": 0.5}, "weight_decay"),
        ({"lr": 0.05, "momentum": 0.9}, "momentum"),
        ({"lr": 0.05, "weight_decay": 0.1, "maximize": True}, "maximize"),
        ({"lr": 0.05, "momentum": 0.9, "dampening": 0.5}, "dampening"),
        ({"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1}, "weight_decay with momentum"),
        ({"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}, "nesterov"),
        ({"lr": 0.05, "momentum": 0.9, "nesterov": True, "dampening": 0.0}, "nesterov dampening 0"),
        (
            {"lr": 0.05, "momentum": 0.5, "dampening": 0.3, "maximize": True, "weight_decay": 0.2},
            "momentum dampening maximize wd",
        ),
        ({"lr": 0.05, "momentum": 0.9, "nesterov": True, "maximize": True}, "nesterov maximize"),
    ]
    out = [OptimCase("SGD", kw, desc, group2={"lr": 0.01, "momentum": 0.5}) for kw, desc in rows]
    out.append(
        OptimCase(
            "SGD",
            {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1},
            "momentum float64",
            group2={"lr": 0.02},
            dtype=np.float64,
        )
    )
    out.append(
        OptimCase(
            "SGD",
            {"lr": 0.05, "momentum": 0.9, "nesterov": True},
            "nesterov float64",
            group2={"weight_decay": 0.3},
            dtype=np.float64,
        )
    )
    out.append(OptimCase("SGD", {"lr": 0.05}, "group2 turns momentum on", group2={"momentum": 0.9, "dampening": 0.1}))
    return out


OPTIM_DB: list[OptimCase] = []
OPTIM_DB += _sgd_rows()
# Adam family rows:
# RMS family rows:
# Other optimizers rows:


@dataclass(frozen=True)
class ErrorCase:
    """Constructor kwargs that must raise ``error`` with a message matching ``match``."""

    name: str
    kwargs: dict[str, Any]
    error: type
    match: str


ERROR_DB: list[ErrorCase] = [
    ErrorCase("SGD", {"lr": -0.1}, ValueError, "Invalid learning rate: -0.1 .*lr must be"),
    ErrorCase("SGD", {"lr": float("nan")}, ValueError, "Invalid learning rate"),
    ErrorCase("SGD", {"lr": "0.1"}, TypeError, "lr must be a real number"),
    ErrorCase("SGD", {"momentum": -0.5}, ValueError, "Invalid momentum value: -0.5"),
    ErrorCase("SGD", {"weight_decay": -1.0}, ValueError, "Invalid weight_decay value: -1.0"),
    ErrorCase("SGD", {"nesterov": True}, ValueError, "Nesterov momentum requires a momentum and zero dampening"),
    ErrorCase("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, ValueError, "zero dampening"),
    ErrorCase("SGD", {"maximize": 1}, TypeError, "maximize must be True or False"),
    ErrorCase("SGD", {"differentiable": True}, ValueError, "differentiable=True is not supported"),
    ErrorCase("SGD", {"foreach": "yes"}, TypeError, "foreach must be None, True or False"),
    # Adam family errors:
    # RMS family errors:
    # Other optimizers errors:
]
