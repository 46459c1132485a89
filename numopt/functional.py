"""The update rules as plain functions over flat arrays, for Python and for your own ``@njit`` code.

These are the Numba kernels the optimizer classes call: each updates 1-D arrays
in place, in one pass over memory, with ``torch.optim``'s arithmetic. Call them
from Python, or from inside your own ``@njit`` or ``@njit(parallel=True)``
function (a simulation's inner loop): Numba compiles the call into your
function, so a loop of 10_000 steps makes no Python round-trip. Given the same
gradients, a loop of these calls produces the same parameters as the optimizer
class, bit for bit.

Calling convention
------------------
- ``param`` and ``grad`` are 1-D, C-contiguous arrays of one dtype, float32 or
  float64 (``x.reshape(-1)`` is a view of a contiguous array of any shape).
  ``param`` and the state arrays are updated in place; ``grad`` is only read.
- State arrays are yours: allocate them once with :func:`init_state` (before the
  jitted loop, or inside it with ``np.zeros_like``) and keep them from step to step.
  ``init_state(name, param, **options)`` returns a namedtuple of 1-D arrays named
  as in ``optimizer.state[p]``; arrays an option turns off are empty.
- Scalars. ``adam``, ``adamax``, ``nadam`` and ``radam`` take float64 scalars
  (Python floats) and cast them once to the arrays' dtype. The others take
  scalars *of the arrays' dtype*: ``np.float32(0.1)`` for float32 arrays, or
  ``dt = x.dtype.type; dt(0.1)`` inside jitted code. A float64 scalar would
  silently turn a float32 loop into float64 arithmetic (slower, other rounding).
- The step count ``t`` starts at 1. The ``*_scalars`` helpers (jitted, callable
  from both sides) compute the per-step scalars the optimizer classes compute.
- Inside ``@njit(parallel=True)`` code, call the kernels outside your ``prange``
  loops: they are parallel loops themselves.
- Every rule has a thread-free twin, ``<rule>_serial`` (e.g. ``adam_serial``), with
  the same arguments: use it for small arrays (under ~16k elements), where waking
  the thread pool costs more than the update itself.

============  =======================================================================  =======================
rule          arguments                                                                per-step scalars
============  =======================================================================  =======================
``sgd``       ``param, grad, momentum_buffer, lr, momentum, dampening, weight_decay,``  ``first_step = t == 1``
              ``nesterov, maximize, first_step``
``adam``      ``param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2,``  ``adam_scalars``
              ``eps, weight_decay, bias_correction1, bias_correction2_sqrt, amsgrad,``
              ``maximize, decoupled_weight_decay=False`` (True: AdamW)
``adamax``    ``param, grad, exp_avg, exp_inf, lr, beta1, beta2, eps, weight_decay,``   ``adamax_scalars``
              ``bias_correction, maximize``
``nadam``     ``param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps,``              ``nadam_scalars``
              ``weight_decay, bias_correction2, grad_step_size, exp_avg_step_size,``
              ``decoupled_weight_decay, maximize``
``radam``     ``param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps,``              ``radam_scalars``
              ``weight_decay, bias_correction1, bias_correction2_sqrt, rect,``
              ``decoupled_weight_decay, maximize``
``adagrad``   ``param, grad, sum, neg_clr, eps, weight_decay, maximize``                ``adagrad_scalars``
``adadelta``  ``param, grad, square_avg, acc_delta, lr, rho, one_minus_rho, eps,``      ``one_minus_rho = 1 - rho``
              ``weight_decay, maximize``
``rmsprop``   ``param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha,``        ``one_minus_alpha``
              ``one_minus_alpha, eps, weight_decay, momentum, centered, maximize``
``rprop``     ``param, grad, prev, step_size, lr, etaminus, etaplus, step_size_min,``   ``first_step = t == 1``
              ``step_size_max, maximize, first_step``
``asgd``      ``param, grad, ax, eta, decay, mu, weight_decay, maximize``               ``asgd_scalars``
============  =======================================================================  =======================

Each kernel's docstring gives its update rule. ``adafactor``, ``sparse_adam``,
``muon_momentum`` and ``lbfgs_direction`` are the building blocks of those
optimizers (their state depends on shapes or history); use the classes for them.

Example: 10_000 Adam steps in one compiled loop
-----------------------------------------------
>>> import numpy as np
>>> from numba import njit
>>> from numopt.functional import adam, adam_scalars, init_state
>>> @njit
... def fit(x, target, state, steps):
...     g = np.empty_like(x)
...     for t in range(1, steps + 1):
...         g[:] = 2 * (x - target)                  # gradient of sum((x - target)**2)
...         bc1, bc2_sqrt = adam_scalars(0.9, 0.999, t)
...         adam(x, g, state.exp_avg, state.exp_avg_sq, state.max_exp_avg_sq,
...              0.01, 0.9, 0.999, 1e-8, 0.0, bc1, bc2_sqrt, False, False)
...     return x
>>> x = np.zeros(1000, np.float32)
>>> target = np.linspace(-1, 1, 1000).astype(np.float32)
>>> float(np.abs(fit(x, target, init_state("adam", x), 10_000) - target).max()) < 1e-3
True

Numba's thread pool is started when this module is imported (a few
milliseconds): a cached, non-parallel ``@njit(cache=True)`` caller of these
parallel kernels then runs safely in a fresh process (numba issue 8578). In a
process that also uses torch, import torch first: numopt then picks a threading
layer that does not compete with torch's OpenMP pool.
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

# State allocation and per-step scalars for calling the rules from @njit code:
# isort: split
from ._embedding import (
    _start_thread_pool,
    adagrad_scalars,
    adam_scalars,
    adamax_scalars,
    asgd_scalars,
    init_state,
    nadam_scalars,
    radam_scalars,
)

# Thread-free twins (``adam_serial``, ...): same arguments, for small arrays, where starting
# the thread pool costs more than the update (far more on a busy machine).
for _name in ("sgd", "adam", "adamax", "nadam", "radam", "adadelta", "adagrad", "rmsprop", "asgd", "rprop"):
    globals()[_name + "_serial"] = globals()[_name].serial
del _name

__all__ = sorted(name for name in dir() if not name.startswith("_"))

_start_thread_pool()
