"""SGD with momentum, dampening, Nesterov momentum and weight decay."""

from __future__ import annotations

from ._generate import elementwise
from ._pieces import fma, weight_decay, weight_decay_constants


def sgd_constants(dt, lr, momentum, dampening, weight_decay, nesterov, maximize, first_step):
    """The loop constants of :func:`sgd_step` (``1 - dampening`` formed in float64, as torch forms it)."""
    return weight_decay_constants(dt, lr, weight_decay, False) + (
        dt(lr),
        dt(momentum),
        dt(1 - dampening),
        momentum != 0,
        nesterov,
        maximize,
        first_step,
    )


@elementwise(sgd_constants, updates=("param", "momentum_buffer"), optional=("momentum_buffer",))
def sgd_step(c, param, grad, momentum_buffer):
    r"""One SGD step over flat arrays, in place (torch.optim.SGD's rule).

    For every element, with :math:`g` the gradient (negated if ``maximize``)::

        g  <- g + weight_decay * param                        (if weight_decay != 0)
        if momentum != 0:
            b  <- g                                           (first_step)
            b  <- momentum * b + (1 - dampening) * g          (later steps)
            g  <- g + momentum * b    if nesterov    else    b
        param <- param - lr * g

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype
        ``param`` is updated in place; ``grad`` is only read.
    momentum_buffer : 1-D array
        Updated in place; unused (may be empty) when ``momentum == 0``.
    lr, momentum, dampening, weight_decay : float
        Best given as Python floats (float64): the kernel forms ``1 - dampening``
        in float64, as torch does, then casts each scalar once to the arrays'
        dtype, so a float32 loop stays float32.
    nesterov, maximize, first_step : bool
        ``first_step`` starts the momentum buffer from the gradient.
    """
    wd, decay, coupled, decoupled, lr, momentum, keep, use_momentum, nesterov, maximize, first_step = c
    g = -grad if maximize else grad
    p, g = weight_decay(param, g, wd, decay, coupled, decoupled)
    b = momentum_buffer
    if use_momentum:
        b = g if first_step else fma(keep, g, b * momentum)
        g = fma(momentum, b, g) if nesterov else b
    return fma(-lr, g, p), b
