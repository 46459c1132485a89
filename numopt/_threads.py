"""Which Numba threading layer numopt's kernels run on, chosen deliberately.

Numba picks its layer once per process, at the first parallel kernel call. Its
default order prefers ``omp`` (GNU OpenMP), which is the fastest here when
numopt has the process to itself. But PyTorch ships its own copy of libgomp:
in a process that also runs torch there are then two OpenMP runtimes, each
with a pool sized for the whole machine, and each pool keeps its threads
spinning for a while after every parallel region (libgomp's default wait
policy). The two pools then take the cores from each other: measured here, a
numopt step right after torch work ran 1.5-2x slower on ``omp``, and torch's
own fused step slowed likewise.

The policy, applied at import and by ``numopt.interop.torch.bind``:

* ``NUMBA_THREADING_LAYER`` set by the user always wins;
* else ``NUMOPT_THREADING_LAYER`` if set;
* else, when torch is already imported, ``tbb`` if the TBB runtime is
  installed (``pip install tbb``: composable, no spinning pools), otherwise
  ``workqueue`` (Numba's own pool, no OpenMP; not safe for kernels called from
  several Python threads at once);
* else Numba's default (``omp`` where available).

Too late to change once a parallel kernel has run: ``numopt.threading_layer()``
tells which layer is in use.
"""

from __future__ import annotations

import os
import sys

import numba

__all__ = ["choose_threading_layer", "threading_layer"]


def _tbb_available() -> bool:
    try:
        from numba.np.ufunc import tbbpool  # noqa: F401
    except ImportError:
        return False
    return True


def _launched() -> bool:
    try:
        numba.threading_layer()
    except ValueError:
        return False
    return True


def choose_threading_layer(torch_present: bool | None = None) -> str:
    """Apply the policy above (before the first parallel call) and return the layer asked for."""
    if os.environ.get("NUMBA_THREADING_LAYER"):
        return numba.config.THREADING_LAYER
    wanted = os.environ.get("NUMOPT_THREADING_LAYER", "").strip()
    if not wanted:
        if torch_present is None:
            torch_present = "torch" in sys.modules
        if not torch_present:
            return numba.config.THREADING_LAYER
        wanted = "tbb" if _tbb_available() else "workqueue"
    if not _launched():
        numba.config.THREADING_LAYER = wanted
    return wanted


def threading_layer() -> str:
    """The threading layer in use, or the one that will be used if no parallel kernel ran yet."""
    try:
        return numba.threading_layer()
    except ValueError:
        return f"{numba.config.THREADING_LAYER} (not started yet)"
