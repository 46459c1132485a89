"""Optimizers across processes, over MPI (``mpi4py``): ``pip install 'numopt[mpi]'``.

- :class:`DistributedOptimizer` wraps any optimizer for data parallelism: the
  gradients are all-reduced (averaged) across ranks before each local step.
- :class:`ZeroRedundancyOptimizer` (ZeRO stage 1) shards the optimizer state:
  each rank keeps and updates the state of one contiguous shard of every flat
  buffer, and the parameters are all-gathered after the step.
- :func:`broadcast_parameters` copies one rank's parameter values to all, for start-up.

Launch with ``mpiexec -n 4 python train.py`` (or ``srun`` under Slurm).
"""

from __future__ import annotations

from .data_parallel import DistributedOptimizer, broadcast_parameters
from .zero import ZeroRedundancyOptimizer

__all__ = ["DistributedOptimizer", "ZeroRedundancyOptimizer", "broadcast_parameters"]
