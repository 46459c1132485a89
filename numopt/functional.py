"""The update rules as plain functions over flat arrays.

These are the Numba kernels the optimizer classes call. They work from Python
and from inside your own ``@njit`` code (no Python round-trip). Pass scalars
of the arrays' dtype (``np.float32(0.1)`` for float32 arrays) to keep the loop
in float32; state arrays are allocated by the caller, e.g. ``np.zeros_like(param)``.

Example
-------
>>> import numpy as np
>>> from numba import njit
>>> from numopt.functional import sgd
>>> @njit
... def descend(x, steps):
...     buf = np.zeros_like(x)
...     g = np.empty_like(x)
...     for t in range(steps):
...         g[:] = 2 * x                      # gradient of sum(x**2)
...         sgd(x, g, buf, np.float32(0.1), np.float32(0.9), np.float32(0.0),
...             np.float32(0.0), False, False, t == 0)
...     return x
>>> float(descend(np.ones(4, np.float32), 200)[0]) < 1e-3
True
"""

from .kernels.sgd import sgd_step as sgd

# Adam family:
# isort: split
from .kernels.adam import adam_step as adam
from .kernels.adamax import adamax_step as adamax
from .kernels.nadam import nadam_step as nadam
from .kernels.radam import radam_step as radam

# RMS family:
# isort: split
from .kernels.adadelta import adadelta_step as adadelta
from .kernels.adagrad import adagrad_step as adagrad
from .kernels.rmsprop import rmsprop_step as rmsprop

# Other optimizers:
# isort: split
from .kernels.adafactor import adafactor_step as adafactor
from .kernels.asgd import asgd_step as asgd
from .kernels.lbfgs import lbfgs_direction
from .kernels.muon import muon_momentum
from .kernels.rprop import rprop_step as rprop
from .kernels.sparse_adam import sparse_adam_step as sparse_adam

__all__ = sorted(name for name in dir() if not name.startswith("_"))
