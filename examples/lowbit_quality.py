"""Do compact optimizer state and bfloat16 parameters cost quality? AdamW on an MLP, several seeds.

    python examples/lowbit_quality.py [OUTPUT.png] [--seeds N] [--epochs N] [--quick]

A three-layer MLP (64 -> 128 -> 512 -> 10, ReLU, softmax; backward pass by hand in
NumPy) on scikit-learn's bundled digits (the split of ``digits_mlp.py``) is
trained with ``numopt.AdamW`` (lr 1e-3 annealed to 0 along a cosine, weight decay
1e-2) once per seed and per variant in :data:`VARIANTS`: float32 state
(``state_dtype=None``), bfloat16 state and block-wise 8-bit state, then bfloat16
parameters and gradients (``ml_dtypes.bfloat16``; the forward and backward passes
in float32 from them) written back with stochastic rounding, with round-to-nearest,
and with stochastic rounding and 8-bit state. Every weight
matrix has at least 4096 elements, so ``state_dtype="int8"`` really quantizes all
of them (only the biases, under ``min_8bit_size``, keep float32 state, as in
bitsandbytes). Within a seed, every variant starts from the same weights and sees
the same mini-batches: the variants differ only in how the optimizer stores its
state.

The printed table gives, per variant over the seeds, the final training loss
(full training set, after the last epoch: mean +- std and min-max), the final
test accuracy, the optimizer's state bytes per parameter (the ``nbytes`` of the
arrays it actually holds, summed over the model, divided by the number of
parameters), how many runs diverged (loss NaN), and whether the variant's mean
final loss lies within the **seed-to-seed spread of fp32 state**, defined as the
min-max of fp32's final losses over the seeds (a diverged run puts the mean
outside). Two finer measures follow: the mean's offset from fp32's mean in units
of fp32's standard deviation over seeds, and the relative difference to fp32's
run with the same seed (mean +- std over seeds). The PNG (``lowbit_quality.png``
next to this script by default) shows the training loss and the test accuracy
per epoch (mean over the seeds, min-max shaded) of every variant side by side,
and each seed's final loss against fp32's spread.

Round-to-nearest loses every update smaller than half a bfloat16 step of the
weight (``2**-9`` of its magnitude): as the cosine schedule takes the learning rate
to 0, its weights stop moving and its loss stays above the others'. A new variant
is one more entry in :data:`VARIANTS`; the bfloat16-parameter variants are left
out, with a note, where ``ml_dtypes`` is not installed. ``benchmarks/lowbit_state.py`` measures the speed and
memory side; this script the quality side.

Needs scikit-learn (``pip install scikit-learn``, part of numopt's test extra).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from digits_mlp import BATCH, load_digits  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

import numopt  # noqa: E402

#: layer widths: every weight matrix >= 4096 elements (64x128, 128x512, 512x10), so int8 state applies to all
WIDTHS = (64, 128, 512, 10)
#: AdamW's settings, the same for every variant
LR = 1e-3
WEIGHT_DECAY = 1e-2


@dataclass(frozen=True)
class Variant:
    """One row of the comparison: how the optimizer and the parameters store their numbers."""

    label: str
    #: extra keyword arguments of ``numopt.AdamW`` (``state_dtype``, ``rounding``, ...)
    options: dict[str, Any] = field(default_factory=dict)
    color: str = "C0"
    #: the parameters' (and gradients') dtype: "float32" or "bfloat16"
    param_dtype: str = "float32"


#: the variants compared, the first one the reference whose seed-to-seed spread the others are held to
VARIANTS: list[Variant] = [
    Variant("fp32 state", {"state_dtype": None}, "C0"),
    Variant("bfloat16 state", {"state_dtype": "bfloat16"}, "C1"),
    Variant("int8 state", {"state_dtype": "int8"}, "C2"),
    Variant("bf16 params, SR", {"rounding": "stochastic"}, "C3", "bfloat16"),
    Variant("bf16 params, nearest", {"rounding": "nearest"}, "C4", "bfloat16"),
    Variant("bf16 params SR, int8", {"rounding": "stochastic", "state_dtype": "int8"}, "C5", "bfloat16"),
]


def _bfloat16() -> Any:
    """``ml_dtypes.bfloat16``, or None where ml_dtypes is not installed."""
    try:
        import ml_dtypes
    except ImportError:
        return None
    return ml_dtypes.bfloat16


if _bfloat16() is None:  # bfloat16 parameters need ml_dtypes
    VARIANTS = [v for v in VARIANTS if v.param_dtype == "float32"]


def init_params(seed: int, dtype: str = "float32") -> list[numopt.Parameter]:
    """He-initialized weights and zero biases, named like a torch model's (``fc1.weight``, ...); the same
    float32 values for every dtype, rounded to bfloat16 for ``dtype="bfloat16"``."""
    rng = np.random.default_rng(seed)
    dt = np.float32 if dtype == "float32" else _bfloat16()
    params = []
    for i, (n_in, n_out) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:]), start=1):
        w = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
        params.append(numopt.Parameter(w.astype(np.float32).astype(dt), name=f"fc{i}.weight"))
        params.append(numopt.Parameter(np.zeros(n_out, dt), name=f"fc{i}.bias"))
    return params


def values(p: numopt.Parameter) -> np.ndarray:
    """The parameter's values in float32 (the passes compute in float32, whatever the storage)."""
    return p.data if p.data.dtype == np.float32 else p.data.astype(np.float32)


def logits_of(params: list[numopt.Parameter], x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The output logits and every layer's input (the activations the backward pass needs)."""
    inputs = [x]
    h = x
    for layer in range(len(params) // 2):
        w, b = params[2 * layer], params[2 * layer + 1]
        h = h @ values(w) + values(b)
        if layer < len(params) // 2 - 1:
            h = np.maximum(h, 0)
            inputs.append(h)
    return h, inputs


def softmax_loss(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and the softmax probabilities."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean()), p


def forward_backward(params: list[numopt.Parameter], x: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy of the batch; sets every parameter's ``.grad``."""
    logits, inputs = logits_of(params, x)
    loss, d = softmax_loss(logits, y)
    d[np.arange(len(y)), y] -= 1
    d /= len(y)
    for layer in reversed(range(len(params) // 2)):
        w, b = params[2 * layer], params[2 * layer + 1]
        a = inputs[layer]
        w.grad = (a.T @ d).astype(w.data.dtype)
        b.grad = d.sum(axis=0).astype(b.data.dtype)
        if layer:
            d = (d @ values(w).T) * (a > 0)
    return loss


def evaluate(params: list[numopt.Parameter], x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on ``(x, y)``."""
    logits, _ = logits_of(params, x)
    loss, p = softmax_loss(logits, y)
    return loss, float((p.argmax(axis=1) == y).mean())


def finite(params: list[numopt.Parameter]) -> bool:
    """Whether every weight is finite (a run that diverged is not)."""
    return all(np.isfinite(values(p)).all() for p in params)


def state_bytes_per_param(opt: Any, params: list[numopt.Parameter]) -> float:
    """The optimizer's state, in bytes per parameter: ``nbytes`` of everything in ``opt.state``."""
    total = sum(getattr(v, "nbytes", 0) for p in params for v in opt.state[p].values())
    return total / sum(p.size for p in params)


def train(variant: Variant, seed: int, data: tuple[np.ndarray, ...], epochs: int) -> dict[str, Any]:
    """One run: per-epoch training loss and test accuracy, and the state bytes per parameter."""
    x_train, y_train, x_test, y_test = data
    params = init_params(seed, variant.param_dtype)
    opt = numopt.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY, **variant.options)
    steps_per_epoch = -(-len(y_train) // BATCH)
    sched = numopt.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)  # to 0 at the last step
    loss, acc = [], []
    start = time.perf_counter()
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(y_train))  # per seed, same for every variant
        with np.errstate(all="ignore"):  # a diverging run overflows quietly; the table reports it
            for i in range(0, len(order), BATCH):
                idx = order[i : i + BATCH]
                forward_backward(params, x_train[idx], y_train[idx])
                opt.step()
                sched.step()
        if not finite(params):  # diverged: NaN from here on, no need to go on
            loss += [float("nan")] * (epochs - epoch)
            acc += [float("nan")] * (epochs - epoch)
            break
        loss.append(evaluate(params, x_train, y_train)[0])
        acc.append(evaluate(params, x_test, y_test)[1])
    return {
        "loss": loss,
        "acc": acc,
        "state_bytes": state_bytes_per_param(opt, params),
        "seconds": time.perf_counter() - start,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Curves stacked over seeds and the final numbers of a variant's runs (a diverged run: NaN)."""
    loss = np.array([r["loss"] for r in runs])
    acc = np.array([r["acc"] for r in runs])
    return {
        "loss": loss,
        "acc": acc,
        "final": loss[:, -1],
        "final_acc": acc[:, -1],
        "state_bytes": runs[0]["state_bytes"],
        "seconds": sum(r["seconds"] for r in runs),
    }


def _mean_std(x: np.ndarray) -> tuple[float, float]:
    return float(np.mean(x)), float(np.std(x, ddof=1)) if len(x) > 1 else 0.0


def verdicts(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant: its final numbers and how they compare with the reference (the first variant).

    The reference's seed-to-seed spread is the min-max of its final training losses over the seeds. A
    variant is ``within`` when its mean final loss over all its seeds lies in that range (a diverged run,
    NaN, puts the mean outside). Loss and accuracy statistics are over the runs that did not diverge;
    ``sd`` is the mean's offset from the reference's mean in units of the reference's std over seeds;
    ``same_seed`` the relative difference of the final loss to the reference run with the same seed
    (mean and std over seeds).
    """
    ref = results[VARIANTS[0].label]["final"]
    ref_mean, ref_std = _mean_std(ref)
    spread = (float(np.min(ref)), float(np.max(ref)))
    out = {}
    for v in VARIANTS:
        r = results[v.label]
        ok = np.isfinite(r["final"])
        f, a = (r["final"][ok], r["final_acc"][ok]) if ok.any() else (np.array([np.nan]), np.array([np.nan]))
        paired = (r["final"] - ref) / ref  # same seed: same initial weights and mini-batches
        mean = float(np.mean(r["final"]))  # NaN if a run diverged
        out[v.label] = {
            "final_loss": _mean_std(f),
            "final_loss_min_max": (float(np.min(f)), float(np.max(f))),
            "test_acc": _mean_std(a),
            "state_bytes_per_param": r["state_bytes"],
            "diverged": int((~ok).sum()),
            "seeds": int(ok.size),
            "within": bool(spread[0] <= mean <= spread[1]),
            "sd": (mean - ref_mean) / ref_std if ref_std > 0 else float("nan"),
            "same_seed": _mean_std(paired),
            "seconds": r["seconds"],
            "per_seed": [float(x) for x in r["final"]],
        }
    out[VARIANTS[0].label]["spread"] = spread
    return out


def compare(results: dict[str, dict[str, Any]]) -> list[str]:
    """The printed table (see :func:`verdicts` for the definitions)."""
    checked = verdicts(results)
    ref = checked[VARIANTS[0].label]
    lines = [
        f"{'variant':<21} {'final train loss (mean +- std)':>31} {'min - max':>19} {'test acc':>16} "
        f"{'state B/param':>13} {'diverged':>8}  {'mean vs fp32 spread':<19} {'vs fp32, same seed':>19} {'seconds':>7}"
    ]
    for v in VARIANTS:
        c = checked[v.label]
        (f_mean, f_std), (f_min, f_max), (a_mean, a_std) = c["final_loss"], c["final_loss_min_max"], c["test_acc"]
        if v.label == VARIANTS[0].label:
            verdict = "(reference)"
        elif c["diverged"]:
            verdict = "OUTSIDE (diverged)"
        else:
            verdict = f"{'within' if c['within'] else 'OUTSIDE'} ({c['sd']:+.2f} sd)"
        paired = "n/a" if c["diverged"] else f"{100 * c['same_seed'][0]:+7.2f}% +- {100 * c['same_seed'][1]:5.2f}%"
        lines.append(
            f"{v.label:<21} {f_mean:20.5f} +- {f_std:8.5f} {f_min:9.5f} - {f_max:7.5f} {a_mean:8.2%} +- {a_std:5.2%} "
            f"{c['state_bytes_per_param']:13.2f} {c['diverged']:4d}/{c['seeds']:<3d}  {verdict:<19} {paired:>19} "
            f"{c['seconds']:7.1f}"
        )
    lo, hi = ref["spread"]
    lines.append(
        f"fp32 spread: min-max of {VARIANTS[0].label}'s final losses over the seeds, {lo:.5f} - {hi:.5f}; "
        f"sd: a mean's offset from its mean ({ref['final_loss'][0]:.5f}) in units of its seed-to-seed std "
        f"({ref['final_loss'][1]:.5f}); same seed: the final loss's relative difference to fp32's run with the "
        "same seed, mean +- std over seeds"
    )
    lines.append("final training loss per seed:")
    for v in VARIANTS:
        lines.append(f"  {v.label:<21} " + " ".join(f"{x:9.5f}" for x in checked[v.label]["per_seed"]))
    return lines


def plot(results: dict[str, dict[str, Any]], out: Path, epochs: int, n_seeds: int) -> None:
    fig, (ax_loss, ax_acc, ax_final) = plt.subplots(1, 3, figsize=(16, 4.8), width_ratios=[1.2, 1.2, 0.8])
    epochs_axis = np.arange(1, epochs + 1)
    for v in VARIANTS:
        r = results[v.label]
        ok = np.isfinite(r["final"])
        label = v.label if ok.all() else f"{v.label} ({(~ok).sum()}/{ok.size} runs diverged: not shown)"
        for ax, curves, scale in ((ax_loss, r["loss"][ok], 1.0), (ax_acc, r["acc"][ok], 100.0)):
            if not len(curves):
                ax.plot([], [], color=v.color, label=label)
                continue
            ax.plot(epochs_axis, scale * curves.mean(axis=0), color=v.color, lw=1.6, label=label)
            ax.fill_between(
                epochs_axis, scale * curves.min(axis=0), scale * curves.max(axis=0), color=v.color, alpha=0.2, lw=0
            )
    ref = results[VARIANTS[0].label]["final"]
    ax_final.axhspan(np.min(ref), np.max(ref), color=VARIANTS[0].color, alpha=0.15, label="fp32 spread (min-max)")
    for i, v in enumerate(VARIANTS):
        f = results[v.label]["final"]
        ok = np.isfinite(f)
        ax_final.scatter(np.full(ok.sum(), i), f[ok], color=v.color, s=18, alpha=0.8)
        if ok.all():
            ax_final.hlines(f.mean(), i - 0.25, i + 0.25, color=v.color, lw=2)
        else:
            ax_final.annotate(
                f"{(~ok).sum()} diverged",
                (i, 1.0),
                xycoords=("data", "axes fraction"),
                ha="center",
                va="top",
                color=v.color,
                fontsize=9,
            )
    ax_final.set_xticks(range(len(VARIANTS)), [v.label for v in VARIANTS], rotation=30, ha="right")
    ax_final.set_xlim(-0.6, len(VARIANTS) - 0.4)
    ax_final.set_title("final training loss per seed (bar: mean)")
    ax_final.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    ax_loss.set_yscale("log")
    ax_loss.set_title(f"training loss (full training set; mean of {n_seeds} seeds, min-max shaded)")
    ax_loss.set_ylabel("cross-entropy (log scale)")
    ax_acc.set_title("test accuracy")
    ax_acc.set_ylabel("accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=9)
    for ax in (ax_loss, ax_acc, ax_final):
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(
        f"AdamW (lr {LR:g}, weight decay {WEIGHT_DECAY:g}) on digits, MLP {'-'.join(map(str, WIDTHS))}: "
        "float32 vs compact optimizer state and bfloat16 parameters",
        fontsize=12,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def one_blas_thread() -> contextlib.AbstractContextManager:
    """Single-threaded BLAS (threadpoolctl comes with scikit-learn): for batches of 64, threads only add overhead."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def run(seeds: int, epochs: int, data: tuple[np.ndarray, ...] | None = None) -> dict[str, dict[str, Any]]:
    """Every variant over ``seeds`` seeds (seed-major, so the variants see the machine alike)."""
    data = load_digits() if data is None else data
    runs: dict[str, list] = {v.label: [] for v in VARIANTS}
    for seed in range(seeds):
        for v in VARIANTS:
            runs[v.label].append(train(v, seed, data, epochs))
    return {label: summarize(r) for label, r in runs.items()}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=str(Path(__file__).with_suffix(".png")), help="PNG to write")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per variant (default 5, quick 2)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 20, quick 3)")
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("NUMOPT_EXAMPLES_QUICK") == "1",
        help="2 seeds, 3 epochs",
    )
    args = parser.parse_args(argv)
    seeds = args.seeds or (2 if args.quick else 5)
    epochs = args.epochs or (3 if args.quick else 20)
    out = Path(args.output)
    data = load_digits()
    shapes = [(a, b) for a, b in zip(WIDTHS[:-1], WIDTHS[1:])]
    n_params = sum(a * b + b for a, b in shapes)
    print(
        f"digits: {len(data[1])} training and {len(data[3])} test images; MLP {'-'.join(map(str, WIDTHS))} "
        f"({n_params} parameters, weight matrices of {', '.join(str(a * b) for a, b in shapes)} elements); "
        f"AdamW lr {LR:g}, weight decay {WEIGHT_DECAY:g}, batch {BATCH}, {epochs} epochs, {seeds} seeds"
    )
    if _bfloat16() is None:
        print("ml_dtypes is not installed: the bfloat16-parameter variants are left out (pip install ml_dtypes)")
    with one_blas_thread():
        results = run(seeds, epochs, data)
    print()
    for line in compare(results):
        print(line)
    plot(results, out, epochs, seeds)
    print(f"\nwrote {out}")
    return out


if __name__ == "__main__":
    main()
