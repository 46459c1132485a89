"""Draw the learning-rate curve of every numopt scheduler into one PNG grid.

    python examples/lr_schedules.py [OUTPUT.png] [--steps N]     (default OUTPUT: lr_schedules.png next to this script)

Each panel runs one scheduler on an SGD optimizer (lr = 0.1, momentum = 0.9)
for ``--steps`` steps and plots ``get_last_lr()``; the cyclic schedules also
show the momentum they drive (dashed, right axis). A summary table (first,
lowest, highest and last learning rate) is printed.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import numopt  # noqa: E402
from numopt import lr_scheduler as S  # noqa: E402
from numopt.swa_utils import SWALR  # noqa: E402

LR = 0.1


def _plateau_loss(t: int) -> float:
    """A made-up validation loss: improves, then stalls (ReduceLROnPlateau reacts to the stalls)."""
    return 1.0 / (1.0 + 0.05 * min(t, 40)) + (0.02 * math.sin(t / 3.0) if t > 40 else 0.0)


def _swa_after_cosine(opt: Any, steps: int) -> Any:
    """The SWA recipe: cosine annealing for 3/4 of training, then SWALR (what torch's docs show)."""
    switch = 3 * steps // 4
    return S.SequentialLR(
        opt,
        [S.CosineAnnealingLR(opt, T_max=switch), SWALR(opt, swa_lr=0.02, anneal_epochs=10)],
        milestones=[switch],
    )


#: (title, factory(optimizer, steps) -> scheduler, steps the scheduler with a metric)
SCHEDULES: list[tuple[str, Callable[[Any, int], Any], bool]] = [
    ("LambdaLR (0.97^t)", lambda o, n: S.LambdaLR(o, lambda t: 0.97**t), False),
    ("MultiplicativeLR (x0.98)", lambda o, n: S.MultiplicativeLR(o, lambda t: 0.98), False),
    ("StepLR (30, 0.5)", lambda o, n: S.StepLR(o, step_size=30, gamma=0.5), False),
    ("MultiStepLR ([30, 80])", lambda o, n: S.MultiStepLR(o, milestones=[30, 80], gamma=0.3), False),
    ("ConstantLR (1/3 for 20)", lambda o, n: S.ConstantLR(o, total_iters=20), False),
    ("LinearLR (warmup 25)", lambda o, n: S.LinearLR(o, start_factor=0.05, total_iters=25), False),
    ("ExponentialLR (0.97)", lambda o, n: S.ExponentialLR(o, gamma=0.97), False),
    ("PolynomialLR (power 2)", lambda o, n: S.PolynomialLR(o, total_iters=n, power=2.0), False),
    ("CosineAnnealingLR", lambda o, n: S.CosineAnnealingLR(o, T_max=n // 2, eta_min=0.005), False),
    ("CosineAnnealingWarmRestarts", lambda o, n: S.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=2), False),
    ("CyclicLR triangular", lambda o, n: S.CyclicLR(o, base_lr=0.01, max_lr=LR, step_size_up=15), False),
    (
        "CyclicLR triangular2",
        lambda o, n: S.CyclicLR(o, base_lr=0.01, max_lr=LR, step_size_up=10, mode="triangular2"),
        False,
    ),
    (
        "CyclicLR exp_range",
        lambda o, n: S.CyclicLR(o, base_lr=0.01, max_lr=LR, step_size_up=10, mode="exp_range", gamma=0.99),
        False,
    ),
    ("OneCycleLR (cos)", lambda o, n: S.OneCycleLR(o, max_lr=LR, total_steps=n), False),
    (
        "OneCycleLR (linear, 3 phases)",
        lambda o, n: S.OneCycleLR(o, max_lr=LR, total_steps=n, anneal_strategy="linear", three_phase=True),
        False,
    ),
    ("ReduceLROnPlateau", lambda o, n: S.ReduceLROnPlateau(o, patience=5, factor=0.5), True),
    (
        "SequentialLR (warmup, decay)",
        lambda o, n: S.SequentialLR(
            o, [S.LinearLR(o, start_factor=0.1, total_iters=15), S.ExponentialLR(o, gamma=0.97)], milestones=[15]
        ),
        False,
    ),
    (
        "ChainedScheduler (1/5 for 20, x0.98)",
        lambda o, n: S.ChainedScheduler([S.ConstantLR(o, factor=0.2, total_iters=20), S.ExponentialLR(o, gamma=0.98)]),
        False,
    ),
    ("SWALR after cosine", _swa_after_cosine, False),
]


def run(factory: Callable[[Any, int], Any], metric: bool, steps: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The learning rate (and momentum, if cycled) at every step of one schedule."""
    w = numopt.Parameter(np.zeros(1, np.float32))
    opt = numopt.SGD([w], lr=LR, momentum=0.9)
    sched = factory(opt, steps)
    lrs, moms = [], []
    for t in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        w.grad = np.zeros(1, np.float32)
        opt.step()
        if metric:
            sched.step(_plateau_loss(t))
        else:
            sched.step()
    mom = np.array(moms)
    return np.array(lrs), (mom if np.ptp(mom) > 0 else None)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "output",
        nargs="?",
        default=str(Path(__file__).with_suffix(".png")),
        help="PNG file to write (default: next to this script)",
    )
    parser.add_argument("--steps", type=int, default=120, help="steps per schedule (default 120)")
    args = parser.parse_args(argv)
    out = Path(args.output)

    cols = 4
    rows = math.ceil(len(SCHEDULES) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    print(f"{'scheduler':<32} {'first':>9} {'lowest':>9} {'highest':>9} {'last':>9}")
    for ax, (title, factory, metric) in zip(axes.flat, SCHEDULES):
        lrs, mom = run(factory, metric, args.steps)
        ax.plot(lrs, color="tab:blue", lw=1.5)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("lr", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if mom is not None:
            twin = ax.twinx()
            twin.plot(mom, color="tab:orange", lw=1, ls="--")
            twin.set_ylabel("momentum", fontsize=8, color="tab:orange")
            twin.tick_params(labelsize=7, colors="tab:orange")
        print(f"{title:<32} {lrs[0]:9.4g} {lrs.min():9.4g} {lrs.max():9.4g} {lrs[-1]:9.4g}")
    for ax in list(axes.flat)[len(SCHEDULES) :]:
        ax.axis("off")
    fig.suptitle(f"numopt.lr_scheduler: learning rate over {args.steps} steps (SGD, lr={LR})", fontsize=13)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out} ({len(SCHEDULES)} schedules)")
    return out


if __name__ == "__main__":
    main()
