"""RMSprop: gradients scaled by a running root mean square, optionally centered and with momentum."""

from __future__ import annotations

from ._generate import elementwise
from ._pieces import fma, lerp, lerp_constants, sqrt, weight_decay, weight_decay_constants


def rmsprop_constants(dt, lr, alpha, eps, weight_decay, momentum, centered, maximize):
    """The loop constants of :func:`rmsprop_step` (``1 - alpha`` formed in float64), each cast once to ``dt``."""
    return (
        weight_decay_constants(dt, lr, weight_decay, False)
        + lerp_constants(dt, 1 - alpha)
        + (dt(-lr), dt(alpha), dt(eps), dt(momentum), momentum > 0, centered, maximize)
    )


@elementwise(
    rmsprop_constants,
    updates=("param", "square_avg", "grad_avg", "momentum_buffer"),
    optional=("grad_avg", "momentum_buffer"),
)
def rmsprop_step(c, param, grad, square_avg, grad_avg, momentum_buffer):
    r"""One RMSprop step over flat arrays, in place (torch.optim.RMSprop's rule).

    For every element, with :math:`g` the gradient (negated if ``maximize``)::

        g          <- g + weight_decay * param                  (if weight_decay != 0)
        square_avg <- alpha * square_avg + (1 - alpha) * g * g
        if centered:
            grad_avg <- grad_avg + (1 - alpha) * (g - grad_avg)   (torch's lerp)
            avg      <- sqrt(square_avg - grad_avg * grad_avg) + eps
        else:
            avg      <- sqrt(square_avg) + eps
        if momentum > 0:
            b     <- momentum * b + g / avg
            param <- param - lr * b
        else:
            param <- param - lr * g / avg

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype
        ``param`` is updated in place; ``grad`` is only read.
    square_avg : 1-D array
        Running average of squared gradients, updated in place.
    grad_avg : 1-D array
        Running average of gradients, updated in place; unused (may be empty) unless ``centered``.
    momentum_buffer : 1-D array
        Updated in place; unused (may be empty) unless ``momentum > 0``.
    lr, alpha, eps, weight_decay, momentum : float
        float64 scalars (Python floats), each cast once to the arrays' dtype inside
        the kernel; ``1 - alpha`` is formed in float64 first, as torch forms it.
    centered, maximize : bool
    """
    (
        wd,
        decay,
        coupled,
        decoupled,
        keep,
        small,
        complement,
        neg_lr,
        alpha,
        eps,
        momentum,
        use_momentum,
        centered,
        maximize,
    ) = c
    g = -grad if maximize else grad
    p, g = weight_decay(param, g, wd, decay, coupled, decoupled)
    sa = fma(keep * g, g, square_avg * alpha)
    ga = grad_avg
    if centered:
        ga = lerp(ga, g, keep, small, complement)
        avg = sqrt(fma(-ga, ga, sa)) + eps
    else:
        avg = sqrt(sa) + eps
    b = momentum_buffer
    if use_momentum:
        b = b * momentum + g / avg
        p = fma(neg_lr, b, p)
    else:
        p = p + (neg_lr * g) / avg
    return p, sa, ga, b
