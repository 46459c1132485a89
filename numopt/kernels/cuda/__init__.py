"""``numba.cuda`` kernels, for parameters that live on a GPU.

The optimizers' update rules need nothing here: their CUDA loops are generated
from the same rule bodies as the CPU loops (``numopt.kernels._generate``;
``kernel.rule.cuda()``). This package holds the launch machinery those loops
use (:mod:`._launch`), device-memory helpers (:mod:`.memory`) and the CUDA
versions of the kernels that are not elementwise update rules (gradient norms,
:mod:`.clip`; the per-parameter and global reductions of Lamb, LARS and Prodigy,
:mod:`.segments`), registered in :data:`KERNELS` by their CPU twin's name.

Importing this package imports ``numba.cuda`` (provided by the ``numba-cuda``
package, or the CUDA target still built into Numba); numopt imports it only
when a CUDA array shows up. Set ``NUMBA_ENABLE_CUDASIM=1`` before Numba is
imported to run everything in Numba's CUDA simulator, without a GPU.

Differences from the CPU kernels that can show in results: NVVM contracts
``a * b + c`` into fused multiply-adds, so on a real GPU results may differ
from the CPU (and from torch on the CPU) in the last bits, within the parity
tolerances; the simulator runs the Python body and matches the CPU exactly.
"""

from __future__ import annotations

from . import clip, memory, segments
from ._launch import KERNELS, SIMULATOR, Launcher, kernel_key, launch_config

__all__ = [
    "KERNELS",
    "SIMULATOR",
    "Launcher",
    "clip",
    "kernel_key",
    "launch_config",
    "memory",
    "segments",
]
