"""A two-layer MLP in plain NumPy on scikit-learn's digits, trained with SGD, Adam and AdamW + OneCycleLR.

    python examples/digits_mlp.py [OUTPUT.png] [--epochs N] [--quick]

The 1797 8x8 images of scikit-learn's bundled digits data set (no download) are
split 75/25 into training and test sets. The network is 64 -> 64 (ReLU) -> 10
(softmax), with its backward pass written by hand; numopt only sees parameters
and gradients. Every optimizer starts from the same weights and sees the same
mini-batches. A table of final training loss and test accuracy is printed; the
PNG (``digits_mlp.png`` next to this script by default) shows the training loss
and the test accuracy per epoch.

Needs scikit-learn (``pip install scikit-learn``, part of numopt's test extra).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import numopt  # noqa: E402

HIDDEN = 64
BATCH = 64


def load_digits() -> tuple[np.ndarray, ...]:
    """Training and test images (scaled to [0, 1], float32) and labels."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as e:
        raise SystemExit(
            "digits_mlp.py needs scikit-learn for its bundled digits data: pip install scikit-learn"
        ) from e
    data = sk_load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    cut = int(0.75 * len(y))
    train, test = order[:cut], order[cut:]
    return x[train], y[train], x[test], y[test]


def init_params(seed: int = 0) -> list[numopt.Parameter]:
    """He-initialized weights and zero biases, named like a torch model's."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((64, HIDDEN)) * np.sqrt(2.0 / 64)
    w2 = rng.standard_normal((HIDDEN, 10)) * np.sqrt(2.0 / HIDDEN)
    return [
        numopt.Parameter(w1.astype(np.float32), name="fc1.weight"),
        numopt.Parameter(np.zeros(HIDDEN, np.float32), name="fc1.bias"),
        numopt.Parameter(w2.astype(np.float32), name="fc2.weight"),
        numopt.Parameter(np.zeros(10, np.float32), name="fc2.bias"),
    ]


def forward_backward(params: list[numopt.Parameter], x: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy of the batch; sets every parameter's ``.grad``."""
    w1, b1, w2, b2 = params
    h_pre = x @ w1.data + b1.data
    h = np.maximum(h_pre, 0)
    logits = h @ w2.data + b2.data
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    n = len(y)
    loss = float(-np.log(p[np.arange(n), y] + 1e-12).mean())
    d_logits = p
    d_logits[np.arange(n), y] -= 1
    d_logits /= n
    w2.grad = h.T @ d_logits
    b2.grad = d_logits.sum(axis=0)
    d_h = (d_logits @ w2.data.T) * (h_pre > 0)
    w1.grad = x.T @ d_h
    b1.grad = d_h.sum(axis=0)
    return loss


def accuracy(params: list[numopt.Parameter], x: np.ndarray, y: np.ndarray) -> float:
    w1, b1, w2, b2 = params
    logits = np.maximum(x @ w1.data + b1.data, 0) @ w2.data + b2.data
    return float((logits.argmax(axis=1) == y).mean())


#: name -> factory(params, steps per epoch, epochs) -> (optimizer, scheduler or None)
RECIPES: dict[str, Callable[[list, int, int], tuple[Any, Any]]] = {
    "SGD (lr 0.1, momentum 0.9)": lambda ps, n, e: (numopt.SGD(ps, lr=0.1, momentum=0.9), None),
    "Adam (lr 1e-3)": lambda ps, n, e: (numopt.Adam(ps, lr=1e-3), None),
    "AdamW + OneCycleLR (max lr 1e-2)": lambda ps, n, e: (
        (opt := numopt.AdamW(ps, lr=1e-2, weight_decay=1e-2)),
        numopt.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, epochs=e, steps_per_epoch=n),
    ),
}


def train(recipe: Callable, data: tuple[np.ndarray, ...], epochs: int) -> dict[str, Any]:
    x_train, y_train, x_test, y_test = data
    params = init_params()
    steps_per_epoch = -(-len(y_train) // BATCH)
    opt, sched = recipe(params, steps_per_epoch, epochs)
    losses, accs = [], []
    start = time.perf_counter()
    for epoch in range(epochs):
        order = np.random.default_rng(100 + epoch).permutation(len(y_train))  # same batches for everyone
        total = 0.0
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            total += forward_backward(params, x_train[idx], y_train[idx]) * len(idx)
            opt.step()
            if sched is not None:
                sched.step()
        losses.append(total / len(order))
        accs.append(accuracy(params, x_test, y_test))
    return {"loss": losses, "acc": accs, "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=str(Path(__file__).with_suffix(".png")), help="PNG to write")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per optimizer (default 30, quick 3)")
    parser.add_argument(
        "--quick", action="store_true", default=os.environ.get("NUMOPT_EXAMPLES_QUICK") == "1", help="3 epochs"
    )
    args = parser.parse_args(argv)
    epochs = args.epochs or (3 if args.quick else 30)
    out = Path(args.output)
    data = load_digits()
    print(f"digits: {len(data[1])} training and {len(data[3])} test images, MLP 64-{HIDDEN}-10, {epochs} epochs")

    results = {name: train(recipe, data, epochs) for name, recipe in RECIPES.items()}
    print(f"\n{'optimizer':<34} {'train loss':>10} {'test acc':>9} {'best acc':>9} {'seconds':>8}")
    for name, r in results.items():
        print(f"{name:<34} {r['loss'][-1]:10.4f} {r['acc'][-1]:9.2%} {max(r['acc']):9.2%} {r['seconds']:8.2f}")

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    epochs_axis = np.arange(1, epochs + 1)
    for name, r in results.items():
        ax_loss.semilogy(epochs_axis, r["loss"], marker="o", ms=3, lw=1.6, label=name)
        ax_acc.plot(epochs_axis, 100 * np.array(r["acc"]), marker="o", ms=3, lw=1.6, label=name)
    ax_loss.set_title("training loss (cross-entropy, mean over the epoch)")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss (log scale)")
    ax_acc.set_title("test accuracy")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    fig.suptitle("scikit-learn digits, two-layer NumPy MLP: SGD vs Adam vs AdamW + OneCycleLR", fontsize=13)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print(f"\nwrote {out}")
    return out


if __name__ == "__main__":
    main()
