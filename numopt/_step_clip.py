"""Gradient clipping by norm and the non-finite guard, inside an optimizer's step.

``Optimizer.clip_grad_norm_`` takes the total norm of the optimizer's gradients in
one reduction pass over its flat gradient buffers (the fixed-order float64 partials
of :mod:`numopt.utils`: the same norm for any thread count) and does not write the
gradients: it records the clipping coefficient, and the next ``step()`` multiplies
each gradient element by it as its generated loop reads it. A clipped step then
moves ``4 + B`` bytes per parameter instead of the ``12 + B`` of clipping first
(norm pass, scaling pass) and stepping after (``B``: the step's own bytes, 28 for
AdamW).

Optimizers whose step reads the gradient elsewhere than in their generated rule
(the non-elementwise ones) get the same call, with the gradients scaled at once by
:func:`numopt.utils.clip_grad_norm_`'s scaling pass.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from . import utils
from ._validation import check_bool, check_torch_switches

if TYPE_CHECKING:
    from .optimizer import Optimizer


def clip_grad_norm_(
    opt: Optimizer,
    max_norm: float | None,
    norm_type: float,
    error_if_nonfinite: bool,
    foreach: bool | None,
    skip_nonfinite: bool,
) -> np.floating:
    """``opt.clip_grad_norm_``: see :meth:`numopt.Optimizer.clip_grad_norm_`."""
    check_torch_switches(foreach=foreach)
    check_bool("skip_nonfinite", skip_nonfinite)
    refused = type(opt)._clip_refused
    if refused:
        raise TypeError(f"{type(opt).__name__}.clip_grad_norm_ is not supported: {refused}")
    if max_norm is not None:
        if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float, np.integer, np.floating)):
            raise TypeError(f"max_norm must be a real number or None (no clipping), got {type(max_norm).__name__}")
        max_norm = float(max_norm)
    p = float(norm_type)
    fused = type(opt)._fuses_grad_scale
    params = [q for group in opt.param_groups for q in group["params"]]
    segments, per_param = utils._grad_segments(params, writable=not fused)
    if not per_param:
        return np.float32(0.0)
    total = utils._total_norm(segments, per_param, p)
    pending = opt._grad_scale
    if pending != 1.0 and p != 0:
        total *= abs(pending)  # a second call sees the gradients as the step would: already scaled
    utils._check_finite(total, p, error_if_nonfinite)
    total_norm = utils._result_dtype(per_param).type(total)
    if skip_nonfinite and not math.isfinite(total):
        opt._skip_next = True
        return total_norm
    if max_norm is None:
        return total_norm
    coef = utils._clip_coef(max_norm, total_norm)
    if coef == 1:
        return total_norm
    if fused:
        opt._grad_scale = float(coef) if pending == 1.0 else float(coef) * pending
    else:
        utils._scale_by(segments, coef)
    return total_norm


def apply_grad_scale_(opt: Optimizer) -> None:
    """``opt.apply_grad_scale_``: write a pending clipping coefficient into the gradients now."""
    scale = opt._grad_scale
    if scale == 1.0:
        return
    params = [q for group in opt.param_groups for q in group["params"]]
    segments, _ = utils._grad_segments(params, writable=True)
    utils._scale_by(segments, scale)
    opt._grad_scale = 1.0
