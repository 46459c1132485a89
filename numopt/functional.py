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
# RMS family:
# Other optimizers:

__all__ = sorted(name for name in dir() if not name.startswith("_"))
