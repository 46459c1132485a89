"""Per-parameter scalar state (NAdam's ``mu_product``, ASGD's ``eta`` and ``mu``) in one compiled call.

These arrays hold one float per parameter of a run. Doing their bookkeeping with
NumPy costs a microsecond or more per operation on a ten-parameter model, which
is most of a small model's step; a single serial Numba call does it in a fraction
of that. They work on host arrays for every optimizer, GPU parameters included
(which is why they live outside ``numopt.kernels``, whose kernels have CUDA twins).
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel


@kernel(parallel=False)
def scale_as_float32(values, factor):
    """``values[i] <- float32(float32(values[i]) * float32(factor))`` for every ``i``; True if all end equal.

    torch keeps such scalars in float32 tensors (its default dtype) whatever the
    parameters' dtype, so each product is rounded to float32 as torch rounds it.
    """
    f = np.float32(factor)
    uniform = True
    for i in range(values.size):
        values[i] = np.float32(values[i]) * f
        if values[i] != values[0]:
            uniform = False
    return uniform


@kernel(parallel=False)
def all_equal(a, b):
    """True if every element of ``a`` equals ``a[0]`` and every element of ``b`` equals ``b[0]``."""
    for i in range(1, a.size):
        if a[i] != a[0] or b[i] != b[0]:
            return False
    return True


@kernel(parallel=False)
def fill_as_float32(a, a_value, b, b_value):
    """``a[:] = float32(a_value)`` and ``b[:] = float32(b_value)`` (torch keeps these scalars in float32)."""
    va = np.float32(a_value)
    vb = np.float32(b_value)
    for i in range(a.size):
        a[i] = va
        b[i] = vb


def stretches(*values: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of the longest stretches over which every array of ``values`` is constant.

    The slow path, for a run whose parameters share a step count but not their
    scalar state (hyperparameters edited between two parameters' steps, or a
    loaded state): each stretch is then updated by its own kernel call.
    """
    n = values[0].size
    change = np.zeros(max(n - 1, 0), bool)
    for v in values:
        change |= v[1:] != v[:-1]
    cuts = [0, *(np.flatnonzero(change) + 1).tolist(), n]
    return list(zip(cuts[:-1], cuts[1:]))
