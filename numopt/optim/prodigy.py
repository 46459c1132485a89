"""Prodigy (``pytorch_optimizer.Prodigy``): Adam with a step size estimated from the distance travelled."""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real
from typing import Any

import numpy as np

from .._arguments import constructor
from .._validation import check_bool, check_number
from ..flat import FlatBuffer, Run
from ..kernels.prodigy import prodigy_reduce, prodigy_step
from ..optimizer import Optimizer, StateTensor
from ..parameter import SparseGrad
from ._trust import UsesSegments
from .adam import _check_betas

__all__ = ["Prodigy"]

#: the values a step keeps in every group (the reference's), besides ``step``
_ESTIMATES = ("d", "d_max", "d_numerator", "d_de_nom", "d_hat")


#: the constructor's arguments as the groups keep them: the reference's keys, in its order (``maximize`` is
#: the optimizer's, see ``_optimizer_attributes``)
_GROUP_KEYS = (
    "maximize",
    "lr",
    "betas",
    "beta3",
    "d",
    "d0",
    "d_max",
    "d_coef",
    "growth_rate",
    "weight_decay",
    "weight_decouple",
    "fixed_decay",
    "bias_correction",
    "safeguard_warmup",
    "step",
    "foreach",
    "eps",
)


class Prodigy(UsesSegments, Optimizer):
    r"""Prodigy: Adam whose step size ``d`` is learned from the distance the parameters travelled.

    One step, with ``d`` the current estimate and :math:`g` each gradient (negated if
    ``maximize``); the scalars (betas, ``lr``, ``d``, ``d0``, ``bias_correction``, the step
    count) come from the first group, as in the reference::

        d_lr = d * lr / bc          (bc = (1 - beta1^t) / sqrt(1 - beta2^t) with bias_correction, else 1)
        beta3 = beta3 or sqrt(beta2)
        d_numerator <- beta3 * d_numerator
        for every parameter with a gradient, in every group:
            d_numerator += (d / d0) * d_lr * <g, p0 - p>      (p0: the parameter when first stepped)
            m <- beta1 * m + d * (1 - beta1) * g
            v <- beta2 * v + d^2 * (1 - beta2) * g^2
            s <- beta3 * s + (d / d0) * d_lr * g              (d instead of d_lr with the group's safeguard_warmup)
            d_de_nom += sum |s|
        stop here if d_de_nom == 0 (no parameter moves)
        d_hat = d_coef * d_numerator / d_de_nom                 (d_coef, d0, d_max, growth_rate: the last group's)
        d = max(d, d_hat) if d == d0
        d_max = max(d_max, d_hat);  d = min(d_max, d * growth_rate)
        for every parameter with a gradient (with its group's weight decay and eps):
            p <- p * (1 - d_lr * weight_decay)                  (weight_decouple; 1 - weight_decay with fixed_decay)
            p <- p - d_lr * m / (sqrt(v) + d * eps)             (atan2(m, sqrt(v)) instead if eps is None)

    Same names, defaults and arithmetic as ``pytorch_optimizer.Prodigy`` (pytorch-optimizer
    4.1.0), its reference in the tests. As there, ``d_numerator`` and ``d_de_nom`` are float32
    numbers whatever the parameters' dtype: each parameter's ``<g, p0 - p>`` and ``sum |s|``
    are reduced here in float64 (fixed-order partials: the same for any thread count), then
    rounded to float32 and added in parameter order (a group's float32 parameters before its
    float64 ones if it mixes dtypes). Like the reference, coupled weight decay
    (``weight_decouple=False``) only adds ``weight_decay * p`` to the gradient after the
    moments were formed, so it changes nothing; numopt reads gradients only (the reference
    also negates them in place with ``maximize``). Sparse gradients are refused. CUDA parameters
    are updated on the device, where the two sums are reduced into the same per-block partials;
    only those cross to the host, where they are added as above.

    Parameters
    ----------
    %(params)s
    lr : float, default 1.0
        Learning rate (>= 0): a multiplier of the learned step size; leave it at 1.
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the moment estimates, each in [0, 1).
    beta3 : float or None, default None
        Decay rate of ``s`` and ``d_numerator``, in [0, 1]; None: ``sqrt(beta2)``.
    d0 : float, default 1e-6
        Initial estimate of ``d`` (> 0).
    d_coef : float, default 1.0
        Multiplier of the estimate ``d_hat`` (> 0).
    growth_rate : float, default inf
        Largest factor ``d`` may grow by in one step (> 0; ``inf``: no limit).
    weight_decay : float, default 0
        Weight decay (>= 0).
    weight_decouple : bool, default True
        Decay the parameters directly (AdamW's decay); False: the reference's coupled decay,
        which has no effect on the update (see above).
    fixed_decay : bool, default False
        With ``weight_decouple``, decay by ``weight_decay`` alone, not ``d_lr * weight_decay``.
    bias_correction : bool, default False
        Scale the step by Adam's bias corrections.
    safeguard_warmup : bool, default False
        Leave ``lr`` (and the bias correction) out of ``s``'s increments (``d`` instead of ``d_lr``).
    eps : float or None, default 1e-8
        Added to the denominator, times ``d`` (>= 0); None: update by ``atan2(m, sqrt(v))``.
    maximize : bool, default False
        Maximize the objective instead of minimizing it.
    foreach : bool or None, default None
        Accepted (torch's implementation switch); numopt runs two passes over each buffer.

    State
    -----
    Per parameter once it has a gradient: ``'s'``, ``'p0'`` (its value then),
    ``'exp_avg'``, ``'exp_avg_sq'``. Per group, as in the reference: ``'step'``
    (from 1, counted at every step), ``'d'``, ``'d_max'``, and after a step
    ``'d_numerator'``, ``'d_de_nom'``, ``'d_hat'`` (numbers; tensors there). ``maximize``
    is kept on the optimizer (``opt.maximize``), not in the groups.

    %(example_start)s
    >>> opt = numopt.Prodigy([w])
    >>> for _ in range(3):
    ...     w.grad = 2 * w.data          # the gradient of sum(w**2)
    ...     opt.step()
    >>> opt.param_groups[0]["d"] > 1e-6  # the step size grew from d0
    True

    References
    ----------
    Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free Learner",
    ICML 2024, arXiv:2306.06101.
    """

    state_tensors = (StateTensor("s"), StateTensor("p0"), StateTensor("exp_avg"), StateTensor("exp_avg_sq"))
    bench_kwargs = {"lr": 1.0}
    reference = "pytorch_optimizer.Prodigy"
    runs_on_cuda = True
    _tracks_step = False
    _optimizer_attributes = {"maximize": check_bool}  # on the optimizer, as in the reference

    __init__ = constructor(
        "lr=1.0, betas=(0.9, 0.999), beta3=None, d0=1e-6, d_coef=1.0, growth_rate=float('inf'), weight_decay=0.0,"
        " weight_decouple=True, fixed_decay=False, bias_correction=False, safeguard_warmup=False, eps=1e-8,"
        " maximize=False, foreach=None",
        convert={"betas": tuple},
    )

    def _construct(self, params: Any, arguments: dict[str, Any], **convert: Callable[[Any], Any]) -> None:
        """The groups keep the reference's keys, in its order: ``d`` and ``d_max`` start at ``d0``, ``step`` at 1."""
        given = {**arguments, "d": arguments["d0"], "d_max": arguments["d0"], "step": 1}
        super()._construct(params, {k: given[k] for k in _GROUP_KEYS}, **convert)

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        check_number("lr", h["lr"], low=0.0, label="learning rate")
        _check_betas(h["betas"])
        if h["beta3"] is not None:
            check_number("beta3", h["beta3"], low=0.0, high=1.0, label="beta3 value")
        check_number("d0", h["d0"], low=0.0, low_open=True, label="d0 value")
        check_number("d_coef", h["d_coef"], low=0.0, low_open=True, label="d_coef value")
        rate = h["growth_rate"]
        if isinstance(rate, bool) or not isinstance(rate, Real):
            raise TypeError(f"Invalid growth_rate value: growth_rate must be a real number, got {rate!r}")
        if not float(rate) > 0.0:
            raise ValueError(
                f"Invalid growth_rate value: {rate!r} (growth_rate must be > 0.0, inf for no limit, "
                f"got growth_rate={rate!r})"
            )
        check_number("weight_decay", h["weight_decay"], low=0.0, label="weight_decay value")
        for name in ("weight_decouple", "fixed_decay", "bias_correction", "safeguard_warmup"):
            check_bool(name, h[name])
        if h["eps"] is not None:
            check_number("eps", h["eps"], low=0.0, label="epsilon value")
        # what a step keeps in the groups (loaded state dicts and edits are checked too)
        check_number("d", h["d"], low=0.0, low_open=True, label="d value")
        check_number("d_max", h["d_max"], low=0.0, low_open=True, label="d_max value")
        step = check_number("step", h["step"], low=0.0, label="step value")
        if step != int(step):
            raise ValueError(f"Invalid step value: {h['step']!r} (step must be a whole number)")
        for name in ("d_numerator", "d_de_nom", "d_hat"):
            v = h.get(name, 0.0)
            if isinstance(v, bool) or not isinstance(v, Real):
                raise TypeError(f"Invalid {name} value: {name} must be a real number, got {type(v).__name__} {v!r}")

    def step(self, closure: Any = None) -> Any:
        """Perform one optimization step (see :meth:`Optimizer.step`); sparse gradients are refused."""
        for p in self.parameters():
            if isinstance(p.grad, SparseGrad):
                raise RuntimeError("Prodigy does not support sparse gradients")
        return super().step(closure)

    def _update(self, group: dict[str, Any], flat: FlatBuffer, run: Run) -> None:
        raise NotImplementedError("Prodigy updates every group at once (_update_all)")

    def _update_all(self) -> None:
        groups = self.param_groups
        first = groups[0]
        beta1, beta2 = (float(b) for b in first["betas"])
        beta3 = float(first["beta3"]) if first["beta3"] is not None else math.sqrt(beta2)
        step = first["step"]
        bc = 1.0
        if first["bias_correction"]:
            bc = (1.0 - math.pow(beta1, step)) / math.sqrt(1.0 - math.pow(beta2, step))
        d, d0 = float(first["d"]), float(first["d0"])
        d_lr = d * float(first["lr"]) / bc
        numerator = np.float32(first.get("d_numerator", 0.0)) * np.float32(beta3)
        denominator = np.float32(0.0)
        alpha = np.float32((d / d0) * d_lr)
        m_scale, v_scale = d * (1.0 - beta1), d * d * (1.0 - beta2)
        maximize = bool(self.maximize)

        # pass 1: moments and s, and the sums, over every group's parameters with a gradient
        work: list[tuple[dict[str, Any], list[Run]]] = []
        for group, flats in zip(groups, self._flats):
            group["step"] += 1
            s_scale = (d / d0) * (d if group["safeguard_warmup"] else d_lr)
            scalars = (beta1, m_scale, beta2, v_scale, beta3, s_scale, maximize)  # prodigy_reduce_constants'
            for flat in flats:
                runs = self._prepare(group, flat)
                for run in runs:
                    st = run.state
                    if run.step == 0:  # state created now: p0 is the parameter as it is
                        flat._assign(st["p0"], run.data)
                        run.advance()
                    seg = self._segments.get(flat, run)
                    arrays = (run.data, run.grad, st["p0"], st["s"], st["exp_avg"], st["exp_avg_sq"])
                    reduce = run.pick(prodigy_reduce)
                    numerator, denominator = reduce(*arrays, seg, numerator, denominator, alpha, *scalars)
                work.append((group, runs))
        first["d_numerator"] = float(numerator)
        if denominator == 0:  # nothing to learn from (the reference returns here too)
            self._mark_checked(("step", "d_numerator"))
            return

        last = groups[-1]
        d_hat = float(np.float32(np.float32(last["d_coef"]) * numerator) / denominator)
        if d == last["d0"]:
            d = max(d, d_hat)
        d_max = max(last["d_max"], d_hat)
        d = min(d_max, d * last["growth_rate"])
        estimates = {"d": d, "d_max": d_max, "d_numerator": float(numerator), "d_de_nom": float(denominator)}
        estimates["d_hat"] = d_hat
        for group in groups:
            group.update(estimates)

        # pass 2: the update, with the new d (in eps) and the step size the step started with
        for group, runs in work:
            eps = group["eps"]
            for run in runs:
                run.pick(prodigy_step)(
                    run.data,
                    run.grad,
                    run.state["exp_avg"],
                    run.state["exp_avg_sq"],
                    d_lr,
                    d,
                    0.0 if eps is None else float(eps),
                    eps is not None,
                    float(group["weight_decay"]),
                    bool(group["weight_decouple"]),
                    bool(group["fixed_decay"]),
                )
        self._mark_checked(("step", *_ESTIMATES))

    def _mark_checked(self, keys: tuple[str, ...]) -> None:
        """Record the values this step wrote in the groups as checked (a step is not an edit)."""
        for group in self.param_groups:
            checked = self._checked_hparams.get(id(group))
            if checked is not None:
                for k in keys:
                    if k in group:
                        checked[k] = group[k]
