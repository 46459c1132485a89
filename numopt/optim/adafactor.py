"""Adafactor (``torch.optim.Adafactor``)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from .._arguments import constructor
from .._jit import CHUNK
from .._validation import check_flags, check_nonnegative, check_number, check_torch_switches
from ..flat import FlatBuffer, Run
from ..kernels.adafactor import adafactor_step, adafactor_step_serial
from ..optimizer import Optimizer

__all__ = ["Adafactor"]


def _row_shape(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    return (*shape[:-1], 1) if len(shape) >= 2 else None


def _col_shape(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    return (*shape[:-2], 1, shape[-1]) if len(shape) >= 2 else None


def _variance_shape(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    return shape if len(shape) < 2 else None


_SHAPES = {"row_var": _row_shape, "col_var": _col_shape, "variance": _variance_shape}


class Adafactor(Optimizer):
    r"""Adafactor: Adam-like steps with factored second moments and relative step sizes.

    For a parameter with two or more dimensions the second moment is kept as a
    row factor (``shape[:-1] + (1,)``) and a column factor (``shape[:-2] + (1, shape[-1])``),
    factoring the last two axes (batched over the leading ones); other
    parameters keep a full ``variance``. The update at step :math:`t`, with
    :math:`G` the gradient::

        G      = -G if maximize
        w      = t ** beta2_decay                        (1 - beta2_t)
        rho    = min(lr, 1 / sqrt(t))
        alpha  = max(eps2, RMS(theta)) * rho
        theta  = theta * (1 - lr * weight_decay)
        ndim >= 2:  R = lerp(R, mean(G**2, axis=-1), w)
                    C = lerp(C, mean(G**2, axis=-2), w)
                    V = R @ C / max(mean(R, axis=-2), eps1)
        otherwise:  V = variance = lerp(variance, G**2, w)
        U      = G / sqrt(max(V, eps1**2))
        theta  = theta - alpha / max(1, RMS(U) / d) * U

    As in torch 2.13 (which departs from the paper): ``lr`` caps the relative step
    size and scales the decoupled weight decay, and ``eps1`` bounds the variance
    estimate from below rather than being added to the squared gradient.

    Parameters
    ----------
    %(params)s
    lr : float, default 1e-2
        Cap of the relative step size, and weight-decay factor (>= 0).
    beta2_decay : float, default -0.8
        Exponent of the second-moment decay schedule (<= 0).
    eps : (float or None, float), default (None, 1e-3)
        ``eps1`` (None: the machine epsilon of the parameter's dtype) and ``eps2``,
        the floor of the parameter's RMS in the step size; both >= 0.
    d : float, default 1.0
        Clipping threshold of the update's RMS (>= 1).
    weight_decay : float, default 0.0
        Decoupled weight decay coefficient (>= 0).
    %(torch_args)s

    State
    -----
    ``'step'``, and ``'row_var'`` and ``'col_var'`` (parameters with two or more
    dimensions) or ``'variance'`` (the others).

    Notes
    -----
    torch fails (ZeroDivisionError) on a parameter with no elements; numopt
    leaves such a parameter and its state unchanged (its step is still counted).
    With ``eps1=None``, torch takes the machine epsilon of the first parameter's
    dtype for the whole group; numopt takes each parameter's own dtype (they
    only differ in groups that mix float32 and float64).

    References
    ----------
    N. Shazeer and M. Stern, "Adafactor: Adaptive Learning Rates with Sublinear
    Memory Cost", ICML 2018. https://arxiv.org/abs/1804.04235

    Examples
    --------
    >>> import numpy as np, numopt
    >>> w = numopt.Parameter(np.ones((2, 3), np.float32))
    >>> opt = numopt.Adafactor([w], lr=0.01)
    >>> w.grad = np.ones((2, 3), np.float32)
    >>> opt.step()
    >>> [tuple(v.shape) for k, v in opt.state[w].items() if k != 'step']
    [(2, 1), (1, 3)]
    >>> w.data[0]
    array([0.99, 0.99, 0.99], dtype=float32)
    """

    _state_keys = ("step", "row_var", "col_var", "variance")

    __init__ = constructor(
        "lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0, *, foreach=None, maximize=False"
    )

    def _construct(self, params: Any, arguments: dict[str, Any], **convert: Callable[[Any], Any]) -> None:
        """Also start the per-buffer segment tables empty."""
        self._segments: weakref.WeakKeyDictionary[FlatBuffer, np.ndarray] = weakref.WeakKeyDictionary()
        super()._construct(params, arguments, **convert)

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        check_nonnegative(h, "lr")
        check_number("beta2_decay", h["beta2_decay"], high=0.0, label="beta2_decay value")
        eps = h["eps"]
        if not isinstance(eps, (tuple, list)) or len(eps) != 2:
            raise TypeError(f"eps must be a pair (eps1 or None, eps2), got {eps!r}")
        if eps[0] is not None:
            check_number("eps[0]", eps[0], low=0.0, label="epsilon1 value")
        check_number("eps[1]", eps[1], low=0.0, label="epsilon2 value")
        check_number("d", h["d"], low=1.0, label="clipping threshold d")
        check_nonnegative(h, "weight_decay")
        check_flags(h, "maximize")
        check_torch_switches(foreach=h.get("foreach"))

    def _state_spec(self, group: dict[str, Any]) -> tuple[tuple[str, float], ...]:
        return (("row_var", 0.0), ("col_var", 0.0), ("variance", 0.0))

    def _state_layout(self, flat: FlatBuffer, name: str) -> list[tuple[int, ...] | None] | None:
        shape_of = _SHAPES.get(name)
        return None if shape_of is None else [shape_of(p.shape) for p in flat.params]

    def _segment_table(self, flat: FlatBuffer) -> np.ndarray:
        """One row per parameter of ``flat``: where its data and factors live (see ``adafactor_step``)."""
        table = self._segments.get(flat)
        if table is None:
            rows, cols, var = (flat.layouts[k][0] for k in ("row_var", "col_var", "variance"))
            table = np.zeros((len(flat.params), 8), np.int64)
            for i, p in enumerate(flat.params):
                shape = p.shape
                factored = len(shape) >= 2
                nr, nc = (shape[-2], shape[-1]) if factored else (1, p.size)
                nb = p.size // (nr * nc) if nr * nc else 0
                table[i] = (
                    flat.offsets[i],
                    p.size,
                    factored,
                    nb,
                    nr,
                    nc,
                    rows[i] if factored else var[i],
                    cols[i],
                )
            self._segments[flat] = table
        return table

    def _update(self, group: dict[str, Any], flat: FlatBuffer, run: Run) -> None:
        t = flat.dtype.type
        step = run.advance()
        lr = float(group["lr"])
        eps1, eps2 = group["eps"]
        if eps1 is None:
            eps1 = float(np.finfo(flat.dtype).eps)
        decay = 1.0 - lr * float(group["weight_decay"]) if group["weight_decay"] != 0 else 1.0
        step_fn = adafactor_step if run.hi - run.lo >= CHUNK else adafactor_step_serial
        step_fn(
            flat.data,
            flat.grad,
            flat.state["row_var"],
            flat.state["col_var"],
            flat.state["variance"],
            self._segment_table(flat),
            run.p0,
            run.p1,
            t(step ** float(group["beta2_decay"])),
            min(lr, 1.0 / step**0.5),
            t(eps1),
            t(eps1 * eps1),
            float(eps2),
            float(group["d"]),
            t(decay),
            bool(group["maximize"]),
        )
