"""State allocation and per-step scalars for calling the update rules from your own ``@njit`` code.

Re-exported by :mod:`numopt.functional`; see its docstring for the calling conventions.
"""

from __future__ import annotations

import os
from collections import namedtuple
from typing import Any

import numpy as np

from ._jit import kernel

__all__ = [
    "STATE_FIELDS",
    "adagrad_scalars",
    "adam_scalars",
    "adamax_scalars",
    "asgd_scalars",
    "init_state",
    "nadam_scalars",
    "radam_scalars",
]

#: algorithm -> (namedtuple type name, state fields in kernel argument order)
STATE_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sgd": ("SGDState", ("momentum_buffer",)),
    "adam": ("AdamState", ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")),
    "adamax": ("AdamaxState", ("exp_avg", "exp_inf")),
    "nadam": ("NAdamState", ("exp_avg", "exp_avg_sq")),
    "radam": ("RAdamState", ("exp_avg", "exp_avg_sq")),
    "adagrad": ("AdagradState", ("sum",)),
    "adadelta": ("AdadeltaState", ("square_avg", "acc_delta")),
    "rmsprop": ("RMSpropState", ("square_avg", "grad_avg", "momentum_buffer")),
    "rprop": ("RpropState", ("prev", "step_size")),
    "asgd": ("ASGDState", ("ax",)),
}
_ALIASES = {"adamw": "adam"}
#: the keyword options each algorithm's state depends on, with torch's defaults
_OPTIONS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.0},
    "adam": {"amsgrad": False},
    "adagrad": {"initial_accumulator_value": 0.0},
    "rmsprop": {"momentum": 0.0, "centered": False},
}
_TYPES: dict[str, type] = {}
for _name, (_type_name, _fields) in STATE_FIELDS.items():
    _TYPES[_name] = globals()[_type_name] = namedtuple(_type_name, _fields)  # module globals: picklable


def init_state(algorithm: str, param: Any, **options: Any) -> tuple:
    """Allocate the state arrays of one update rule for ``param``, before entering a jitted loop.

    Parameters
    ----------
    algorithm : str
        ``'sgd'``, ``'adam'`` (or ``'adamw'``), ``'adamax'``, ``'nadam'``, ``'radam'``,
        ``'adagrad'``, ``'adadelta'``, ``'rmsprop'``, ``'rprop'`` or ``'asgd'``
        (case-insensitive).
    param : ndarray (or numopt.Parameter)
        float32 or float64, any shape. The state is 1-D with ``param.size``
        elements and ``param``'s dtype, as the kernels take it (pass
        ``param.reshape(-1)`` for a parameter of another shape).
    **options
        Only the options that change which arrays exist or how they start, with
        torch's defaults: ``momentum`` (sgd, rmsprop), ``amsgrad`` (adam),
        ``centered`` (rmsprop), ``initial_accumulator_value`` (adagrad).

    Returns
    -------
    namedtuple of ndarrays
        The fields are the kernel's state arguments, in its order, named as in
        ``optimizer.state[p]`` (e.g. ``AdamState(exp_avg, exp_avg_sq, max_exp_avg_sq)``).
        Arrays an option turns off (``max_exp_avg_sq`` without ``amsgrad``, SGD's
        ``momentum_buffer`` without momentum, RMSprop's ``grad_avg`` unless
        ``centered`` and ``momentum_buffer`` unless ``momentum > 0``) are empty.
        A namedtuple of arrays can be passed to an ``@njit`` function as it is.

    Examples
    --------
    >>> import numpy as np
    >>> from numopt.functional import init_state
    >>> st = init_state("adam", np.zeros((3, 4), np.float32), amsgrad=True)
    >>> st.exp_avg.shape, st.max_exp_avg_sq.shape, st.exp_avg.dtype
    ((12,), (12,), dtype('float32'))
    """
    key = str(algorithm).lower()
    key = _ALIASES.get(key, key)
    if key not in STATE_FIELDS:
        raise ValueError(
            f"init_state: unknown algorithm {algorithm!r}; expected one of "
            f"{sorted([*STATE_FIELDS, *_ALIASES])} (Adafactor, SparseAdam, Muon and LBFGS keep "
            "state that depends on shapes or history: use their optimizer classes)"
        )
    allowed = _OPTIONS.get(key, {})
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(
            f"init_state({key!r}) got unexpected option(s) {unknown}; it takes "
            f"{sorted(allowed) if allowed else 'no options'}"
        )
    opts = {**allowed, **options}
    arr = np.asarray(param)  # a Parameter's live data, without copying
    dtype = arr.dtype
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"init_state: param must be float32 or float64, got dtype {dtype}")
    n = int(arr.size)

    def zeros(used: bool = True) -> np.ndarray:
        return np.zeros(n if used else 0, dtype)

    if key == "sgd":
        arrays = (zeros(opts["momentum"] != 0),)
    elif key == "adam":
        arrays = (zeros(), zeros(), zeros(bool(opts["amsgrad"])))
    elif key == "adagrad":
        arrays = (np.full(n, opts["initial_accumulator_value"], dtype),)
    elif key == "rmsprop":
        arrays = (zeros(), zeros(bool(opts["centered"])), zeros(opts["momentum"] > 0))
    else:
        arrays = tuple(zeros() for _ in STATE_FIELDS[key][1])
    return _TYPES[key](*arrays)


# -- per-step scalars, callable from Python and from @njit code -------------------------------------
# Each takes the step count t (from 1, as int or float) and returns float64 values computed as the
# optimizer classes compute them; pass them to the kernel as they are (the Adam family casts them
# to the arrays' dtype itself) or cast them (dt(x)) for the kernels that take scalars of the arrays' dtype.


@kernel(parallel=False)
def adam_scalars(beta1, beta2, step):
    """``(bias_correction1, bias_correction2_sqrt)`` for :func:`adam` at step ``step`` (from 1).

    ``1 - beta1**t`` and ``sqrt(1 - beta2**t)``, in float64.
    """
    t = np.float64(step)
    return 1.0 - np.float64(beta1) ** t, (1.0 - np.float64(beta2) ** t) ** 0.5


@kernel(parallel=False)
def adamax_scalars(beta1, step):
    """``bias_correction = 1 - beta1**t`` for :func:`adamax` at step ``step`` (from 1), in float64."""
    return 1.0 - np.float64(beta1) ** np.float64(step)


@kernel(parallel=False)
def radam_scalars(beta1, beta2, step):
    """``(bias_correction1, bias_correction2_sqrt, rect)`` for :func:`radam` at step ``step`` (from 1).

    ``rect`` is RAdam's variance rectification term, 0 while the variance is not
    tractable (``rho_t <= 5``: the kernel then takes a plain momentum step).
    """
    t = np.float64(step)
    b1 = np.float64(beta1)
    b2 = np.float64(beta2)
    bias_correction1 = 1.0 - b1**t
    bias_correction2 = 1.0 - b2**t
    rho_inf = 2.0 / (1.0 - b2) - 1.0
    rho_t = rho_inf - 2.0 * t * (b2**t) / bias_correction2
    rect = 0.0
    if rho_t > 5.0:
        rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)) ** 0.5
    return bias_correction1, bias_correction2**0.5, rect


@kernel(parallel=False)
def nadam_scalars(lr, beta1, beta2, momentum_decay, step, mu_product):
    """``(bias_correction2, grad_step_size, exp_avg_step_size, mu_product)`` for :func:`nadam`.

    ``mu_product`` is NAdam's running product of momentum coefficients: start it
    at 1.0 and pass the value this function returned at the previous step (it is
    rounded to float32 at every step, as torch keeps it).
    """
    t = np.float64(step)
    b1 = np.float64(beta1)
    psi = np.float64(momentum_decay)
    lr_ = np.float64(lr)
    mu = b1 * (1.0 - 0.5 * (0.96 ** (t * psi)))
    mu_next = b1 * (1.0 - 0.5 * (0.96 ** ((t + 1.0) * psi)))
    product = np.float64(np.float32(mu_product) * np.float32(mu))
    grad_step_size = lr_ * (1.0 - mu) / (1.0 - product)
    exp_avg_step_size = lr_ * mu_next / (1.0 - product * mu_next)
    return 1.0 - np.float64(beta2) ** t, grad_step_size, exp_avg_step_size, product


@kernel(parallel=False)
def adagrad_scalars(lr, lr_decay, step):
    """``neg_clr = -lr / (1 + (t - 1) * lr_decay)`` for :func:`adagrad` at step ``step`` (from 1), in float64."""
    return -(np.float64(lr) / (1.0 + (np.float64(step) - 1.0) * np.float64(lr_decay)))


@kernel(parallel=False)
def asgd_scalars(lr, lambd, alpha, t0, step):
    """``(eta, mu)`` for :func:`asgd`'s step ``step + 1``, after step ``step`` (0 before the first step).

    Both are rounded to float32, as torch keeps them: ``eta = lr`` and ``mu = 1``
    before the first step, then ``eta = lr / (1 + lambd * lr * t) ** alpha`` and
    ``mu = 1 / max(1, t - t0)``. The kernel also takes ``decay = 1 - lambd * eta``.
    """
    t = np.float64(step)
    lr_ = np.float64(lr)
    if t == 0.0:
        return np.float64(np.float32(lr_)), 1.0
    eta = lr_ / ((1.0 + np.float64(lambd) * lr_ * t) ** np.float64(alpha))
    mu = 1.0 / max(1.0, t - np.float64(t0))
    return np.float64(np.float32(eta)), np.float64(np.float32(mu))


def _start_thread_pool() -> None:
    """Start Numba's thread pool now, so compiled code that calls the parallel kernels finds it running.

    A user's ``@njit(cache=True)`` function (not ``parallel``) that calls one of the
    parallel kernels is loaded from Numba's on-disk cache without its callees; Numba
    is meant to start its threading layer then (the ``reload_init`` hooks of parfors),
    and a cached caller that lacked them crashed on its first call in a fresh process
    (numba issue 8578, seen with torch imported first). Starting the pool when
    ``numopt.functional`` is imported makes that impossible whatever the Numba version.
    It costs a few milliseconds, and fixes the threading layer at this point: the layer
    numopt chose at ``import numopt`` (``numopt/_threads.py``; a layer without a second
    OpenMP pool when torch is already imported). In a process that uses torch too,
    import torch before ``numopt.functional``; ``NUMBA_THREADING_LAYER`` must be set
    before this import, as before any parallel call.
    """
    if os.environ.get("NUMBA_DISABLE_JIT", "0").strip() not in ("", "0"):
        return
    try:
        from numba.np.ufunc import parallel
    except ImportError:  # pragma: no cover - moved in some future Numba: callers can still use parallel=True
        return
    launch = getattr(parallel, "_launch_threads", None)
    if launch is not None:
        launch()
