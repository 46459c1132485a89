"""AdamW step time on a GPT-shaped torch model: numopt bound to the model vs torch.optim (foreach, fused).

The model is ``numopt.bench.gpt_like_shapes()`` as ``torch.nn.Parameter`` tensors
(148 tensors, about 27.8M float32 parameters) with random gradients. Timed, in one
process, on the same machine and threads:

- ``bind(model, numopt.AdamW)``: numopt's flat buffers are the model's storage; a
  step is the binding check (a data-pointer comparison per tensor) plus one
  compiled pass over the flat buffer;
- ``numopt.AdamW`` on plain ``numopt.Parameter`` arrays (no torch involved), for reference;
- ``torch.optim.AdamW`` with ``foreach=False``, ``foreach=True`` and ``fused=True``.

Run::

    python benchmarks/torch_bind.py            # prints a markdown table
    python benchmarks/torch_bind.py --quick    # shorter timing budget

Times are the median of at least 10 steps after 2 warm-up steps (JIT excluded).
GB/s counts the 28 bytes AdamW moves per float32 parameter (read grad; read and
write param, exp_avg, exp_avg_sq). torch and numba each keep their own thread
pool in this process; both are told the same thread count.
"""

from __future__ import annotations

import argparse
import os
import platform

import numba
import numpy as np
import torch

import numopt
from numopt.bench import Workload, gpt_like_shapes, numopt_optimizer, threading_layer, time_call, torch_params
from numopt.interop.torch import bind

BYTES_PER_PARAM = 28
HP = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.5 s timing budget per row instead of 3 s")
    parser.add_argument("--threads", type=int, default=None, help="threads for torch and numba (default: numba's)")
    args = parser.parse_args(argv)
    threads = args.threads or numopt.get_num_threads()
    numopt.set_num_threads(threads)
    torch.set_num_threads(threads)
    budget = 0.5 if args.quick else 3.0
    work = Workload("gpt-like", gpt_like_shapes())
    shapes, n = work.shapes, work.size

    rows: dict[str, float] = {}

    # numopt bound to the torch tensors (gradients written where backward would put them)
    model = torch.nn.ParameterList(torch_params(shapes, seed=0, scale=0.02, grad_scale=1.0))
    opt = bind(model, numopt.AdamW, **HP)
    assert np.shares_memory(model[0].detach().numpy(), opt.binding.params[0]._flat.data)
    rows["bind(model, numopt.AdamW)"] = time_call(opt.step, min_repeats=10, budget_s=budget)["median_s"]
    assert opt.binding.copies == 0

    # numopt on its own Parameters
    plain_opt = numopt_optimizer("AdamW", work, HP)
    rows["numopt.AdamW (numopt.Parameter, no torch)"] = time_call(plain_opt.step, min_repeats=10, budget_s=budget)[
        "median_s"
    ]
    del plain_opt

    for label, kw in (
        ("torch.optim.AdamW(foreach=False)", {"foreach": False}),
        ("torch.optim.AdamW(foreach=True)", {"foreach": True}),
        ("torch.optim.AdamW(fused=True)", {"fused": True}),
    ):
        params = torch_params(shapes, seed=1, scale=0.02, grad_scale=1.0)
        topt = torch.optim.AdamW(params, **HP, **kw)
        rows[label] = time_call(topt.step, min_repeats=10, budget_s=budget)["median_s"]
        del params, topt

    layer = threading_layer(unset="not started")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; {threads} threads for "
        f"torch {torch.__version__} and numba {numba.__version__} ({layer} layer); "
        f"model: {len(shapes)} tensors, {n / 1e6:.1f}M float32 parameters"
    )
    print()
    print("| optimizer step | ms | GB/s | vs torch fused |")
    print("|---|---:|---:|---:|")
    fused = rows["torch.optim.AdamW(fused=True)"]
    for label, sec in rows.items():
        print(f"| {label} | {1e3 * sec:.2f} | {n * BYTES_PER_PARAM / sec / 1e9:.1f} | {fused / sec:.2f}x |")


if __name__ == "__main__":
    main()
