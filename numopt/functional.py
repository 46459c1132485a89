"""The update rules as plain functions over flat arrays, for Python and for your own ``@njit`` code.

These are the Numba kernels the optimizer classes call: each updates 1-D arrays
in place, in one pass over memory, with ``torch.optim``'s arithmetic. Call them
from Python, or from inside your own ``@njit`` or ``@njit(parallel=True)``
function (a simulation's inner loop): Numba compiles the call into your
function, so a loop of 10_000 steps makes no Python round-trip. Given the same
gradients, a loop of these calls produces the same parameters as the optimizer
class, bit for bit.

Three levels, from the simplest:

- :func:`init` / :func:`step`: ``st = init("adam", x, lr=1e-3)`` holds the state
  arrays, the hyperparameters (the class's defaults) and the step count in one
  namedtuple; ``step(st, x, g)`` (or ``step(st, x, g, lr)``) is one
  ``optimizer.step()``, per-step scalars included, from Python or ``@njit`` code.
- The rules themselves (``adam``, ``sgd``, ... below), with every scalar passed.
- The compiled schedules (``cosine_annealing_lr(base_lr, t, T_max)``, ...,
  :mod:`numopt.schedules`): the learning rate a scheduler class gives after ``t`` steps.

Calling convention
------------------
- ``param`` and ``grad`` are 1-D, C-contiguous arrays of one dtype, float32 or
  float64 (``x.reshape(-1)`` is a view of a contiguous array of any shape).
  ``param`` and the state arrays are updated in place; ``grad`` is only read.
- State arrays are yours: allocate them once with :func:`init_state` (before the
  jitted loop, or inside it with ``np.zeros_like``) and keep them from step to step.
  ``init_state(name, param, **options)`` returns a namedtuple of 1-D arrays named
  as in ``optimizer.state[p]``; arrays an option turns off are empty.
- Scalars are float64 (Python floats) for every rule: each kernel casts them once
  to the arrays' dtype, so a float32 loop stays float32 arithmetic. Flags come last,
  in one order across the family: the rule's own flags, then ``maximize``, then
  ``decoupled_weight_decay``.
- The step count ``t`` starts at 1. The ``*_scalars`` helpers (jitted, callable
  from both sides) compute the per-step scalars the optimizer classes compute.
- ``<rule>`` (e.g. ``adam``) is size-aware: it runs the thread-free loop for arrays
  under ``PARALLEL_THRESHOLD`` elements (16384; the environment variable
  ``NUMOPT_PARALLEL_THRESHOLD``, read at import, overrides it), where waking the thread
  pool costs more than the update, and the parallel loop from there. The branch costs
  nothing measurable. ``<rule>_serial`` and ``<rule>_parallel`` take the same arguments
  and always run that loop.
- Inside a ``prange`` loop (one small problem per iteration), call ``<rule>_serial``,
  or ``<rule>`` / :func:`step` on arrays under the threshold: a parallel loop inside
  a parallel loop needs the tbb or omp threading layer.

{rules_table}

Each kernel's docstring gives its update rule. ``adafactor``, ``sparse_adam``,
``muon_momentum`` and ``lbfgs_direction`` are the building blocks of those
optimizers (their state depends on shapes or history); use the classes for them.

``lbfgs_minimize(fg, x, args)`` is a whole L-BFGS run (``numopt.minimize``'s
algorithm) compiled into your code, for an ``@njit`` objective ``fg(x, g, args)``:
callable inside ``prange`` to minimize many problems at once
(``numopt.minimize_batch`` does that loop for you).

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

Example: the same with init / step and a compiled schedule
----------------------------------------------------------
>>> from numopt.functional import init, step, cosine_annealing_lr
>>> @njit
... def fit2(x, target, state, steps):
...     g = np.empty_like(x)
...     for t in range(steps):
...         g[:] = 2 * (x - target)
...         step(state, x, g, cosine_annealing_lr(0.05, t, steps))
...     return x
>>> x = np.zeros(1000, np.float32)
>>> float(np.abs(fit2(x, target, init("adam", x), 2_000) - target).max()) < 1e-3
True

For many small problems at once, make one state per problem and step them in a
``prange`` loop; pass the states as a ``numba.typed.List`` (Numba cannot index a
tuple of them with a loop variable) and index it with ``states[np.int64(b)]``.

Numba's thread pool is started when this module is imported (a few
milliseconds): a cached, non-parallel ``@njit(cache=True)`` caller of these
parallel kernels then runs safely in a fresh process (numba issue 8578). In a
process that also uses torch, import torch first: numopt then picks a threading
layer that does not compete with torch's OpenMP pool.
"""

import sys as _sys

from ._functional_step import init, step
from ._jit import PARALLEL_THRESHOLD
from ._state_arrays import _start_thread_pool, init_state

# Building blocks of optimizers whose state depends on shapes or history (use their classes):
# isort: split
from ._compiled_lbfgs import lbfgs_minimize
from .kernels.adafactor import adafactor_step as adafactor
from .kernels.lbfgs import lbfgs_direction
from .kernels.muon import muon_momentum
from .kernels.sparse_adam import sparse_adam_step as sparse_adam
from .optimizer import registered as _registered
from .schedules import (
    constant_lr,
    cosine_annealing_lr,
    cosine_annealing_warm_restarts,
    cyclic_lr,
    exponential_lr,
    linear_lr,
    multi_step_lr,
    one_cycle_lr,
    polynomial_lr,
    step_lr,
)


def _export_rules() -> list[tuple[str, str, str]]:
    """Export every registered elementwise rule as ``<name>`` (size-aware), ``<name>_serial``, ``<name>_parallel``
    and ``<name>_scalars`` (where its module defines one); return ``(name, arguments, scalars helper)`` rows
    for the docs."""
    rows = []
    namespace = globals()
    for cls in _registered(elementwise=True):
        rule = cls.rule.rule
        name = rule.functional_name
        if name in namespace:  # a rule shared by two classes (Adam, AdamW)
            continue
        namespace[name] = cls.rule.auto
        namespace[f"{name}_serial"] = cls.rule.serial
        namespace[f"{name}_parallel"] = cls.rule
        helper = getattr(_sys.modules[rule.body.__module__], f"{name}_scalars", None)
        if helper is not None:
            namespace[f"{name}_scalars"] = helper
        rows.append((name, ", ".join([*rule.arrays, *rule.scalars]), f"{name}_scalars" if helper else "-"))
    return rows


def _table(rows: list[tuple[str, str, str]]) -> str:
    header = ("rule", "arguments", "per-step scalars")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, "  ".join(h.ljust(w) for h, w in zip(header, widths)), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join([*lines, rule])


__doc__ = __doc__.replace("{rules_table}", _table(_export_rules()))

__all__ = sorted(name for name in dir() if not name.startswith("_"))

_start_thread_pool()
