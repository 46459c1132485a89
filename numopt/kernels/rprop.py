"""Resilient backpropagation: per-element step sizes driven by gradient signs."""

from __future__ import annotations

from ._generate import elementwise
from ._pieces import sign


def rprop_constants(dt, lr, etaminus, etaplus, step_size_min, step_size_max, maximize, first_step):
    """The loop constants of :func:`rprop_step`, each cast once to ``dt``."""
    return (dt(lr), dt(etaminus), dt(etaplus), dt(step_size_min), dt(step_size_max), dt(0), dt(1), maximize, first_step)


@elementwise(rprop_constants, updates=("param", "prev", "step_size"))
def rprop_step(c, param, grad, prev, step_size):
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
        On the first step ``step_size`` is read as ``lr``.
    lr, etaminus, etaplus, step_size_min, step_size_max : float
        float64 scalars (Python floats), each cast once to the arrays' dtype inside the kernel.
    maximize, first_step : bool
    """
    lr, etaminus, etaplus, step_size_min, step_size_max, zero, one, maximize, first_step = c
    g = -grad if maximize else grad
    prod = g * prev
    s = lr if first_step else step_size
    if prod > zero:
        s = s * etaplus
    elif prod < zero:
        s = s * etaminus
        g = zero
    if s < step_size_min:
        s = step_size_min
    if s > step_size_max:
        s = step_size_max
    return param - sign(g, zero, one) * s, g, s
