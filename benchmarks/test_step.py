"""Optimizer step times: numopt vs torch.optim, grouped by algorithm and size.

Run with ``python -m pytest benchmarks --benchmark-json=bench.json`` and turn the
JSON into a markdown table with ``python benchmarks/to_markdown.py bench.json``.
The torch rows run in the same process as numopt's, with two OpenMP pools, which
can slow torch down; for ratios to quote, time each side in its own process
(``-k test_numopt`` and ``-k test_torch``) or use ``python -m numopt bench``,
which does so and alternates the two.
"""

from __future__ import annotations

import numpy as np
import pytest

import numopt
from numopt.bench import ALGORITHMS, TINY_SHAPES, Workload, gpt_like_shapes

WORKLOADS = [
    Workload("flat-1e6", [(1_000_000,)]),
    Workload("flat-1e7", [(10_000_000,)]),
    Workload("gpt-like", gpt_like_shapes()),
    Workload("tiny", TINY_SHAPES),
]
ALGOS = [a for a in ALGORITHMS if hasattr(numopt, a)]


def _numopt_opt(algo: str, work: Workload):
    rng = np.random.default_rng(0)
    params = [numopt.Parameter(rng.standard_normal(s).astype(np.float32) * 0.01) for s in work.shapes]
    opt = getattr(numopt, algo)(params, **ALGORITHMS[algo][0])
    for p in params:
        p.grad = rng.standard_normal(p.shape).astype(np.float32) * 0.01
    return opt


@pytest.mark.parametrize("work", WORKLOADS, ids=lambda w: w.name)
@pytest.mark.parametrize("algo", ALGOS)
def test_numopt(benchmark, algo: str, work: Workload) -> None:
    opt = _numopt_opt(algo, work)
    benchmark.group = f"{algo}|{work.name}"
    benchmark.extra_info.update(params=work.size, impl="numopt")
    benchmark.pedantic(opt.step, warmup_rounds=2, rounds=15, iterations=1)


@pytest.mark.parametrize("mode", ["default", "foreach", "fused"])
@pytest.mark.parametrize("work", WORKLOADS, ids=lambda w: w.name)
@pytest.mark.parametrize("algo", ALGOS)
def test_torch(benchmark, algo: str, work: Workload, mode: str) -> None:
    torch = pytest.importorskip("torch", reason="torch is the comparison, not needed for numopt's own figures")
    torch.set_num_threads(numopt.get_num_threads())
    params = [torch.randn(*s) * 0.01 for s in work.shapes]
    for p in params:
        p.requires_grad_(True)
        p.grad = torch.randn_like(p) * 0.01
    kw = dict(ALGORITHMS[algo][0])
    if mode != "default":
        kw[mode] = True
    try:
        opt = getattr(torch.optim, algo)(params, **kw)
        opt.step()
    except (RuntimeError, TypeError, ValueError) as e:
        pytest.skip(f"torch {algo} has no {mode} mode here: {e}")
    benchmark.group = f"{algo}|{work.name}"
    benchmark.extra_info.update(params=work.size, impl=f"torch-{mode}")
    benchmark.pedantic(opt.step, warmup_rounds=2, rounds=15, iterations=1)
