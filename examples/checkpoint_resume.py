"""Save a checkpoint mid-run, resume it in a new process, and finish on exactly the same weights.

    python examples/checkpoint_resume.py [OUTPUT.png] [--steps N] [--quick]

A softmax regression (NumPy forward and gradient) trains with numopt.AdamW and a
CosineAnnealingLR schedule. The script trains once without stopping. Then it
trains again, and at half-way saves a checkpoint with ``numopt.save``: the
weights by name, the optimizer's and the scheduler's state dicts and the loss so
far. A *new Python process* (this script with ``--resume``) rebuilds the model,
optimizer and scheduler from nothing, loads the checkpoint, trains the second
half and writes its result. The summary compares the resumed weights with the
uninterrupted run's (they are bit-identical: numopt is deterministic and its state
dicts hold everything a step depends on); the PNG (``checkpoint_resume.png`` next
to this script by default) shows both loss curves and the moment of the save.

The mini-batch of step t is drawn from a generator seeded with t, so the new
process sees the same data without the random state being saved.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import numopt  # noqa: E402

FEATURES, CLASSES, BATCH = 20, 5, 128
TRUE_W = np.random.default_rng(42).standard_normal((FEATURES, CLASSES)).astype(np.float32)


def batch(step: int) -> tuple[np.ndarray, np.ndarray]:
    """The mini-batch of ``step``: the same in any process."""
    rng = np.random.default_rng([7, step])
    x = rng.standard_normal((BATCH, FEATURES)).astype(np.float32)
    logits = x @ TRUE_W + 0.5 * rng.gumbel(size=(BATCH, CLASSES)).astype(np.float32)  # noisy labels
    return x, logits.argmax(axis=1)


def loss_and_grads(params: list[numopt.Parameter], step: int) -> float:
    """Mean cross-entropy on the step's batch; sets the gradients."""
    w, b = params
    x, y = batch(step)
    z = x @ w.data + b.data
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    loss = float(-np.log(p[np.arange(BATCH), y]).mean())
    p[np.arange(BATCH), y] -= 1
    p /= BATCH
    w.grad = x.T @ p
    b.grad = p.sum(axis=0)
    return loss


def build(total_steps: int) -> tuple[list[numopt.Parameter], Any, Any]:
    """Fresh model, optimizer and schedule (what a new process starts from)."""
    params = [
        numopt.Parameter(np.zeros((FEATURES, CLASSES), np.float32), name="linear.weight"),
        numopt.Parameter(np.zeros(CLASSES, np.float32), name="linear.bias"),
    ]
    opt = numopt.AdamW(params, lr=0.05, weight_decay=0.01)
    sched = numopt.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps, eta_min=1e-3)
    return params, opt, sched


def train(params: list, opt: Any, sched: Any, steps: range) -> list[float]:
    losses = []
    for t in steps:
        losses.append(loss_and_grads(params, t))
        opt.step()
        sched.step()
    return losses


def resume(checkpoint: Path, result: Path) -> None:
    """The new process: rebuild everything, load the checkpoint, finish the run, write the result."""
    ckpt = numopt.load(checkpoint)
    total = int(ckpt["total_steps"])
    params, opt, sched = build(total)
    for p in params:
        p.data[...] = ckpt["params"][p.name]
    opt.load_state_dict(ckpt["optimizer"], match="name")
    sched.load_state_dict(ckpt["scheduler"])
    losses = train(params, opt, sched, range(int(ckpt["step"]), total))
    numopt.save({"params": {p.name: p.data for p in params}, "losses": np.array(losses), "pid": os.getpid()}, result)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=str(Path(__file__).with_suffix(".png")), help="PNG to write")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 600, quick 60)")
    parser.add_argument(
        "--quick", action="store_true", default=os.environ.get("NUMOPT_EXAMPLES_QUICK") == "1", help="fewer steps"
    )
    parser.add_argument("--resume", nargs=2, metavar=("CHECKPOINT", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.resume:
        resume(Path(args.resume[0]), Path(args.resume[1]))
        return Path(args.resume[1])
    total = args.steps or (60 if args.quick else 600)
    half = total // 2
    out = Path(args.output)

    # 1. the reference: no interruption
    params, opt, sched = build(total)
    straight_losses = train(params, opt, sched, range(total))
    straight = {p.name: p.data.copy() for p in params}

    # 2. the same run, saved at half-way ...
    params, opt, sched = build(total)
    first_losses = train(params, opt, sched, range(half))
    with tempfile.TemporaryDirectory() as tmp:
        ckpt_path, result_path = Path(tmp) / "half.npt", Path(tmp) / "resumed.npt"
        numopt.save(
            {
                "params": {p.name: p.data for p in params},
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "step": half,
                "total_steps": total,
            },
            ckpt_path,
        )
        size = ckpt_path.stat().st_size
        del params, opt, sched  # nothing of this run is used below
        # ... and finished by a new process
        subprocess.run([sys.executable, __file__, "--resume", str(ckpt_path), str(result_path)], check=True)
        result = numopt.load(result_path)
    resumed_losses = first_losses + list(result["losses"])

    diff = max(float(np.abs(result["params"][k] - v).max()) for k, v in straight.items())
    identical = all(np.array_equal(result["params"][k], v) for k, v in straight.items())
    print(f"softmax regression ({FEATURES}x{CLASSES}), AdamW + CosineAnnealingLR, {total} steps")
    print(f"checkpoint at step {half}: {size} bytes (weights, optimizer and scheduler state)")
    print(f"resumed in a new process (pid {int(result['pid'])}, this one is {os.getpid()})")
    print(f"final loss: uninterrupted {straight_losses[-1]:.6f}, resumed {resumed_losses[-1]:.6f}")
    print(f"largest weight difference: {diff:.3g} -> {'bit-identical' if identical else 'DIFFERENT'}")

    fig, ax = plt.subplots(figsize=(9, 4.8))
    steps = np.arange(total)
    ax.plot(steps, straight_losses, color="tab:blue", lw=3, alpha=0.5, label="uninterrupted run")
    ax.plot(steps[:half], first_losses, color="tab:orange", lw=1.2, label="first process (saves at half-way)")
    ax.plot(steps[half:], result["losses"], color="tab:green", lw=1.2, ls="--", label="new process (loads and goes on)")
    ax.axvline(half, color="0.3", ls=":", lw=1.5)
    ax.text(half, max(straight_losses) * 0.95, "  numopt.save / new process / numopt.load", fontsize=9, va="top")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (log scale)")
    verdict = "bit-identical final weights" if identical else f"weights differ by {diff:.3g}"
    ax.set_title(f"Checkpoint at step {half}, resumed in a new process: {verdict}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(0.06, 0.98))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print(f"\nwrote {out}")
    if not identical:
        raise SystemExit("the resumed run did not reproduce the uninterrupted one")
    return out


if __name__ == "__main__":
    main()
