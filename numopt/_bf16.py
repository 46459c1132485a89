"""bfloat16 parameters: the optional ``ml_dtypes`` dependency, and the options of writing them back.

NumPy has no bfloat16 of its own; numopt takes the one JAX and TensorFlow use,
``ml_dtypes.bfloat16`` (install ``ml_dtypes``, or ``numopt[bf16]``). numopt imports it only
when bfloat16 is asked for by name; an array of that dtype brings it along.

A bfloat16 parameter's update is computed in float32 and written back to bfloat16 by
stochastic rounding (default) or rounding to nearest even, optionally with a Kahan
compensation buffer (see :mod:`numopt.kernels._lowbit` and the optimizers' ``rounding``,
``compensation`` and ``seed`` arguments).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["COMPENSATION_KEY", "bfloat16", "check_bf16_options", "dtype_expression", "is_bfloat16"]

#: the values ``rounding`` takes
ROUNDINGS = ("stochastic", "nearest")
#: the values ``compensation`` takes
COMPENSATIONS = (None, "kahan")
#: the state key of a bfloat16 parameter's Kahan compensation (``compensation='kahan'``)
COMPENSATION_KEY = "kahan_comp"

_MISSING = (
    "bfloat16 parameters need the optional package ml_dtypes (the NumPy bfloat16 dtype of JAX and "
    "TensorFlow): pip install ml_dtypes  (or pip install 'numopt[bf16]')"
)


def _import_ml_dtypes() -> ModuleType:
    """``import ml_dtypes`` (a function of its own, so tests can simulate its absence)."""
    import ml_dtypes

    return ml_dtypes


def bfloat16() -> np.dtype:
    """NumPy's bfloat16 dtype (``ml_dtypes.bfloat16``); ``ImportError`` naming the package without it."""
    try:
        return np.dtype(_import_ml_dtypes().bfloat16)
    except ImportError:
        raise ImportError(_MISSING) from None


def is_bfloat16(dtype: Any) -> bool:
    """Whether ``dtype`` (a NumPy dtype) is ``ml_dtypes.bfloat16`` (checked without importing ml_dtypes)."""
    return isinstance(dtype, np.dtype) and dtype.kind == "V" and dtype.name == "bfloat16" and dtype.itemsize == 2


def dtype_expression(dtype: np.dtype) -> str:
    """How to write ``dtype`` in Python: ``np.float32``, ``ml_dtypes.bfloat16``."""
    return "ml_dtypes.bfloat16" if is_bfloat16(dtype) else f"np.{dtype}"


def check_bf16_options(rounding: Any, compensation: Any, seed: Any) -> None:
    """Raise ``ValueError`` for a ``rounding``, ``compensation`` or ``seed`` an optimizer cannot take."""
    if not isinstance(rounding, str) or rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be 'stochastic' or 'nearest', got {rounding!r}")
    if compensation is not None and (not isinstance(compensation, str) or compensation not in COMPENSATIONS):
        raise ValueError(f"compensation must be None or 'kahan', got {compensation!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be a whole number in [0, 2**32), got {seed!r}")
