"""Learning rate and momentum, the classic teaching figures, drawn with numopt.SGD.

    python examples/lr_and_momentum.py [OUTPUT.png] [--quick]

Four panels (the PNG defaults to ``lr_and_momentum.png`` next to this script):

1. SGD on y = 4x^2 from x = 2 for learning rates 0.01 to 0.5. Each step
   multiplies x by (1 - 8 lr): the loss shrinks for lr < 0.25, and grows
   (diverges) above it.
2. The weights an exponentially weighted average gives to past values,
   (1 - beta) beta^k at lag k, for beta = 0.98, 0.95, 0.9, 0.8: about the last
   1 / (1 - beta) values count.
3. Those averages over a noisy series, computed by SGD's momentum buffer
   (lr = 0, dampening = momentum = beta: buf <- beta buf + (1 - beta) g).
4. SGD on y = 4x^2 with lr = 0.01 without momentum, with momentum 0.63 and
   with 0.9: 0.9 overshoots and oscillates, 0.63 converges fastest.

A summary table is printed. ``--quick`` (or NUMOPT_EXAMPLES_QUICK=1) runs fewer steps.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import numopt  # noqa: E402

LRS = [0.01, 0.04, 0.1, 0.2, 0.25, 0.27, 0.35, 0.5]
BETAS = [0.98, 0.95, 0.9, 0.8]
MOMENTA = [0.0, 0.63, 0.9]


def sgd_on_parabola(lr: float, steps: int, momentum: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """x and the loss 4 x^2 at every step of SGD from x = 2 (float64)."""
    x = numopt.Parameter(np.array([2.0]))
    opt = numopt.SGD([x], lr=lr, momentum=momentum)
    xs = [2.0]
    for _ in range(steps):
        x.grad = 8.0 * x.data  # d/dx 4x^2
        opt.step()
        xs.append(float(x.data[0]))
    path = np.array(xs)
    return path, 4.0 * path**2


def ewma_with_momentum_buffer(series: np.ndarray, beta: float) -> np.ndarray:
    """Exponentially weighted average of ``series``, read from SGD's momentum buffer (lr = 0)."""
    p = numopt.Parameter(np.zeros(1))
    opt = numopt.SGD([p], lr=0.0, momentum=beta, dampening=beta)
    out = np.empty_like(series)
    for t, value in enumerate(series):
        p.grad = np.array([value])
        opt.step()  # buf <- beta * buf + (1 - beta) * value (the first step copies the value)
        out[t] = opt.state[p]["momentum_buffer"][0]
    return out


def steps_to(path: np.ndarray, tol: float) -> int | None:
    """The first step after which |x| stays below ``tol``."""
    above = np.flatnonzero(np.abs(path) >= tol)
    if above.size == 0:
        return 0
    return int(above[-1] + 1) if above[-1] + 1 < path.size else None


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=str(Path(__file__).with_suffix(".png")), help="PNG to write")
    parser.add_argument(
        "--quick", action="store_true", default=os.environ.get("NUMOPT_EXAMPLES_QUICK") == "1", help="fewer steps"
    )
    args = parser.parse_args(argv)
    out = Path(args.output)
    lr_steps = 20 if args.quick else 30
    mom_steps = 80 if args.quick else 150
    series_len = 120 if args.quick else 250

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))

    # 1. learning rates
    ax = axes[0, 0]
    print(f"SGD on y = 4x^2 from x = 2, {lr_steps} steps")
    print(f"{'lr':>6} {'factor 1-8lr':>13} {'final loss':>12}  outcome")
    for i, lr in enumerate(LRS):
        _, loss = sgd_on_parabola(lr, lr_steps)
        outcome = "diverges" if loss[-1] > loss[0] * 1.001 else ("converges" if loss[-1] < loss[0] else "oscillates")
        ax.semilogy(
            loss,
            color=plt.get_cmap("tab10")(i),
            lw=1.8,
            ls="--" if outcome == "diverges" else "-",
            marker="o" if lr == 0.25 else None,
            ms=3,
            label=f"lr={lr}: {outcome}",
        )
        print(f"{lr:6.2f} {1 - 8 * lr:13.2f} {loss[-1]:12.3g}  {outcome}")
    ax.set_ylim(1e-12, 1e14)
    ax.set_title("1. SGD on $y=4x^2$ from $x=2$: lr above 0.25 diverges")
    ax.set_xlabel("step")
    ax.set_ylabel("loss $4x^2$ (log scale)")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)

    # 2. the weights of an exponentially weighted average
    ax = axes[0, 1]
    lags = np.arange(100)
    print("\nexponentially weighted average: weight (1-beta) beta^k of the value k steps back")
    print(f"{'beta':>6} {'1/(1-beta)':>11} {'weight of last 1/(1-beta)':>26}")
    for beta in BETAS:
        w = (1 - beta) * beta**lags
        window = 1 / (1 - beta)
        ax.plot(lags, w, lw=1.8, label=f"beta={beta} (about {window:.0f} values)")
        print(f"{beta:6.2f} {window:11.0f} {1 - beta ** round(window):26.2f}")
    ax.set_title("2. Weights of an exponentially weighted average")
    ax.set_xlabel("lag k (steps back)")
    ax.set_ylabel("weight $(1-\\beta)\\,\\beta^k$")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    # 3. those averages over a noisy series, from SGD's momentum buffer
    ax = axes[1, 0]
    rng = np.random.default_rng(0)
    t = np.arange(series_len)
    series = np.sin(t / 25.0) + 0.4 * rng.standard_normal(series_len)
    ax.plot(t, series, ".", color="0.6", ms=3, label="noisy values")
    for beta in BETAS:
        ax.plot(t, ewma_with_momentum_buffer(series, beta), lw=1.8, label=f"beta={beta}")
    ax.set_title("3. The averages over a noisy series (SGD's momentum buffer)")
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    # 4. momentum
    ax = axes[1, 1]
    print(f"\nSGD on y = 4x^2, lr = 0.01, {mom_steps} steps")
    print(f"{'momentum':>8} {'steps to |x| < 1e-3':>20} {'final |x|':>11} {'sign changes':>13}")
    for momentum, color in zip(MOMENTA, ("tab:gray", "tab:green", "tab:red")):
        path, _ = sgd_on_parabola(0.01, mom_steps, momentum)
        crossings = int(np.sum(np.diff(np.sign(path)) != 0))
        reach = steps_to(path, 1e-3)
        label = "no momentum" if momentum == 0 else f"momentum {momentum}"
        ax.plot(path, color=color, lw=1.8, label=label)
        print(f"{momentum:8.2f} {reach if reach is not None else 'not yet':>20} {abs(path[-1]):11.2g} {crossings:13d}")
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_title("4. lr=0.01: momentum 0.9 oscillates, 0.63 converges fast")
    ax.set_xlabel("step")
    ax.set_ylabel("x")
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3)

    fig.suptitle("Learning rate and momentum with numopt.SGD", fontsize=14)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print(f"\nwrote {out}")
    return out


if __name__ == "__main__":
    main()
