"""Every numopt optimizer on the same small model: its reference defaults, then a short learning-rate sweep.

    python examples/optimizer_shootout.py [OUTPUT.png] [--epochs N] [--quick]

For people who pick an optimizer by benchmark. The model and data are those of
``digits_mlp.py`` (a 64-64-10 MLP on scikit-learn's bundled digits, backward pass
by hand): every optimizer starts from the same weights and sees the same
mini-batches. Each one is trained at the learning rate its reference defaults to
(``torch.optim``'s, or the third-party implementation's for the optimizers torch
lacks), then at that learning rate times 1/10, 1/3, 3 and 10 (1/10 and 10 only
with ``--quick``). The printed table gives, per optimizer, the final training loss
at the default and at the best learning rate of the sweep, the test accuracy
there, and the time of one ``step()`` (the optimizer alone, without the model's
forward and backward passes). The PNG (``optimizer_shootout.png`` next to this
script by default) shows each optimizer's loss curve at its best learning rate.

The optimizers are found at run time (``numopt.optim.__all__``), so a new one
joins the table with no edit here. Schedule-Free optimizers are switched to
``train()`` for the steps and ``eval()`` for measuring, as their reference asks.
Not in the table: ``LBFGS`` (full-batch, with a closure: see ``numopt.minimize``)
and ``SparseAdam`` (sparse gradients only). ``Muon`` takes the 2-D weights and
``AdamW`` the biases, as Muon is meant to be used; a wrapper such as ``Lookahead``
wraps ``AdamW``.

Needs scikit-learn (``pip install scikit-learn``, part of numopt's test extra).
"""

from __future__ import annotations

import argparse
import inspect
import os
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from digits_mlp import BATCH, accuracy, forward_backward, init_params, load_digits  # noqa: E402

import numopt  # noqa: E402

#: optimizers left out of the table, and why
LEFT_OUT = {
    "LBFGS": "full-batch with a closure (see numopt.minimize)",
    "SparseAdam": "sparse gradients only",
}


class Pair:
    """Two optimizers stepped as one (Muon on the 2-D weights, AdamW on the biases)."""

    def __init__(self, *opts: Any) -> None:
        self.opts = opts

    def step(self) -> None:
        for opt in self.opts:
            opt.step()


def default_lr(cls: type) -> float:
    """The learning rate ``cls`` defaults to (its constructor's ``lr`` default)."""
    return float(inspect.signature(cls.__init__).parameters["lr"].default)


def build(name: str, params: list[numopt.Parameter], lr: float) -> Any:
    """``name``'s optimizer over ``params`` at learning rate ``lr``, every other argument at its default."""
    cls = getattr(numopt, name)
    signature = inspect.signature(cls.__init__).parameters
    if "optimizer" in signature:  # a wrapper (Lookahead): around AdamW at lr
        return cls(numopt.AdamW(params, lr=lr))
    if name == "Muon":
        weights = [p for p in params if p.ndim == 2]
        biases = [p for p in params if p.ndim != 2]
        return Pair(cls(weights, lr=lr), numopt.AdamW(biases, lr=1e-3))
    return cls(params, lr=lr)


def lr_of(name: str) -> float:
    cls = getattr(numopt, name)
    if "optimizer" in inspect.signature(cls.__init__).parameters:
        return default_lr(numopt.AdamW)
    return default_lr(cls)


def label(name: str) -> str:
    """The table's name for ``name``'s recipe."""
    cls = getattr(numopt, name)
    if "optimizer" in inspect.signature(cls.__init__).parameters:
        return f"{name}(AdamW)"
    return "Muon + AdamW" if name == "Muon" else name


def set_mode(opt: Any, mode: str) -> None:
    """``opt.train()`` / ``opt.eval()`` for optimizers that have them (Schedule-Free), else nothing."""
    switch = getattr(opt, mode, None)
    if callable(switch):
        switch()


def train(name: str, lr: float, data: tuple[np.ndarray, ...], epochs: int) -> dict[str, Any]:
    x_train, y_train, x_test, y_test = data
    params = init_params()
    opt = build(name, params, lr)
    losses: list[float] = []
    step_s = 0.0
    steps = 0
    for epoch in range(epochs):
        order = np.random.default_rng(100 + epoch).permutation(len(y_train))  # same batches for everyone
        total = 0.0
        set_mode(opt, "train")
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            total += forward_backward(params, x_train[idx], y_train[idx]) * len(idx)
            start = time.perf_counter()
            opt.step()
            if epoch or i:  # the first step loads (or compiles) the kernels: not timed
                step_s += time.perf_counter() - start
                steps += 1
        losses.append(total / len(order) if np.isfinite(total) else float("nan"))
    set_mode(opt, "eval")  # Schedule-Free: measure at the averaged weights x, as its reference asks
    acc = accuracy(params, x_test, y_test) if all(np.isfinite(p.data).all() for p in params) else float("nan")
    return {"lr": lr, "loss": losses, "acc": acc, "step_us": 1e6 * step_s / max(steps, 1)}


def final(r: dict[str, Any]) -> float:
    """A run's final training loss (NaN, a diverged run, sorts last)."""
    loss = r["loss"][-1]
    return loss if np.isfinite(loss) else float("inf")


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=str(Path(__file__).with_suffix(".png")), help="PNG to write")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 20, quick 2)")
    parser.add_argument(
        "--quick", action="store_true", default=os.environ.get("NUMOPT_EXAMPLES_QUICK") == "1", help="2 epochs"
    )
    args = parser.parse_args(argv)
    epochs = args.epochs or (2 if args.quick else 20)
    factors = {"1/10": 0.1, "10": 10.0} if args.quick else {"1/10": 0.1, "1/3": 1 / 3, "3": 3.0, "10": 10.0}
    out = Path(args.output)
    data = load_digits()
    names = [n for n in numopt.optim.__all__ if n not in LEFT_OUT]
    print(
        f"digits MLP 64-64-10, {epochs} epochs, {len(names)} optimizers at their reference defaults, "
        f"then lr x {', '.join(factors)}"
    )
    results = {}
    for name in names:
        lr0 = lr_of(name)
        default = train(name, lr0, data, epochs)
        sweep = [default] + [train(name, lr0 * f, data, epochs) for f in factors.values()]
        results[name] = {"default": default, "best": min(sweep, key=final)}

    ranked = sorted(results, key=lambda n: final(results[n]["best"]))
    head = f"{'optimizer':<18} {'default lr':>10} {'loss':>8} {'best lr':>9} {'loss':>8} {'test acc':>9} {'step us':>8}"
    print("\n" + head)
    for name in ranked:
        d, b = results[name]["default"], results[name]["best"]
        print(
            f"{label(name):<18} {d['lr']:10.3g} {d['loss'][-1]:8.4f} {b['lr']:9.3g} {b['loss'][-1]:8.4f} "
            f"{b['acc']:9.2%} {b['step_us']:8.1f}"
        )
    print("left out: " + "; ".join(f"{k} ({v})" for k, v in LEFT_OUT.items()))

    fig, ax = plt.subplots(figsize=(10, 6))
    epochs_axis = np.arange(1, epochs + 1)
    for name in ranked:
        b = results[name]["best"]
        ax.semilogy(epochs_axis, b["loss"], marker="o", ms=2, lw=1.3, label=f"{label(name)} (lr {b['lr']:.3g})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (cross-entropy, mean over the epoch)")
    ax.set_title("digits MLP: every numopt optimizer at its best learning rate of the sweep")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    print(f"\nwrote {out}")
    return out


if __name__ == "__main__":
    main()
