"""pytest-benchmark suite (not part of the normal test run: `python -m pytest benchmarks`).

Warm-up rounds exclude JIT compilation; groups are "<optimizer>|<workload>" so
numopt and the torch reference land side by side. torch runs in this same
process here; `python -m numopt bench` times it in its own process instead.
"""
