"""SGD with momentum, dampening, Nesterov momentum and weight decay."""

from __future__ import annotations

from numba import prange

from .._jit import kernel


@kernel
def sgd_step(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, nesterov, maximize, first_step):
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
    n = param.size
    dt = param.dtype.type
    lr_ = dt(lr)
    mom = dt(momentum)
    keep = dt(1 - dampening)
    wd = dt(weight_decay)
    use_momentum = momentum != 0
    use_wd = weight_decay != 0
    for i in prange(n):
        g = grad[i]
        if maximize:
            g = -g
        if use_wd:
            g = g + wd * param[i]
        if use_momentum:
            if first_step:
                b = g
            else:
                b = mom * momentum_buffer[i] + keep * g
            momentum_buffer[i] = b
            if nesterov:
                g = g + mom * b
            else:
                g = b
        param[i] = param[i] - lr_ * g
