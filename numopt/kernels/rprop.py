"""Resilient backpropagation: per-element step sizes driven by gradient signs."""

from __future__ import annotations

from numba import prange

from .._jit import kernel


@kernel
def rprop_step(param, grad, prev, step_size, lr, etaminus, etaplus, step_size_min, step_size_max, maximize, first_step):
    r"""One Rprop step over flat arrays, in place (torch.optim.Rprop's rule).

    For every element, with :math:`g` the gradient (negated if ``maximize``)::

        s     <- lr                                      (first_step: the initial step size)
        s     <- s * etaplus,   if g * prev > 0
        s     <- s * etaminus,  g <- 0,   if g * prev < 0
        s     <- clamp(s, step_size_min, step_size_max)
        param <- param - sign(g) * s
        prev  <- g

    As in torch, ``sign(NaN) = 0``: a NaN gradient (or a NaN product with
    ``prev``) leaves the element and its step size as they are, and is stored in ``prev``.

    Parameters
    ----------
    param, grad : 1-D arrays of one float dtype
        ``param`` is updated in place; ``grad`` is only read.
    prev, step_size : 1-D arrays
        The previous (sign-filtered) gradient and the per-element step sizes, updated in place.
        ``step_size`` is only written when ``first_step``.
    lr, etaminus, etaplus, step_size_min, step_size_max : scalars of ``param``'s dtype
    maximize, first_step : bool
    """
    n = param.size
    zero = param.dtype.type(0)
    one = param.dtype.type(1)
    for i in prange(n):
        g = grad[i]
        if maximize:
            g = -g
        prod = g * prev[i]
        s = lr if first_step else step_size[i]
        if prod > zero:
            s = s * etaplus
        elif prod < zero:
            s = s * etaminus
            g = zero
        if s < step_size_min:
            s = step_size_min
        if s > step_size_max:
            s = step_size_max
        step_size[i] = s
        if g > zero:
            sign = one
        elif g < zero:
            sign = -one
        else:
            sign = zero  # also for NaN, whose sign is 0 in torch
        param[i] = param[i] - sign * s
        prev[i] = g
