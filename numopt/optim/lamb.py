"""LAMB (``pytorch_optimizer.Lamb``): Adam directions scaled per parameter by a trust ratio."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._arguments import constructor
from .._device import kernel_for
from .._validation import check_bool, check_number
from ..flat import FlatBuffer, Run
from ..kernels.lamb import ADAM, MOMENTUM, RECTIFIED, SKIP, lamb_update
from ..kernels.segments import segment_sum_squares
from ..optimizer import Optimizer, StateTensor
from ._group_step import GroupStepCount
from ._trust import UsesSegments, refuse_sparse
from .adam import _check_betas

__all__ = ["Lamb"]


class Lamb(UsesSegments, GroupStepCount, Optimizer):
    r"""LAMB: Adam updates scaled, per parameter tensor, by the trust ratio ``||theta|| / ||update||``.

    At step :math:`t` (counted per group), for each parameter :math:`\theta` with gradient :math:`g_t`::

        g_t   = -g_t if maximize
        g_t   = g_t * min(max_grad_norm / (||g||_global + eps), 1)      (pre_norm, max_grad_norm > 0)
        theta = theta * (1 - lr * weight_decay)      (weight_decouple; 1 - weight_decay with fixed_decay)
        m_t   = beta1 * m_{t-1} + beta3 * g_t        (beta3 = 1 - beta1 with grad_averaging, else 1)
        v_t   = beta2 * v_{t-1} + (1 - beta2) * g_t**2
        u_t   = m_t / (sqrt(v_t) + eps)  (+ weight_decay * theta when the decay is not decoupled)
        r_t   = min(||theta||, 10) / (||u_t|| + eps)  (1 if either norm is 0; 1 with adam=True)
        theta = theta - lr / (1 - beta1**t) * r_t * u_t

    ``||g||_global`` is the norm of every gradient of every group (``max_grad_norm`` and ``eps``
    of the constructor's defaults). With ``rectify`` the direction is RAdam's: for steps where the
    rectification term ``rho_t`` exceeds ``n_sma_threshold``, ``u_t = theta - s_t m_t / (sqrt(v_t) + eps)``
    and the step ``theta - s_t r_t m_t / (sqrt(v_t) + eps)``, with ``s_t`` RAdam's rectified step size
    over ``1 - beta1**t``; before that, ``u_t = theta - s_t m_t`` and the step ``theta - s_t r_t m_t``
    with ``degenerated_to_sgd``, else no step (the moments and the decay still update).

    Same names, defaults and arithmetic as ``pytorch_optimizer.Lamb`` (pytorch-optimizer 4.1.0),
    its reference in the tests, including its two code paths: its batched path (``foreach`` None or
    True, as it runs on CPU) forms ``u_t`` as ``m_t * (1 / (sqrt(v_t) + eps))`` and scales ``u_t`` by
    ``r_t``; its per-parameter path (``foreach=False``, and always with ``rectify``) divides and
    scales the step size. Its extra switches (``adanorm``, ``adam_debias``, other ``**kwargs``) are
    not taken. Unlike the reference, gradients are only read (it scales and negates ``p.grad`` in place).
    CUDA parameters are updated on the device (the norms from per-block partials reduced there; only
    a few numbers per parameter cross to the host and back).

    Parameters
    ----------
    %(params)s
    lr : float, default 1e-3
        Learning rate (>= 0).
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the first and second moment estimates, each in [0, 1).
    weight_decay : float, default 0
        Weight decay (>= 0).
    weight_decouple : bool, default True
        Decay the parameters directly (as AdamW) instead of adding ``weight_decay * theta`` to the update.
    fixed_decay : bool, default False
        With ``weight_decouple``, decay by ``weight_decay`` alone, not ``lr * weight_decay``.
    rectify : bool, default False
        RAdam's rectified update (see above).
    degenerated_to_sgd : bool, default False
        With ``rectify``, take momentum steps before the rectification threshold (optimizer-wide).
    n_sma_threshold : float, default 5
        With ``rectify``, the length of the approximated SMA from which the rectified step is taken
        (optimizer-wide).
    grad_averaging : bool, default True
        Scale the gradient's contribution to ``m`` by ``1 - beta1``.
    max_grad_norm : float, default 1.0
        With ``pre_norm``, the global gradient norm above which gradients are scaled down (>= 0;
        0 turns the scaling off).
    adam : bool, default False
        Take plain Adam steps (a trust ratio of 1); the ratios are still computed and kept in the state.
    pre_norm : bool, default False
        Scale every gradient by the global factor above before the update (optimizer-wide).
    eps : float, default 1e-6
        Added to denominators (>= 0).
    foreach : bool or None, default None
        ``False`` follows the reference's per-parameter arithmetic (see above); ``None`` or ``True`` its
        batched arithmetic. Either way numopt takes two passes over each buffer.
    maximize : bool, default False
        Maximize the objective instead of minimizing it (optimizer-wide).

    State
    -----
    ``'exp_avg'``, ``'exp_avg_sq'`` per parameter once it has been stepped, and the last step's
    ``'weight_norm'`` (``min(||theta||, 10)``), ``'adam_norm'`` (``||u_t||``) and ``'trust_ratio'``
    (``r_t`` before ``adam`` replaces it) as scalars. As in the reference, the step count is kept per
    group (``param_groups[i]['step']``; numopt counts only the steps that update one of the group's
    parameters, the reference every ``step()``: a step without gradients changes nothing, as elsewhere
    in numopt) and ``maximize``, ``pre_norm``,
    ``degenerated_to_sgd`` and ``n_sma_threshold`` on the optimizer, not in the groups. With ``rectify``
    and no ``degenerated_to_sgd``, the reference creates the three scalars only at the first step it
    moves a parameter; numopt keeps them from the first step (0, 0 and 1 until then).

    Examples
    --------
    >>> import numpy as np, numopt
    >>> w = numopt.Parameter(np.full(4, 2.0, np.float32))
    >>> opt = numopt.Lamb([w], lr=0.01)
    >>> w.grad = np.ones(4, np.float32)
    >>> opt.step()          # r * u = ||w|| * u / ||u|| = 2 per element, times lr / (1 - beta1) = 0.1
    >>> w.data.round(5)
    array([1.8, 1.8, 1.8, 1.8], dtype=float32)

    References
    ----------
    You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes", ICLR 2020.
    Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020 (``rectify``).
    """

    state_tensors = (StateTensor("exp_avg"), StateTensor("exp_avg_sq"))
    scalar_state = (("weight_norm", 0.0), ("adam_norm", 0.0), ("trust_ratio", 1.0))
    bench_kwargs = {"lr": 1e-3}
    reference = "pytorch_optimizer.Lamb"
    runs_on_cuda = True
    _tracks_step = False
    #: on the optimizer, not in the groups, as in the reference
    _optimizer_attributes = {
        "degenerated_to_sgd": check_bool,
        "pre_norm": check_bool,
        "maximize": check_bool,
        "n_sma_threshold": lambda name, value: check_number(name, value, label=f"{name} value"),
    }

    __init__ = constructor(
        "lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0, weight_decouple=True, fixed_decay=False, rectify=False,"
        " degenerated_to_sgd=False, n_sma_threshold=5, grad_averaging=True, max_grad_norm=1.0, adam=False,"
        " pre_norm=False, eps=1e-6, foreach=None, maximize=False",
        convert={"betas": tuple},
    )

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        check_number("lr", h["lr"], low=0.0, label="learning rate")
        _check_betas(h["betas"])
        check_number("weight_decay", h["weight_decay"], low=0.0, label="weight_decay value")
        check_number("max_grad_norm", h["max_grad_norm"], low=0.0, label="max_grad_norm value")
        check_number("eps", h["eps"], low=0.0, label="epsilon value")
        for name in ("weight_decouple", "fixed_decay", "rectify", "grad_averaging", "adam"):
            check_bool(name, h[name])

    def step(self, closure: Any = None) -> Any:
        """Perform one optimization step (see :meth:`Optimizer.step`); sparse gradients are refused."""
        refuse_sparse("Lamb", self.parameters())
        return super().step(closure)

    def _pre_norm_factor(self) -> float:
        """The reference's global clipping factor ``min(max_grad_norm / (||g|| + eps), 1)``, a float32 value."""
        max_norm = float(self.defaults["max_grad_norm"])
        if max_norm == 0.0:
            return 1.0
        sums: dict[int, float] = {}
        for group, flats in zip(self.param_groups, self._flats):
            for flat in flats:
                for run in self._prepare(group, flat):
                    seg = self._segments.get(flat, run)
                    out = np.empty(run.p1 - run.p0, np.float64)
                    kernel_for(segment_sum_squares, run.grad)(run.grad, seg, out)
                    sums.update(zip(map(id, flat.params[run.p0 : run.p1]), out))
        # float32 norms, squared in float32 as the reference's, then added in float64 (exact for any
        # realistic spread of magnitudes, so any order of the parameters gives the same sum) and
        # rounded once: within a float32 ulp of the reference's float32 sum
        squares = np.square(np.sqrt(np.fromiter(sums.values(), np.float64, len(sums))).astype(np.float32))
        norm = np.float32(np.sqrt(np.float32(np.sum(squares, dtype=np.float64))))
        norm = norm + np.float32(self.defaults["eps"])
        scale = (np.float32(1) / norm) * np.float32(max_norm)  # torch's number / tensor: reciprocal, then product
        return 1.0 if scale > 1 else float(scale)  # torch.clamp(max=1): NaN stays NaN

    def _update_all(self) -> None:
        # steps counted per group, as the reference (GroupStepCount), when the group updated something
        self._scale = self._pre_norm_factor() if self.pre_norm else 1.0
        super()._update_all()

    def _update(self, group: dict[str, Any], flat: FlatBuffer, run: Run) -> None:
        beta1, beta2 = (float(b) for b in group["betas"])
        lr = float(group["lr"])
        self._stepped.add(id(group))
        t = int(group.get("step", 0)) + 1  # counted once the whole step is done
        step_size, mode = lr, ADAM
        if group["rectify"]:  # RAdam's rectified step size, as the reference forms it
            n_sma_max = 2.0 / (1.0 - beta2) - 1.0
            beta2_t = beta2**t
            n_sma = n_sma_max - 2 * t * beta2_t / (1.0 - beta2_t)
            if n_sma >= self.n_sma_threshold:
                rt = math.sqrt(
                    (1.0 - beta2_t) * (n_sma - 4) / (n_sma_max - 4) * (n_sma - 2) / n_sma * n_sma_max / (n_sma_max - 2)
                )
                mode = RECTIFIED
            else:
                rt = 1.0 if self.degenerated_to_sgd else -1.0
                mode = MOMENTUM
            step_size = step_size * rt
        step_size = step_size / (1.0 - math.pow(beta1, t))
        if group["rectify"] and step_size <= 0:
            mode = SKIP
        reciprocal = group["foreach"] is not False and not group["rectify"]
        seg = self._segments.get(flat, run)
        run.pick(lamb_update)(
            run.data,
            run.grad,
            run.state["exp_avg"],
            run.state["exp_avg_sq"],
            seg,
            flat.scalars["weight_norm"][run.p0 : run.p1],
            flat.scalars["adam_norm"][run.p0 : run.p1],
            flat.scalars["trust_ratio"][run.p0 : run.p1],
            bool(group["adam"]),
            step_size,
            1.0 if group["fixed_decay"] else lr,
            beta1,
            beta2,
            float(group["eps"]),
            float(group["weight_decay"]),
            bool(group["weight_decouple"]),
            bool(group["grad_averaging"]),
            self._scale,
            bool(self.maximize),
            reciprocal,
            mode,
        )
