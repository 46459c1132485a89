"""``numba.cuda`` twins of the CPU kernels, for parameters that live on a GPU.

Each module mirrors the CPU module of the same name: every kernel takes the
same arguments in the same order (device arrays instead of host arrays) and
does the same arithmetic per element, as a grid-stride loop with one pass over
memory. :data:`KERNELS` maps each CPU kernel (by qualified name) to its twin;
a device flat buffer uses it to run an optimizer's ``_update`` on the GPU
unchanged (see ``numopt._cuda_flat``).

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

from . import adadelta, adagrad, adam, adamax, asgd, averaging, clip, memory, nadam, radam, rmsprop, rprop, sgd
from ._launch import KERNELS, SIMULATOR, Launcher, kernel_key, launch_config

__all__ = [
    "KERNELS",
    "SIMULATOR",
    "Launcher",
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "asgd",
    "averaging",
    "clip",
    "kernel_key",
    "launch_config",
    "memory",
    "nadam",
    "radam",
    "rmsprop",
    "rprop",
    "sgd",
]
