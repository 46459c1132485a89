"""Schedule-Free SGD and AdamW: steps on the interpolated point y, an averaged x, no schedule.

Schedule-Free methods keep two sequences per parameter: ``z``, the plain SGD (or
Adam-normalized) iterate, and ``x``, a running weighted average of the ``z``\\ s.
Gradients are taken at ``y = (1 - beta) * z + beta * x``. Only ``y`` (in the
parameter, in train mode) and ``z`` (state) are stored: ``x`` is recovered from
them when switching to eval mode, ``x = y + (1 - 1/beta) * (z - y)``, and ``y``
from ``x`` when switching back, ``y = x + (1 - beta) * (z - x)``
(:func:`schedulefree_swap`).
"""

from __future__ import annotations

from .._jit import kernel
from ._generate import elementwise
from ._pieces import fma, lerp, lerp_constants, sqrt, weight_decay, weight_decay_constants


def schedule_scalars(lr, k, warmup_steps, r, weight_lr_power, lr_max, weight_sum):
    """``(scheduled_lr, lr_max, weight_sum, ckp1)`` for step ``k`` (counted from 0), in float64.

    ``scheduled_lr = lr * min(1, (k + 1) / warmup_steps)``; ``lr_max`` and ``weight_sum``
    are the running values after this step (start them at -1 and 0); the average's
    weight ``ckp1 = w_k / weight_sum`` with ``w_k = (k + 1)**r * lr_max**weight_lr_power``
    (0 while ``weight_sum`` is 0). A plain function: the optimizer classes call it as
    Python (Python's float arithmetic, as the reference's); the ``*_scalars`` helpers are
    its jitted form.
    """
    sched = (k + 1) / warmup_steps if k < warmup_steps else 1.0
    lr = lr * sched
    lr_max = max(lr, lr_max)
    # float exponents: Python's float ** int is pow(), where Numba would multiply repeatedly
    weight = ((k + 1) ** float(r)) * (lr_max ** float(weight_lr_power))
    weight_sum = weight_sum + weight
    ckp1 = weight / weight_sum if weight_sum != 0 else 0.0
    return lr, lr_max, weight_sum, ckp1


_schedule_jit = kernel(schedule_scalars, parallel=False)


@kernel(parallel=False)
def sgd_schedulefree_scalars(lr, k, warmup_steps, r, weight_lr_power, lr_max, weight_sum):
    """``(scheduled_lr, lr_max, weight_sum, ckp1)`` for :func:`sgd_schedulefree_step` at step ``k`` (from 0).

    See :func:`schedule_scalars`; jitted, callable from Python and from ``@njit`` code.
    """
    return _schedule_jit(lr, k, warmup_steps, r, weight_lr_power, lr_max, weight_sum)


@kernel(parallel=False)
def adamw_schedulefree_scalars(lr, beta2, k, warmup_steps, r, weight_lr_power, lr_max, weight_sum):
    """``(scheduled_lr, lr_max, weight_sum, ckp1, bias_correction2)`` for :func:`adamw_schedulefree_step`.

    As :func:`sgd_schedulefree_scalars`, and ``bias_correction2 = 1 - beta2**(k + 1)``.
    """
    lr, lr_max, weight_sum, ckp1 = _schedule_jit(lr, k, warmup_steps, r, weight_lr_power, lr_max, weight_sum)
    return lr, lr_max, weight_sum, ckp1, 1.0 - beta2 ** float(k + 1)


def schedulefree_swap_constants(dt, weight):
    """The loop constants of :func:`schedulefree_swap`: torch's ``lerp`` weight ``dt(weight)``."""
    return lerp_constants(dt, weight)


@elementwise(schedulefree_swap_constants, updates=("param",))
def schedulefree_swap(c, param, z):
    r"""Move the parameters between Schedule-Free's sequences, in place: ``param <- lerp(param, z, weight)``.

    ``weight = 1 - beta`` turns ``x`` into ``y`` (``train()``), ``weight = 1 - 1/beta``
    turns ``y`` into ``x`` (``eval()``), with ``beta`` SGD's ``momentum`` or AdamW's
    ``beta1``; rounded as torch's ``lerp_`` with a scalar weight.
    """
    w, small, complement = c
    return lerp(param, z, w, small, complement)


def sgd_schedulefree_constants(dt, lr, momentum, weight_decay, ckp1, first_step):
    """The loop constants of :func:`sgd_schedulefree_step`, formed in float64 and cast once to ``dt``."""
    return (
        weight_decay_constants(dt, lr, weight_decay, False)
        + lerp_constants(dt, ckp1)
        + (dt(lr * (momentum * (1 - ckp1) - 1)), dt(-lr), first_step)
    )


@elementwise(sgd_schedulefree_constants, updates=("param", "z"))
def sgd_schedulefree_step(c, param, grad, z):
    r"""One Schedule-Free SGD step over flat arrays, in place (``schedulefree.SGDScheduleFree``'s rule).

    For every element, with ``y`` the parameter (train mode), ``lr`` the scheduled
    (warmed-up) learning rate and ``ckp1`` the averaging weight of this step::

        z <- y                                          (first_step: z starts at the parameter)
        g <- g + weight_decay * y                       (weight_decay != 0)
        y <- lerp(y, z, ckp1)
        y <- y + lr * (momentum * (1 - ckp1) - 1) * g
        z <- z - lr * g

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype
        ``param`` (``y``) is updated in place; ``grad`` is only read.
    z : 1-D array
        The SGD iterate ``z``, updated in place.
    lr, momentum, weight_decay, ckp1 : float
        float64 scalars (the scheduled ``lr`` and ``ckp1`` from :func:`sgd_schedulefree_scalars`),
        each cast once to the arrays' dtype.
    first_step : bool
        ``z`` holds nothing yet: start it from the parameter.

    References
    ----------
    Defazio et al., "The Road Less Scheduled", NeurIPS 2024.
    """
    wd, decay, coupled, decoupled, w, small, complement, alpha, neg_lr, first_step = c
    z0 = param if first_step else z
    p, g = weight_decay(param, grad, wd, decay, coupled, decoupled)
    y = fma(alpha, g, lerp(p, z0, w, small, complement))
    return y, fma(neg_lr, g, z0)


def adamw_schedulefree_constants(dt, lr, beta1, beta2, eps, weight_decay, ckp1, bias_correction2, first_step):
    """The loop constants of :func:`adamw_schedulefree_step`, formed in float64 and cast once to ``dt``."""
    return (
        weight_decay_constants(dt, lr, weight_decay, False)
        + lerp_constants(dt, ckp1)
        + (dt(lr * (beta1 * (1 - ckp1) - 1)), dt(-lr), first_step)
        + (dt(beta2), dt(1 - beta2), dt(bias_correction2), dt(eps))
    )


@elementwise(adamw_schedulefree_constants, updates=("param", "z", "exp_avg_sq"))
def adamw_schedulefree_step(c, param, grad, z, exp_avg_sq):
    r"""One Schedule-Free AdamW step over flat arrays, in place (``schedulefree.AdamWScheduleFree``'s rule).

    For every element, with ``y`` the parameter (train mode), ``lr`` the scheduled
    (warmed-up) learning rate, ``ckp1`` the averaging weight of this step and
    ``bias_correction2 = 1 - beta2**k`` at step ``k`` (from 1)::

        z <- y                                          (first_step: z starts at the parameter)
        v <- beta2 * v + (1 - beta2) * g * g
        g <- g / (sqrt(v / bias_correction2) + eps)
        g <- g + weight_decay * y                       (weight_decay != 0: decay taken at y)
        y <- lerp(y, z, ckp1)
        y <- y + lr * (beta1 * (1 - ckp1) - 1) * g
        z <- z - lr * g

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype
        ``param`` (``y``) is updated in place; ``grad`` is only read.
    z, exp_avg_sq : 1-D arrays
        The iterate ``z`` and the second moment ``v``, updated in place.
    lr, beta1, beta2, eps, weight_decay, ckp1, bias_correction2 : float
        float64 scalars (``lr``, ``ckp1`` and ``bias_correction2`` from
        :func:`adamw_schedulefree_scalars`), each cast once to the arrays' dtype.
    first_step : bool
        ``z`` holds nothing yet: start it from the parameter.

    References
    ----------
    Defazio et al., "The Road Less Scheduled", NeurIPS 2024.
    """
    wd, decay, coupled, decoupled, w, small, complement, alpha, neg_lr, first_step, beta2, one_minus_beta2, bc2, eps = c
    z0 = param if first_step else z
    v = fma(one_minus_beta2 * grad, grad, exp_avg_sq * beta2)
    g = grad / (sqrt(v / bc2) + eps)
    p, g = weight_decay(param, g, wd, decay, coupled, decoupled)
    y = fma(alpha, g, lerp(p, z0, w, small, complement))
    return y, fma(neg_lr, g, z0), v
