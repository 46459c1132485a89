"""numopt: torch.optim for NumPy arrays, with a Numba core.

>>> import numpy as np, numopt
>>> w = numopt.Parameter(np.zeros((2, 2), np.float32))
>>> w.grad = np.ones((2, 2), np.float32)
>>> opt = numopt.SGD([w], lr=1.0)
>>> opt.step()
>>> float(w.data[0, 0])
-1.0
"""

from __future__ import annotations

import numba as _numba

from ._threads import choose_threading_layer as _choose_threading_layer
from ._threads import threading_layer

_choose_threading_layer()

from . import interop, lowbit, lr_scheduler, optim, swa_utils, utils  # noqa: E402
from .minimize import minimize, minimize_batch  # noqa: E402
from .optim import *  # noqa: E402, F403  (every optimizer class, named as in torch.optim)
from .optim.eightbit import Adam8bit, AdamW8bit, Lion8bit  # noqa: E402  (bitsandbytes' names: state_dtype='int8')
from .optimizer import Optimizer, register_optimizer_step_post_hook, register_optimizer_step_pre_hook  # noqa: E402
from .parameter import Parameter, SparseGrad  # noqa: E402
from .serialization import CheckpointError, load, save  # noqa: E402

__version__ = "0.1.0.dev0"

__all__ = [
    *optim.__all__,
    "Adam8bit",
    "AdamW8bit",
    "CheckpointError",
    "Lion8bit",
    "Optimizer",
    "Parameter",
    "SparseGrad",
    "get_num_threads",
    "interop",
    "lowbit",
    "load",
    "lr_scheduler",
    "minimize",
    "minimize_batch",
    "register_optimizer_step_post_hook",
    "register_optimizer_step_pre_hook",
    "save",
    "set_num_threads",
    "swa_utils",
    "threading_layer",
    "utils",
]


def set_num_threads(n: int) -> None:
    """Set the number of threads numopt's kernels use (at most ``NUMBA_NUM_THREADS``)."""
    _numba.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads numopt's kernels use."""
    return _numba.get_num_threads()
