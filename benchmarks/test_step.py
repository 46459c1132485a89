"""Optimizer step times: numopt vs torch.optim, grouped by algorithm and size.

Run with ``python -m pytest benchmarks --benchmark-json=bench.json`` and turn the
JSON into a markdown table with ``python benchmarks/to_markdown.py bench.json``.
The torch rows run in the same process as numopt's, with two OpenMP pools, which
can slow torch down; for ratios to quote, time each side in its own process
(``-k test_numopt`` and ``-k test_torch``) or use ``python -m numopt bench``,
which does so and alternates the two.
"""

from __future__ import annotations

import pytest

import numopt
from numopt.bench import (
    TORCH_ERRORS,
    TORCH_MODES,
    Workload,
    algorithms,
    numopt_optimizer,
    torch_optimizer,
    torch_params,
    workloads,
)

WORKLOADS = workloads([1_000_000, 10_000_000])  # the flat sizes, the GPT-like and the tiny model of `numopt bench`
ALGORITHMS = algorithms()
ALGOS = [a for a in ALGORITHMS if hasattr(numopt, a)]


def _id(work: Workload) -> str:
    return work.name.replace(" ", "-")


@pytest.mark.parametrize("work", WORKLOADS, ids=_id)
@pytest.mark.parametrize("algo", ALGOS)
def test_numopt(benchmark, algo: str, work: Workload) -> None:
    opt = numopt_optimizer(algo, work)
    benchmark.group = f"{algo}|{work.name}"
    benchmark.extra_info.update(params=work.size, impl="numopt")
    benchmark.pedantic(opt.step, warmup_rounds=2, rounds=15, iterations=1)


@pytest.mark.parametrize("mode", TORCH_MODES)
@pytest.mark.parametrize("work", WORKLOADS, ids=_id)
@pytest.mark.parametrize("algo", ALGOS)
def test_torch(benchmark, algo: str, work: Workload, mode: str) -> None:
    torch = pytest.importorskip("torch", reason="torch is the comparison, not needed for numopt's own figures")
    torch.set_num_threads(numopt.get_num_threads())
    params = torch_params(work.shapes)
    try:
        opt = torch_optimizer(getattr(torch.optim, algo), params, ALGORITHMS[algo][0], mode)
        opt.step()
    except TORCH_ERRORS as e:
        pytest.skip(f"torch {algo} has no {mode} mode here: {e}")
    benchmark.group = f"{algo}|{work.name}"
    benchmark.extra_info.update(params=work.size, impl=f"torch-{mode}")
    benchmark.pedantic(opt.step, warmup_rounds=2, rounds=15, iterations=1)
