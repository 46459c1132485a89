"""Resilient backpropagation (``torch.optim.Rprop``)."""

from __future__ import annotations

from typing import Any

from .._arguments import constructor
from .._jit import kernel
from .._validation import check_bool, check_number, check_torch_switches
from ..kernels.rprop import rprop_step
from ..optimizer import Optimizer, StateTensor

__all__ = ["Rprop"]


def _check_pair(name: str, value: Any) -> tuple[Any, Any]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a pair of numbers, got {value!r}")
    return value[0], value[1]


@kernel(parallel=False)
def _functional_scalars(s: Any, lr: float, t: int) -> tuple[float, float, float, float]:
    """``(etaminus, etaplus, step_size_min, step_size_max)``
    of a :func:`numopt.functional.init` state at step ``t``: the class's formulas."""
    return (s.etas[0], s.etas[1], s.step_sizes[0], s.step_sizes[1])


class Rprop(Optimizer):
    r"""Resilient backpropagation: each element moves by its own step size, in the gradient's sign.

    The update, for each element with gradient :math:`g_t` and step size :math:`s`
    (every :math:`s` starts at ``lr``)::

        g_t   = -g_t if maximize
        s     = min(s * etaplus, step_size_max)    if g_{t-1} * g_t > 0
        s     = max(s * etaminus, step_size_min),
        g_t   = 0                                  if g_{t-1} * g_t < 0
        theta = theta - sign(g_t) * s
        g_{t-1} <- g_t

    Parameters
    ----------
    %(params)s
    lr : float, default 1e-2
        The initial step size (>= 0).
    etas : (float, float), default (0.5, 1.2)
        ``(etaminus, etaplus)``, the factors that shrink and grow a step size;
        ``0 < etaminus < 1 < etaplus``.
    step_sizes : (float, float), default (1e-6, 50)
        The smallest and largest allowed step sizes (a minimum above the maximum
        pins every step size to the maximum, as torch's ``clamp`` does).
    %(torch_args)s

    State
    -----
    ``'step'``, ``'prev'`` (the last gradient, zeroed where its sign flipped) and
    ``'step_size'`` per parameter.

    References
    ----------
    M. Riedmiller and H. Braun, "A direct adaptive method for faster backpropagation
    learning: the RPROP algorithm", IEEE ICNN 1993.

    %(example_start)s
    >>> opt = numopt.Rprop([w], lr=0.1)
    >>> w.grad = np.array([1.0, -1.0, 0.0], np.float32)
    >>> opt.step()
    >>> w.data
    array([0.9, 1.1, 1. ], dtype=float32)
    """

    rule = rprop_step
    functional_scalars = _functional_scalars
    state_tensors = (StateTensor("prev"), StateTensor("step_size"))  # step sizes start at lr, set on the first step
    bench_kwargs = {"lr": 1e-3}

    __init__ = constructor(
        "lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), *, capturable=False, foreach=None, maximize=False,"
        " differentiable=False"
    )

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        check_number("lr", h["lr"], low=0.0, label="learning rate")
        etaminus, etaplus = _check_pair("etas", h["etas"])
        check_number("etas[0]", etaminus, label="eta value")
        check_number("etas[1]", etaplus, label="eta value")
        if not 0.0 < etaminus < 1.0 < etaplus:
            raise ValueError(
                f"Invalid eta values: {etaminus}, {etaplus} (etas must satisfy 0 < etaminus < 1 < etaplus, "
                f"got etas={h['etas']!r})"
            )
        lo, hi = _check_pair("step_sizes", h["step_sizes"])
        check_number("step_sizes[0]", lo, label="minimal step size")
        check_number("step_sizes[1]", hi, label="maximal step size")
        check_bool("maximize", h["maximize"])
        check_torch_switches(
            foreach=h.get("foreach"), differentiable=h.get("differentiable"), capturable=h.get("capturable")
        )

    def _step_scalars(self, group: dict[str, Any], step: float) -> dict[str, Any]:
        (etaminus, etaplus), (step_size_min, step_size_max) = group["etas"], group["step_sizes"]
        return {
            "etaminus": float(etaminus),
            "etaplus": float(etaplus),
            "step_size_min": float(step_size_min),
            "step_size_max": float(step_size_max),
        }
