"""Lookahead's synchronization: fast weights pulled toward slow weights every ``k`` steps."""

from __future__ import annotations

from ._generate import elementwise
from ._pieces import lerp, lerp_constants


def lookahead_constants(dt, alpha, reset):
    """The loop constants of :func:`lookahead_step`: torch's ``lerp`` constants of ``1 - alpha``."""
    return lerp_constants(dt, 1 - alpha) + (dt(0), reset)


@elementwise(
    lookahead_constants,
    updates=("param", "slow_params", "momentum_buffer", "slow_momentum"),
    optional=("momentum_buffer", "slow_momentum"),
)
def lookahead_step(c, param, slow_params, momentum_buffer, slow_momentum):
    r"""One Lookahead synchronization over flat arrays, in place (``pytorch_optimizer.Lookahead``'s rule).

    For every element::

        param <- lerp(param, slow, 1 - alpha)      (= slow + alpha * (param - slow))
        slow  <- param
        buf   <- 0                                  (reset; momentum_buffer given)
        buf   <- lerp(buf, slow_buf, 1 - alpha)    (not reset; both given: pullback momentum)
        slow_buf <- buf

    Parameters
    ----------
    param, slow_params : 1-D arrays of one float dtype
        The fast (optimized) weights and the slow weights, both updated in place.
    momentum_buffer, slow_momentum : 1-D arrays, may be empty
        The wrapped optimizer's momentum and its slow copy; an empty array is neither
        read nor written ('none': both empty; 'reset': ``slow_momentum`` empty).
    alpha : float
        The slow weights' step toward the fast weights, in [0, 1).
    reset : bool
        Zero ``momentum_buffer`` instead of pulling it back.

    References
    ----------
    Zhang et al., "Lookahead Optimizer: k steps forward, 1 step back", NeurIPS 2019.
    """
    w, small, complement, zero, reset = c
    p = lerp(param, slow_params, w, small, complement)
    b = zero if reset else lerp(momentum_buffer, slow_momentum, w, small, complement)
    return p, p, b, b
