"""Adan (``pytorch_optimizer.Adan``): adaptive Nesterov momentum from gradient differences."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._arguments import constructor
from .._jit import kernel
from .._validation import check_betas, check_bool, check_flags, check_nonnegative
from ..flat import Run
from ..kernels.adan import adan_scalars, adan_step
from ..kernels.clip import SUM_SQUARES
from ..optimizer import Optimizer, StateTensor
from ..utils import _partials

__all__ = ["Adan"]


@kernel(parallel=False)
def _functional_scalars(s: Any, lr: float, t: int) -> tuple[float, float, float, float]:
    """``(bias_correction1, bias_correction2, bias_correction3_sqrt, clip)`` of a
    :func:`numopt.functional.init` state at step ``t``: the class's formulas, without clipping."""
    bias_correction1, bias_correction2, bias_correction3_sqrt = adan_scalars(s.betas[0], s.betas[1], s.betas[2], t)
    return bias_correction1, bias_correction2, bias_correction3_sqrt, 1.0


def _functional_refuses(opt: Any) -> str | None:
    if float(opt.defaults["max_grad_norm"]) == 0.0:
        return None
    return "Adan's functional state does not clip (max_grad_norm > 0 needs the norm over all parameters)"


class Adan(Optimizer):
    r"""Adan: adaptive Nesterov momentum, estimated from gradient differences.

    The update at step :math:`t` (counted per group from 1, as in the reference), for
    each parameter :math:`\theta` with gradient :math:`g_t`::

        c     = min(1, max_grad_norm / (||g||_2 + eps))   (max_grad_norm > 0; ||g|| over every
                                                          gradient of every group; else c = 1)
        g_t   = c * (-g_t if maximize else g_t)
        d_t   = g_t - g_{t-1}                             (0 at a parameter's first step;
                                                          2 g_t there with maximize, as the reference)
        m_t   = beta1 * m_{t-1} + (1 - beta1) * g_t
        n_t   = beta2 * n_{t-1} + (1 - beta2) * d_t
        v_t   = beta3 * v_{t-1} + (1 - beta3) * (g_t + beta2 * d_t)**2
        denom = sqrt(v_t) / sqrt(1 - beta3**t) + eps
        theta = theta * (1 - lr * weight_decay)           (weight_decouple)
        theta = theta - lr / (1 - beta1**t) * m_t / denom
                      - lr * beta2 / (1 - beta2**t) * n_t / denom
        theta = theta / (1 + lr * weight_decay)           (not weight_decouple: the proximal decay)

    One fused pass per parameter buffer; with ``max_grad_norm > 0`` a reduction pass
    first (float64 partials per chunk, summed in a fixed order) forms ``c``.

    Same names, defaults and arithmetic as ``pytorch_optimizer.Adan`` (pytorch-optimizer
    4.1.0), its reference in the tests. Its extra keyword switches (``use_gc``,
    ``adanorm``, ``adanorm_r``) are not taken. As in the reference, ``max_grad_norm``
    and ``eps`` of the clipping are the constructor's (``opt.defaults``), not a group's,
    and each group's ``'step'`` counts every ``step()`` call.

    Parameters
    ----------
    %(params)s
    %(lr)s
    betas : (float, float, float), default (0.98, 0.92, 0.99)
        Decay rates of the gradient average, of the gradient-difference average (both
        in [0, 1)) and of the squared-update average (in [0, 1]).
    weight_decay : float, default 0
        Weight decay (>= 0).
    weight_decouple : bool, default False
        Decay the parameters before the update (as AdamW does) instead of dividing them
        by ``1 + lr * weight_decay`` after it (Adan's proximal form).
    max_grad_norm : float, default 0
        Clip the global gradient norm to this value (>= 0; 0: no clipping).
    eps : float, default 1e-8
        Term added to the denominator (>= 0).
    %(torch_args)s

    State
    -----
    ``'exp_avg'``, ``'exp_avg_sq'``, ``'exp_avg_diff'`` and ``'previous_grad'`` (the
    negated clipped gradient of the last step) per parameter once it has a gradient. As
    in the reference, the step count is kept per group (``param_groups[i]['step']``) and
    ``maximize`` on the optimizer (``opt.maximize``), not in the groups.

    %(example_start)s
    >>> opt = numopt.Adan([w], lr=0.1)
    >>> w.grad = np.array([1.0, -2.0, 0.0], np.float32)
    >>> opt.step()          # the first step moves each element by lr against its gradient's sign
    >>> w.data
    array([0.9, 1.1, 1. ], dtype=float32)

    References
    ----------
    Xie et al., "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep
    Models", IEEE TPAMI 2024 (arXiv:2208.06677).
    """

    rule = adan_step
    functional_scalars = _functional_scalars
    functional_refuses = _functional_refuses
    state_tensors = (
        StateTensor("exp_avg"),
        StateTensor("exp_avg_sq", signed=False),
        StateTensor("exp_avg_diff"),
        StateTensor("previous_grad"),
    )
    bench_kwargs = {"lr": 1e-3, "weight_decay": 0.02}
    reference = "pytorch_optimizer.Adan"
    _tracks_step = False
    _optimizer_attributes = {"maximize": check_bool}
    #: this step's clipping factor (``_update_all`` sets it before the update pass)
    _clip: float = 1.0

    __init__ = constructor(
        "lr=1e-3, betas=(0.98, 0.92, 0.99), weight_decay=0.0, weight_decouple=False, max_grad_norm=0.0, foreach=None,"
        " eps=1e-8, maximize=False",
        convert={"betas": tuple},
    )

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        check_nonnegative(h, "lr")
        check_betas(h["betas"], 3)
        check_nonnegative(h, "weight_decay")
        check_flags(h, "weight_decouple")
        check_nonnegative(h, "max_grad_norm", "eps")

    def _clip_factor(self, runs: list[Run]) -> float:
        """``min(1, max_grad_norm / (||g|| + eps))`` over the gradients of ``runs`` (every group's), or 1.0.

        The reference reads ``max_grad_norm`` and ``eps`` from the constructor's defaults. The squared
        norm is summed from float64 partials per chunk, in a fixed order (any thread count, same result).
        """
        max_norm = float(self.defaults["max_grad_norm"])
        if max_norm == 0.0:
            return 1.0
        values = np.concatenate([np.empty(0, np.float64), *(_partials(run.grad, SUM_SQUARES, 2.0) for run in runs)])
        total = math.fsum(values.tolist()) if not np.isnan(values).any() else math.nan
        total *= self._grad_scale**2  # the norm of the gradients as the update pass reads them (clip_grad_norm_)
        clip = max_norm / (math.sqrt(total) + float(self.defaults["eps"]))
        return clip if clip != clip else min(1.0, clip)  # NaN propagates, as torch.clamp's

    def _step_scalars(self, group: dict[str, Any], step: float) -> dict[str, Any]:
        beta1, beta2, beta3 = (float(b) for b in group["betas"])
        t = group["step"]  # the reference counts steps per group (see _update_all)
        bias_correction1, bias_correction2, bias_correction3_sqrt = adan_scalars(beta1, beta2, beta3, t)
        return {
            "bias_correction1": bias_correction1,
            "bias_correction2": bias_correction2,
            "bias_correction3_sqrt": bias_correction3_sqrt,
            "clip": self._clip,
        }

    def _update_all(self) -> None:
        # every buffer prepared first (gradients checked, state created) so that nothing changes on an error
        runs = [
            run
            for group, flats in zip(self.param_groups, self._flats)
            for f in flats
            for run in self._prepare(group, f)
        ]
        self._clip = self._clip_factor(runs)
        # the reference counts steps per group, every step() (gradients or not), before the update
        for group in self.param_groups:
            group["step"] = group.get("step", 0) + 1
            checked = self._checked_hparams.get(id(group))
            if checked is not None:  # a count, not an edit: no re-validation at the next step
                checked["step"] = group["step"]
        super()._update_all()
