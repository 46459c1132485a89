"""Averaged stochastic gradient descent (``torch.optim.ASGD``)."""

from __future__ import annotations

from typing import Any

from .._arguments import constructor
from .._jit import kernel
from .._scalar_state import all_equal, stretches
from .._validation import check_flags, check_nonnegative, check_number, check_torch_switches
from ..flat import FlatBuffer, Run
from ..kernels.asgd import asgd_advance, asgd_step
from ..optimizer import Optimizer, StateTensor

__all__ = ["ASGD"]


@kernel(parallel=False)
def _functional_scalars(s: Any, lr: float, t: int) -> tuple[float, float, float]:
    """``(eta, decay, mu)`` of a :func:`numopt.functional.init` state at step ``t``, its ``eta`` and
    ``mu`` advanced for the next step: the class's formulas."""
    if t == 1:
        asgd_advance(lr, s.lambd, s.alpha, s.t0, 0.0, s.eta, s.mu)
    eta, mu = s.eta[0], s.mu[0]
    asgd_advance(lr, s.lambd, s.alpha, s.t0, t, s.eta, s.mu)
    return eta, 1.0 - s.lambd * eta, mu


class ASGD(Optimizer):
    r"""Averaged stochastic gradient descent.

    The update at step :math:`t` (counted from 1), for each parameter :math:`\theta`
    with gradient :math:`g_t`; :math:`\eta` starts at ``lr`` and :math:`\mu` at 1::

        g_t    = -g_t if maximize
        g_t    = g_t + weight_decay * theta                  (weight_decay != 0)
        theta  = theta * (1 - lambd * eta) - eta * g_t
        ax     = ax + mu * (theta - ax)   if mu != 1   else   theta
        eta    = lr / (1 + lambd * lr * t) ** alpha
        mu     = 1 / max(1, t - t0)

    ``ax`` is the averaged parameter (read it from ``optimizer.state[p]['ax']``);
    averaging starts once :math:`t > t_0`. As in torch, ``eta`` and ``mu`` are kept
    as float32 numbers whatever the parameter's dtype.

    Parameters
    ----------
    %(params)s
    %(lr)s
    lambd : float, default 1e-4
        Decay term.
    alpha : float, default 0.75
        Power for the eta update.
    t0 : float, default 1e6
        The step at which averaging starts.
    %(l2)s
    %(torch_args)s

    State
    -----
    ``'step'``, ``'eta'``, ``'mu'`` (numbers) and ``'ax'`` (shaped like the parameter).

    References
    ----------
    B. T. Polyak and A. B. Juditsky, "Acceleration of stochastic approximation by
    averaging", SIAM J. Control Optim. 30(4), 1992.

    %(example)s
    >>> opt = numopt.ASGD([w], lr=0.1, lambd=0.0)
    >>> opt.step()
    >>> w.data
    array([0.9, 0.9, 0.9], dtype=float32)
    """

    rule = asgd_step
    functional_scalars = _functional_scalars
    state_tensors = (StateTensor("ax"),)
    scalar_state = (("eta", 0.0), ("mu", 1.0))  # eta starts at lr, set on the first step
    bench_kwargs = {"lr": 1e-3}

    __init__ = constructor(
        "lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0, foreach=None, maximize=False, differentiable=False,"
        " capturable=False"
    )

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        check_nonnegative(h, "lr")
        for name in ("lambd", "alpha", "t0"):
            check_number(name, h[name])
        check_nonnegative(h, "weight_decay")
        check_flags(h, "maximize")
        check_torch_switches(
            foreach=h.get("foreach"), differentiable=h.get("differentiable"), capturable=h.get("capturable")
        )

    def _update(self, group: dict[str, Any], flat: FlatBuffer, run: Run) -> None:
        lr, lambd = float(group["lr"]), float(group["lambd"])
        etas = flat.scalars["eta"][run.p0 : run.p1]
        mus = flat.scalars["mu"][run.p0 : run.p1]
        alpha, t0 = float(group["alpha"]), float(group["t0"])
        if run.step == 0:
            asgd_advance(lr, lambd, alpha, t0, 0.0, etas, mus)
        step = run.advance()
        wd = float(group["weight_decay"])
        maximize = bool(group["maximize"])
        kernel = run.pick(asgd_step)
        # Parameters of a run share their step count, hence (almost always) eta and mu: one kernel
        # call per stretch of equal values.
        for a, b in [(0, run.p1 - run.p0)] if all_equal(etas, mus) else stretches(etas, mus):
            eta = float(etas[a])  # scalars go to the kernel as float64; it casts them to the buffer's dtype
            kernel(*run.part(flat.offsets, a, b, "ax"), eta, 1.0 - lambd * eta, float(mus[a]), wd, maximize)
        asgd_advance(lr, lambd, alpha, t0, step, etas, mus)
