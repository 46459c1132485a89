"""AdEMAMix (``pytorch_optimizer.AdEMAMix``): Adam with a mixture of a fast and a slow gradient EMA."""

from __future__ import annotations

from typing import Any

from .._arguments import constructor
from .._jit import kernel
from .._validation import check_betas, check_bool, check_flags, check_nonnegative, check_number
from ..kernels.ademamix import ademamix_scalars, ademamix_step
from ..optimizer import Optimizer, StateTensor
from ._group_step import GroupStepCount

__all__ = ["AdEMAMix"]


@kernel(parallel=False)
def _functional_scalars(s: Any, lr: float, t: int) -> tuple[float, float, float, float]:
    """``(beta3_t, alpha_t, bias_correction1, bias_correction2_sqrt)``
    of a :func:`numopt.functional.init` state at step ``t``: the class's formulas."""
    t_alpha_beta3 = s.t_alpha_beta3  # the class's None is NaN in the state, 0 for the helper
    bc1, bc2_sqrt, alpha_t, beta3_t = ademamix_scalars(
        s.betas[0], s.betas[1], s.betas[2], s.alpha, 0.0 if t_alpha_beta3 != t_alpha_beta3 else t_alpha_beta3, t
    )
    return beta3_t, alpha_t, bc1, bc2_sqrt


class AdEMAMix(GroupStepCount, Optimizer):
    r"""AdEMAMix: Adam whose numerator adds a slow gradient EMA to the fast one.

    The update at step :math:`t` (counted per group from 1), for each parameter
    :math:`\theta` with gradient :math:`g_t`::

        g_t   = -g_t if maximize
        theta = theta * (1 - lr * weight_decay)        (weight_decay != 0, weight_decouple;
                                                        1 - weight_decay with fixed_decay)
        g_t   = g_t + weight_decay * theta             (weight_decay != 0, not weight_decouple)
        m_t   = beta1 * m_{t-1} + (1 - beta1) * g_t
        v_t   = beta2 * v_{t-1} + (1 - beta2) * g_t**2
        s_t   = beta3_t * s_{t-1} + (1 - beta3_t) * g_t
        theta = theta - lr * (m_t / (1 - beta1**t) + alpha_t * s_t) / (sqrt(v_t) / sqrt(1 - beta2**t) + eps)

    Without ``t_alpha_beta3``, ``alpha_t = alpha`` and ``beta3_t = beta3``. With it (``T``),
    both warm up over ``T`` steps::

        alpha_t = min(t * alpha / T, alpha)
        beta3_t = min(exp(log(beta1) * log(beta3) / ((1 - t/T) * log(beta3) + (t/T) * log(beta1))), beta3)

    These scalars and the bias corrections are computed once per step in float64
    (:func:`numopt.functional.ademamix_scalars`), then cast to the parameters' dtype.

    Same names, defaults and arithmetic as ``pytorch_optimizer.AdEMAMix`` (pytorch-optimizer
    4.1.0), its reference in the tests; its extra switches (``cautious``, ``stable_adamw``,
    passed there through ``**kwargs``) are not taken, nor a tensor ``lr``. Where the reference
    accepts values that fail at its first step (``t_alpha_beta3 = 0``: a division by zero;
    ``beta1 = 0`` or ``beta3 = 0`` with ``t_alpha_beta3``: the logarithm of 0), numopt refuses
    them at construction.

    Parameters
    ----------
    %(params)s
    %(lr)s
    betas : (float, float, float), default (0.9, 0.999, 0.9999)
        Decay rates of the fast EMA and of the second moment, each in [0, 1), and of the
        slow EMA, in [0, 1].
    %(decay_args)s
    alpha : float, default 5.0
        Weight of the slow EMA (>= 0).
    t_alpha_beta3 : float or None, default None
        Warm-up length, in steps, of ``alpha`` and ``beta3`` (> 0); ``None``: no warm-up.
    %(eps)s
    %(maximize)s
    %(foreach)s
    %(state_dtype)s

    State
    -----
    ``'exp_avg'``, ``'exp_avg_sq'`` and ``'exp_avg_slow'`` per parameter once it has been
    stepped. As in the reference, the step count is kept per group (``param_groups[i]['step']``,
    one more at every ``step()`` call, gradients or not) and ``maximize`` on the optimizer.

    %(example)s
    >>> opt = numopt.AdEMAMix([w], lr=0.1, alpha=0.0)
    >>> opt.step()          # with alpha = 0, Adam's first step: lr against the gradient's sign
    >>> w.data.round(6)
    array([0.9, 0.9, 0.9], dtype=float32)

    References
    ----------
    Pagliardini, Ablin and Grangier, "The AdEMAMix Optimizer: Better, Faster, Older", ICLR 2025.
    """

    rule = ademamix_step
    functional_scalars = _functional_scalars
    state_tensors = (StateTensor("exp_avg"), StateTensor("exp_avg_sq", signed=False), StateTensor("exp_avg_slow"))
    bench_kwargs = {"lr": 1e-3}
    reference = "pytorch_optimizer.AdEMAMix"
    _tracks_step = False
    _optimizer_attributes = {"maximize": check_bool}

    __init__ = constructor(
        "lr=1e-3, betas=(0.9, 0.999, 0.9999), weight_decay=0.0, weight_decouple=False, fixed_decay=False, alpha=5.0,"
        " t_alpha_beta3=None, eps=1e-8, maximize=False, foreach=None",
        storage=True,
        convert={"betas": tuple},
    )

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        check_nonnegative(h, "lr")
        beta1, _, beta3 = check_betas(h["betas"], 3)
        check_nonnegative(h, "weight_decay", "alpha")
        if h["t_alpha_beta3"] is not None:
            check_number("t_alpha_beta3", h["t_alpha_beta3"], low=0.0, low_open=True, label="t_alpha_beta3 value")
            if beta1 == 0.0 or beta3 == 0.0:
                raise ValueError(
                    f"Invalid betas for t_alpha_beta3: the warm-up of beta3 takes log(beta1) and log(beta3), "
                    f"so beta1 and beta3 must be > 0 (got betas={tuple(h['betas'])!r})"
                )
        check_nonnegative(h, "eps")
        check_flags(h, "weight_decouple", "fixed_decay")

    def _step_scalars(self, group: dict[str, Any], step: float) -> dict[str, Any]:
        beta1, beta2, beta3 = (float(b) for b in group["betas"])
        t_alpha_beta3 = group["t_alpha_beta3"]
        t_alpha_beta3 = 0.0 if t_alpha_beta3 is None else float(t_alpha_beta3)
        bias_correction1, bias_correction2_sqrt, alpha_t, beta3_t = ademamix_scalars(
            beta1, beta2, beta3, float(group["alpha"]), t_alpha_beta3, float(step)
        )
        return {
            "bias_correction1": bias_correction1,
            "bias_correction2_sqrt": bias_correction2_sqrt,
            "alpha_t": alpha_t,
            "beta3_t": beta3_t,
        }
