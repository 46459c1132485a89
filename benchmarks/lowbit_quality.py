"""Compact optimizer state (``state_dtype``): training quality against float32 state, as a record.

Run from the repository root: ``PYTHONPATH=$PWD python benchmarks/lowbit_quality.py [--seeds 5] [--epochs 20]
[--json OUT.json]``.

The measurement is ``examples/lowbit_quality.py``'s (its model, data, variants and definitions, imported
from there, not copied): AdamW on a digits MLP per seed and per ``state_dtype``, the final training loss
against the seed-to-seed spread of float32 state. This prints the same table without the plot and, with
``--json``, writes per variant the final loss (mean, std, min, max, per seed), test accuracy, state bytes
per parameter, diverged runs and the verdict, for an issue note or a comparison between versions.
``benchmarks/lowbit_state.py`` measures the memory and speed side.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import lowbit_quality  # noqa: E402


def _finite(x: Any) -> Any:
    """``x`` with NaN (a diverged run) as None, tuples as lists and NumPy scalars as floats: strict JSON."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (bool, int, str)) or x is None:
        return x
    x = float(x)
    return x if math.isfinite(x) else None


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--json", default=None, help="write the numbers here")
    args = ap.parse_args(argv)
    with lowbit_quality.one_blas_thread():
        results = lowbit_quality.run(args.seeds, args.epochs)
    print("\n".join(lowbit_quality.compare(results)))
    record = {
        "model": "MLP " + "-".join(map(str, lowbit_quality.WIDTHS)),
        "optimizer": f"AdamW lr {lowbit_quality.LR:g} (cosine to 0), weight decay {lowbit_quality.WEIGHT_DECAY:g}",
        "seeds": args.seeds,
        "epochs": args.epochs,
        "variants": lowbit_quality.verdicts(results),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(_finite(record), indent=1))
        print(f"wrote {args.json}")
    return record


if __name__ == "__main__":
    main()
