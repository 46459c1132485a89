"""NAdam (``torch.optim.NAdam``): Adam with Nesterov momentum."""

from __future__ import annotations

from typing import Any

from .._arguments import constructor
from .._jit import kernel
from .._scalar_state import stretches
from .._validation import check_nonnegative
from ..flat import FlatBuffer, Run
from ..kernels.nadam import nadam_advance, nadam_step, nadam_step_sizes
from ..optimizer import Optimizer, StateTensor
from .adam import _check_adam_family

__all__ = ["NAdam"]


@kernel(parallel=False)
def _functional_scalars(s: Any, lr: float, t: int) -> tuple[float, float, float]:
    """``(bias_correction2, grad_step_size, exp_avg_step_size)`` of a :func:`numopt.functional.init` state
    at step ``t``, its ``mu_product`` advanced: the class's formulas."""
    _, bias_correction2, _, _, grad_step_size, exp_avg_step_size = nadam_advance(
        lr, s.betas[0], s.betas[1], s.momentum_decay, t, s.mu_product
    )
    return bias_correction2, grad_step_size, exp_avg_step_size


class NAdam(Optimizer):
    r"""NAdam: Adam with Nesterov momentum and a momentum-decay schedule.

    The update at step :math:`t` (counted from 1, per parameter), for each
    parameter :math:`\theta` with gradient :math:`g_t`, with
    :math:`\psi` = ``momentum_decay``::

        g_t   = -g_t if maximize
        theta = theta * (1 - lr * weight_decay)         (weight_decay != 0, decoupled_weight_decay)
        g_t   = g_t + weight_decay * theta              (weight_decay != 0, otherwise)
        mu_t  = beta1 * (1 - 0.5 * 0.96**(t psi))
        P_t   = P_{t-1} * mu_t                          ('mu_product', P_0 = 1)
        m_t   = beta1 * m_{t-1} + (1 - beta1) * g_t
        v_t   = beta2 * v_{t-1} + (1 - beta2) * g_t**2
        d_t   = sqrt(v_t / (1 - beta2**t)) + eps
        theta = theta - lr (1 - mu_t) / (1 - P_t) * g_t / d_t
                      - lr mu_{t+1} / (1 - P_t mu_{t+1}) * m_t / d_t

    ``'mu_product'`` is kept rounded to float32 after every update, as torch
    keeps it in a float32 scalar tensor (its default dtype) whatever the
    parameters' dtype; results therefore match torch for float64 parameters too.

    Parameters
    ----------
    %(params)s
    %(adam_args)s
    momentum_decay : float, default 4e-3
        The momentum-decay rate :math:`\psi` (>= 0).
    decoupled_weight_decay : bool, default False
        Decay the parameters directly (as AdamW does) instead of through the gradient.
    %(torch_args)s
    %(state_dtype)s

    State
    -----
    ``'step'``, ``'mu_product'`` (a float), ``'exp_avg'`` and ``'exp_avg_sq'``
    per parameter once it has been stepped.

    %(example)s
    >>> opt = numopt.NAdam([w], lr=0.1)
    >>> opt.step()          # lr * g plus the Nesterov look-ahead on the momentum
    >>> w.data.round(4)
    array([0.8944, 0.8944, 0.8944], dtype=float32)

    References
    ----------
    Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop.
    """

    rule = nadam_step
    state_tensors = (StateTensor("exp_avg"), StateTensor("exp_avg_sq", signed=False))
    scalar_state = (("mu_product", 1.0),)
    functional_scalars = _functional_scalars
    bench_kwargs = {"lr": 1e-3}

    __init__ = constructor(
        "lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, momentum_decay=4e-3, decoupled_weight_decay=False, *,"
        " foreach=None, maximize=False, capturable=False, differentiable=False",
        storage=True,
    )

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        _check_adam_family(h)
        check_nonnegative(h, "momentum_decay")

    def _update(self, group: dict[str, Any], flat: FlatBuffer, run: Run) -> None:
        step = run.advance()
        lr = float(group["lr"])
        beta1, beta2 = (float(b) for b in group["betas"])
        # torch's 'mu_product' is a float32 scalar tensor: the product is rounded to float32
        products = flat.scalars["mu_product"][run.p0 : run.p1]
        uniform, bias_correction2, mu, mu_next, grad_step_size, exp_avg_step_size = nadam_advance(
            lr, beta1, beta2, float(group["momentum_decay"]), step, products
        )
        # Scalars go to the kernel as float64, which casts them to the buffer's dtype.
        args = (lr, beta1, beta2, float(group["eps"]), float(group["weight_decay"]), bias_correction2)
        flags = (bool(group["maximize"]), bool(group["decoupled_weight_decay"]))
        # Parameters of a run share their step count, and almost always their
        # mu_product; where they do not (hyperparameters changed between the
        # steps of two parameters, or a loaded state), update each stretch alone.
        for a, b in [(0, run.p1 - run.p0)] if uniform else stretches(products):
            if not uniform:
                grad_step_size, exp_avg_step_size = nadam_step_sizes(lr, mu, mu_next, float(products[a]))
            arrays = run.part(flat.offsets, a, b, "exp_avg", "exp_avg_sq")
            run.pick(nadam_step)(*arrays, *args, grad_step_size, exp_avg_step_size, *flags)
