"""State arrays for calling the update rules from your own ``@njit`` code.

Re-exported by :mod:`numopt.functional`; see its docstring for the calling
conventions. Which arrays a rule keeps, in which order, and how they start is
read from the optimizer classes' declarations (``rule``, ``state_tensors``).
"""

from __future__ import annotations

import os
from collections import namedtuple
from typing import Any

import numpy as np

from .optimizer import registered

__all__ = ["init_state"]


def _classes() -> dict[str, type]:
    """Lower-case class name -> every optimizer class declared with an elementwise rule."""
    return {cls.__name__.lower(): cls for cls in registered(elementwise=True)}


def _class_named(name: Any, unknown: str) -> type:
    """The elementwise optimizer class called ``name`` (any case); else ``ValueError`` starting with ``unknown``."""
    classes = _classes()
    cls = classes.get(str(name).lower())
    if cls is None:
        others = sorted(c.__name__ for c in registered() if c.rule is None)
        raise ValueError(
            f"{unknown} {name!r}; expected one of {sorted(classes)} "
            f"({', '.join(others)} keep state that depends on shapes or history: use their optimizer classes)"
        )
    return cls


def __getattr__(name: str) -> type:
    """``<Class>State`` namedtuple types, made on first use (so pickle, and Numba's cache, find them)."""
    cls = _classes().get(name.removesuffix("State").lower()) if name.endswith("State") else None
    if cls is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _state_type(cls)


def _state_type(cls: type) -> type:
    """The namedtuple type of ``cls``'s state arrays (a module global, so its instances pickle)."""
    name = f"{cls.__name__}State"
    tp = globals().get(name)
    if tp is None:
        tp = globals()[name] = namedtuple(name, cls.rule.rule.state)
        tp.__module__ = __name__
    return tp


def init_state(algorithm: str, param: Any, **options: Any) -> tuple:
    """Allocate the state arrays of one update rule for ``param``, before entering a jitted loop.

    Parameters
    ----------
    algorithm : str
        The name of an optimizer class with an elementwise rule, case-insensitive:
        ``'adam'``, ``'adamw'``, ``'sgd'``, ... (the rules :mod:`numopt.functional` exports).
    param : ndarray (or numopt.Parameter)
        float32 or float64, any shape. The state is 1-D with ``param.size``
        elements and ``param``'s dtype, as the kernels take it (pass
        ``param.reshape(-1)`` for a parameter of another shape).
    **options
        Only the options that change which arrays exist or how they start, with
        the class's defaults: e.g. ``momentum`` (sgd, rmsprop), ``amsgrad`` (adam),
        ``centered`` (rmsprop), ``initial_accumulator_value`` (adagrad); the
        error for an unknown option lists those a rule takes.

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
    cls = _class_named(algorithm, "init_state: unknown algorithm")
    fields = cls.rule.rule.state
    tensors = {t.name: t for t in cls.state_tensors}
    defaults = cls.hyperparameter_defaults()
    allowed = {k: defaults[k] for name in fields for k in tensors[name].options}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(
            f"init_state({cls.__name__.lower()!r}) got unexpected option(s) {unknown}; it takes "
            f"{sorted(allowed) if allowed else 'no options'}"
        )
    hparams = {**allowed, **options}
    arr = np.asarray(param)  # a Parameter's live data, without copying
    dtype = arr.dtype
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"init_state: param must be float32 or float64, got dtype {dtype}")
    n = int(arr.size)
    arrays = []
    for name in fields:
        t = tensors[name]
        arrays.append(np.full(n if t.wanted(hparams) else 0, t.initial(hparams), dtype))
    return _state_type(cls)(*arrays)


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
