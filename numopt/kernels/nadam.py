"""NAdam: Adam with Nesterov momentum and a momentum-decay schedule."""

from __future__ import annotations

import numpy as np

from .._jit import kernel
from .._scalar_state import scale_as_float32
from ._generate import elementwise
from ._pieces import MOMENTS, moments, moments_constants, sqrt


def nadam_constants(
    dt,
    lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    bias_correction2,
    grad_step_size,
    exp_avg_step_size,
    maximize,
    decoupled_weight_decay,
):
    """The loop constants of :func:`nadam_step`, each formed in float64 and cast once to ``dt``."""
    return moments_constants(dt, lr, beta1, beta2, weight_decay, decoupled_weight_decay) + (
        dt(eps),
        dt(bias_correction2),
        dt(-grad_step_size),
        dt(-exp_avg_step_size),
        maximize,
    )


@elementwise(nadam_constants, updates=("param", "exp_avg", "exp_avg_sq"))
def nadam_step(c, param, grad, exp_avg, exp_avg_sq):
    r"""One NAdam step over flat arrays, in place (torch.optim.NAdam's rule).

    For every element, with :math:`g` the gradient (negated if ``maximize``)::

        param <- param * (1 - lr * weight_decay)     (weight_decay != 0, decoupled)
        g     <- g + weight_decay * param            (weight_decay != 0, coupled)
        m     <- lerp(m, g, 1 - beta1)               (= beta1 * m + (1 - beta1) * g)
        v     <- beta2 * v + (1 - beta2) * g * g
        denom <- sqrt(v / bias_correction2) + eps
        param <- param - grad_step_size * g / denom
        param <- param - exp_avg_step_size * m / denom

    The caller computes, at step ``t`` (from 1), in float64 and with
    ``psi = momentum_decay``::

        bias_correction2  = 1 - beta2**t
        mu_t              = beta1 * (1 - 0.5 * 0.96**(t * psi))
        mu_product_t      = mu_product_{t-1} * mu_t          (per-parameter state, starts at 1)
        grad_step_size    = lr * (1 - mu_t) / (1 - mu_product_t)
        exp_avg_step_size = lr * mu_{t+1} / (1 - mu_product_t * mu_{t+1})

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype
        ``param`` is updated in place; ``grad`` is only read.
    exp_avg, exp_avg_sq : 1-D arrays
        First and second moment estimates ``m``, ``v``, updated in place.
    lr, beta1, beta2, eps, weight_decay, bias_correction2, grad_step_size, exp_avg_step_size : float
        Float scalars, best given as Python floats (float64): the kernel forms
        torch's derived scalars (``1 - beta1``, ``1 - beta2``, ``1 - lr * weight_decay``)
        in float64, then casts each once to the arrays' dtype, so a float32 loop
        stays float32 and matches torch's rounding.
    maximize, decoupled_weight_decay : bool
    """
    eps, bc2, neg_grad_step, neg_avg_step, maximize = c[MOMENTS:]
    p, g, m, v = moments(param, grad, exp_avg, exp_avg_sq, maximize, c)
    denom = sqrt(v / bc2) + eps
    p = p + (neg_grad_step * g) / denom
    return p + (neg_avg_step * m) / denom, m, v


@kernel(parallel=False)
def nadam_momentum(beta1, beta2, momentum_decay, step):
    """``(mu, mu_next, bias_correction2)`` at step ``step`` (from 1), in float64: NAdam's momentum
    coefficients of this step and the next, ``beta1 * (1 - 0.5 * 0.96**(t * momentum_decay))``,
    and ``1 - beta2**t``."""
    t = np.float64(step)
    b1 = np.float64(beta1)
    psi = np.float64(momentum_decay)
    mu = b1 * (1.0 - 0.5 * (0.96 ** (t * psi)))
    mu_next = b1 * (1.0 - 0.5 * (0.96 ** ((t + 1.0) * psi)))
    return mu, mu_next, 1.0 - np.float64(beta2) ** t


@kernel(parallel=False)
def nadam_step_sizes(lr, mu, mu_next, mu_product):
    """``(grad_step_size, exp_avg_step_size)`` for :func:`nadam_step`, from :func:`nadam_momentum`'s
    ``mu, mu_next`` and the running product ``mu_product`` (this step's ``mu`` included)."""
    lr_ = np.float64(lr)
    grad_step_size = lr_ * (1.0 - mu) / (1.0 - mu_product)
    exp_avg_step_size = lr_ * mu_next / (1.0 - mu_product * mu_next)
    return grad_step_size, exp_avg_step_size


@kernel(parallel=False)
def nadam_advance(lr, beta1, beta2, momentum_decay, step, mu_products):
    """One step of NAdam's scalars for parameters that share a step count, in one call.

    Multiplies each running product in ``mu_products`` (float64 array, updated in place) by
    this step's ``mu``, rounded to float32 as torch keeps it, and returns ``(uniform,
    bias_correction2, mu, mu_next, grad_step_size, exp_avg_step_size)``: ``uniform`` is
    True when every product ends equal, and the step sizes are those of ``mu_products[0]``
    (for another product, :func:`nadam_step_sizes`).
    """
    mu, mu_next, bias_correction2 = nadam_momentum(beta1, beta2, momentum_decay, step)
    uniform = scale_as_float32(mu_products, mu)
    grad_step_size, exp_avg_step_size = nadam_step_sizes(lr, mu, mu_next, mu_products[0])
    return uniform, bias_correction2, mu, mu_next, grad_step_size, exp_avg_step_size


@kernel(parallel=False)
def nadam_scalars(lr, beta1, beta2, momentum_decay, step, mu_product):
    """``(bias_correction2, grad_step_size, exp_avg_step_size, mu_product)`` for :func:`nadam_step`.

    ``mu_product`` is NAdam's running product of momentum coefficients: start it
    at 1.0 and pass the value this function returned at the previous step (it is
    rounded to float32 at every step, as torch keeps it). The optimizer class
    computes the same with :func:`nadam_momentum` and :func:`nadam_step_sizes`.
    """
    mu, mu_next, bias_correction2 = nadam_momentum(beta1, beta2, momentum_decay, step)
    product = np.float64(np.float32(mu_product) * np.float32(mu))
    grad_step_size, exp_avg_step_size = nadam_step_sizes(lr, mu, mu_next, product)
    return bias_correction2, grad_step_size, exp_avg_step_size, product
