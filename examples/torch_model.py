"""Train a PyTorch model with numopt: bind + numopt.AdamW + OneCycleLR, side by side with torch.optim.

    python examples/torch_model.py [OUTPUT.png] [--steps N] [--quick]

A torch MLP (2 -> 64 -> 64 -> 1, tanh) learns the surface y = sin(3 x1) cos(2 x2)
from noisy samples. ``numopt.interop.torch.bind`` makes the model's parameters
and gradients views of numopt's flat buffers: torch computes the forward and
backward passes, the gradients land in numopt's buffer, and ``numopt.AdamW``
updates the weights in place, driven by ``numopt.lr_scheduler.OneCycleLR``.
A twin model starting from the same weights trains with ``torch.optim.AdamW``
and torch's ``OneCycleLR`` on the same batches. The summary compares the two;
the PNG (``torch_model.png`` next to this script by default) shows both loss
curves with the learning rate, the target surface and the bound model's fit.

Needs torch (CPU build is enough).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import numopt  # noqa: E402
from numopt.interop.torch import bind  # noqa: E402

MAX_LR = 1e-2
BATCH = 128


def target(x: torch.Tensor) -> torch.Tensor:
    return (torch.sin(3 * x[:, 0]) * torch.cos(2 * x[:, 1]))[:, None]


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(2, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1)
    )


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=str(Path(__file__).with_suffix(".png")), help="PNG to write")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 1500, quick 150)")
    parser.add_argument(
        "--quick", action="store_true", default=os.environ.get("NUMOPT_EXAMPLES_QUICK") == "1", help="fewer steps"
    )
    args = parser.parse_args(argv)
    steps = args.steps or (150 if args.quick else 1500)
    out = Path(args.output)

    g = torch.Generator().manual_seed(1)
    x_train = torch.rand(4096, 2, generator=g) * 4 - 2
    y_train = target(x_train) + 0.05 * torch.randn(4096, 1, generator=g)
    x_test = torch.rand(1024, 2, generator=g) * 4 - 2
    y_test = target(x_test)
    batches = [torch.randint(0, 4096, (BATCH,), generator=g) for _ in range(steps)]

    ours, ref = make_model(), make_model()
    opt = bind(ours, numopt.AdamW, lr=MAX_LR, weight_decay=1e-4)
    sched = numopt.lr_scheduler.OneCycleLR(opt, max_lr=MAX_LR, total_steps=steps)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=MAX_LR, weight_decay=1e-4)
    ref_sched = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=MAX_LR, total_steps=steps)

    history: dict[str, list[float]] = {"numopt": [], "torch": [], "lr": []}
    step_time = {"numopt": 0.0, "torch": 0.0}
    for idx in batches:
        x, y = x_train[idx], y_train[idx]
        history["lr"].append(opt.param_groups[0]["lr"])
        for key, model, o, s in (("numopt", ours, opt, sched), ("torch", ref, ref_opt, ref_sched)):
            o.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()  # for `ours`, the gradients are written into numopt's flat buffer
            t0 = time.perf_counter()
            o.step()
            step_time[key] += time.perf_counter() - t0
            s.step()
            history[key].append(loss.item())

    with torch.no_grad():
        test = {
            k: float(torch.nn.functional.mse_loss(m(x_test), y_test)) for k, m in (("numopt", ours), ("torch", ref))
        }
    with torch.no_grad():
        diff = max(float((a - b).abs().max()) for a, b in zip(ours.parameters(), ref.parameters()))
    flat = opt.binding.params[0]._flat
    shares = np.shares_memory(ours[0].weight.detach().numpy(), flat.data)
    print(f"MLP 2-64-64-1 ({sum(p.numel() for p in ours.parameters())} parameters), {steps} steps of {BATCH} samples")
    print(f"{'optimizer':<40} {'train loss (last 50)':>20} {'test MSE':>10} {'step ms':>8}")
    for key, label in (("numopt", "bind + numopt.AdamW + OneCycleLR"), ("torch", "torch.optim.AdamW + OneCycleLR")):
        print(f"{label:<40} {np.mean(history[key][-50:]):20.5f} {test[key]:10.5f} {1e3 * step_time[key] / steps:8.3f}")
    print(f"largest weight difference between the two runs: {diff:.2e}")
    print(f"weights live in numopt's flat buffer: {shares}; tensors copied after bind: {opt.binding.copies}")

    fig = plt.figure(figsize=(15, 4.6))
    ax = fig.add_subplot(1, 3, 1)
    smooth = np.ones(20) / 20
    for key, style in (("numopt", "-"), ("torch", "--")):
        ax.semilogy(np.convolve(history[key], smooth, mode="valid"), ls=style, lw=1.8, label=f"{key} (20-step mean)")
    ax.set_xlabel("step")
    ax.set_ylabel("training MSE (log scale)")
    ax.set_title("bound numopt.AdamW vs torch.optim.AdamW")
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(history["lr"], color="tab:gray", lw=1, ls=":")
    twin.set_ylabel("learning rate (OneCycleLR, dotted)", color="tab:gray")
    ax.legend(loc="upper right", fontsize=9)

    grid = torch.linspace(-2, 2, 120)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    with torch.no_grad():
        surfaces = [("target: sin(3 x1) cos(2 x2)", target(pts)), ("bound torch model after training", ours(pts))]
    for k, (title, z) in enumerate(surfaces):
        axk = fig.add_subplot(1, 3, 2 + k)
        im = axk.imshow(
            z.reshape(120, 120).numpy(), extent=(-2, 2, -2, 2), origin="lower", cmap="RdBu_r", vmin=-1, vmax=1
        )
        axk.set_title(title)
        axk.set_xlabel("x1")
        axk.set_ylabel("x2")
        fig.colorbar(im, ax=axk, fraction=0.046)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print(f"\nwrote {out}")
    return out


if __name__ == "__main__":
    main()
