"""Gradient clipping, mirroring ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_`` (torch 2.13).

Gradients of parameters that belong to an optimizer live in its flat gradient
buffers; clipping works on those buffers directly: one parallel pass reduces
the norm (per-chunk partials combined in a fixed order, so the result does not
depend on the thread count), one pass scales. A gradient assigned as a fresh
array since the last step is first copied into the buffer (as the next
``step()`` would do), so ``p.grad`` is the clipped buffer view afterwards.

Gradients in GPU memory (in an optimizer's device flat buffer, or the CUDA
array ``p.grad`` of a parameter outside any optimizer) are reduced and scaled
on the device by the CUDA twins of the same kernels; only the per-chunk
partials (8 bytes per ``CHUNK`` elements) come back to the host, where they
are combined in chunk order as for host gradients. One call may mix host and
GPU parameters: the norm is taken over all of them.
"""

from __future__ import annotations

import math
import types
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from ._bf16 import is_bfloat16
from ._device import cuda_backend, is_cuda_array, kernel_for
from ._jit import CHUNK
from ._validation import check_torch_switches
from .kernels.clip import MAX_ABS, MIN_ABS, SUM_ABS, SUM_POW, SUM_SQUARES, clamp_, norm_partials, scale_
from .parameter import Parameter, SparseGrad

__all__ = ["clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_", "get_total_norm"]


class _Segment:
    """A 1-D gradient range (host or device array) processed by one kernel call; ``target`` is written back if set."""

    __slots__ = ("array", "target")

    def __init__(self, array: Any, target: np.ndarray | None = None) -> None:
        self.array = array
        self.target = target

    def write_back(self) -> None:
        if self.target is not None:
            self.target[...] = self.array.reshape(self.target.shape)


def _as_params(parameters: Any, what: str = "parameters") -> list[Parameter]:
    if isinstance(parameters, Parameter):
        return [parameters]
    if isinstance(parameters, np.ndarray):
        raise TypeError(f"{what} must be numopt.Parameter objects (their .grad is clipped), got an ndarray")
    is_generator = isinstance(parameters, types.GeneratorType)
    params = list(parameters)
    if is_generator and not params:
        warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.", stacklevel=3)
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"{what} must be numopt.Parameter objects, got {type(p).__name__}")
    return params


def _loose_segment(a: Any, writable: bool) -> _Segment:
    """A gradient array outside any flat buffer as a segment (a contiguous host copy when it must be).

    A CUDA array is used where it is (never copied): it must be C-contiguous.
    """
    if a.dtype not in (np.float32, np.float64) and not is_bfloat16(a.dtype):
        raise TypeError(f"gradients must be float32 or float64 (or bfloat16) arrays, got dtype {a.dtype}")
    if not isinstance(a, np.ndarray):
        if not a.is_c_contiguous():
            raise ValueError(
                "a non-contiguous CUDA gradient cannot be reduced or clipped where it is; assign a contiguous one "
                "(numopt does not copy GPU arrays behind your back)"
            )
        return _Segment(a.reshape(a.size))
    if a.flags.c_contiguous and a.flags.writeable:
        return _Segment(a.reshape(-1))
    # The kernels are compiled for writable C-contiguous arrays only: work on a copy, written back if clipping.
    return _Segment(np.array(a, order="C").reshape(-1), a if writable else None)


def _coalesce(g: SparseGrad) -> SparseGrad:
    """The same gradient with sorted, unique row indices (duplicate rows summed)."""
    rows, inverse = np.unique(g.indices, return_inverse=True)
    values = np.zeros((rows.size, *g.values.shape[1:]), g.values.dtype)
    np.add.at(values, inverse.reshape(-1), g.values)
    return SparseGrad(rows, values)


def _grad_segments(params: list[Parameter], writable: bool) -> tuple[list[_Segment], list[np.ndarray]]:
    """Cover every present gradient of ``params`` once with 1-D segments.

    Returns the segments and the per-parameter gradient arrays (as torch sees
    them, for the ``p = 0`` norm). Gradients inside an optimizer's flat buffer
    (host or device) are merged into as few contiguous slices as possible (one
    per buffer when the whole buffer is given); a gradient array assigned since
    the last step is copied into its buffer first (host to device for a NumPy
    gradient of a GPU parameter, as the next step would do). Sparse gradients
    are coalesced, and their values clipped.
    """
    segments: list[_Segment] = []
    per_param: list[Any] = []
    in_flat: dict[int, tuple[Any, set[int]]] = {}
    seen: set[int] = set()
    for p in params:
        if id(p) in seen:
            continue  # listed twice: clipped once
        seen.add(id(p))
        g = p._grad
        if g is None:
            continue
        if isinstance(g, SparseGrad):
            g = _coalesce(g)
            p.grad = g
            segments.append(_Segment(g.values.reshape(-1)))
            per_param.append(g.values)
            continue
        flat = p._flat
        if flat is not None:
            view = flat.grad_view(p._index)
            if g is not view:  # pending assignment: move it into the buffer now
                flat._assign(view, g)
                p._grad = view
            in_flat.setdefault(id(flat), (flat, set()))[1].add(p._index)
            per_param.append(view)
            continue
        per_param.append(g)
        if writable and isinstance(g, np.ndarray) and not g.flags.writeable:
            raise ValueError(f"the gradient of {p!r} is read-only and cannot be clipped in place")
        segments.append(_loose_segment(g, writable))
    for flat, indices in in_flat.values():
        order = sorted(indices)
        start = prev = order[0]
        for i in [*order[1:], None]:
            if i is not None and i == prev + 1:
                prev = i
                continue
            lo, hi = flat.offsets[start], flat.offsets[prev + 1]
            if hi > lo:
                segments.append(_Segment(flat.grad[lo:hi]))
            if i is not None:
                start = prev = i
    return segments, per_param


def _result_dtype(arrays: Iterable[Any]) -> np.dtype:
    dtypes = {a.dtype for a in arrays}
    return np.dtype(np.float64) if np.dtype(np.float64) in dtypes else np.dtype(np.float32)


def _partials(a: Any, mode: int, p: float) -> np.ndarray:
    """Host float64 partials of the 1-D array ``a`` (host or device), one per ``CHUNK`` elements."""
    out = np.empty((a.size + CHUNK - 1) // CHUNK, np.float64)
    if a.size and is_bfloat16(a.dtype):  # bfloat16 gradients: their float32 values (a copy; Numba lacks bfloat16)
        a = a.astype(np.float32)
    if a.size:
        kernel_for(norm_partials, a)(a, mode, p, out)
    return out


def _any_nonzero(g: Any) -> bool:
    """Whether ``g`` has an element that is not zero (NaN counts, as in ``np.count_nonzero``)."""
    if isinstance(g, np.ndarray):
        return bool(np.count_nonzero(g))
    # On the device: the max-abs partials are non-zero (or NaN) iff some element is; no copy of ``g``.
    return bool(np.any(_partials(g.reshape(g.size), MAX_ABS, math.inf) != 0))


def _total_norm(segments: list[_Segment], per_param: list[Any], p: float) -> float:
    """The ``p``-norm of all segments together, in float64."""
    if p == 0:
        # torch takes the 0-"norm" (a count) per tensor, then of those counts:
        # the number of gradients with any non-zero element.
        return float(sum(1 for g in per_param if _any_nonzero(g)))
    if p == 2:
        mode = SUM_SQUARES
    elif p == 1:
        mode = SUM_ABS
    elif p == math.inf:
        mode = MAX_ABS
    elif p == -math.inf:
        mode = MIN_ABS
    else:
        mode = SUM_POW
    values = np.concatenate([np.empty(0, np.float64), *(_partials(s.array, mode, float(p)) for s in segments)])
    if mode == MAX_ABS:
        return float(np.max(values)) if values.size else 0.0
    if mode == MIN_ABS:
        return float(np.min(values)) if values.size else math.inf
    total = math.fsum(values.tolist()) if not np.isnan(values).any() else math.nan
    if mode == SUM_SQUARES:
        return math.sqrt(total)
    if mode == SUM_ABS:
        return total
    if total == 0:
        return 0.0 if p > 0 else math.inf
    return total ** (1.0 / p)


def _check_finite(total: float, p: float, error_if_nonfinite: bool) -> None:
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {p} for gradients from `parameters` is non-finite, so it cannot be "
            "clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
            "`error_if_nonfinite=False`"
        )


def get_total_norm(
    tensors: Any, norm_type: float = 2.0, error_if_nonfinite: bool = False, foreach: bool | None = None
) -> np.floating:
    r"""The norm of several arrays taken together, as if concatenated (``torch.nn.utils.get_total_norm``).

    .. math:: \|g\|_p = \Big(\sum_i |g_i|^p\Big)^{1/p},\quad
              \|g\|_\infty = \max_i |g_i|,\quad \|g\|_{-\infty} = \min_i |g_i|

    Parameters
    ----------
    tensors : ndarray, CUDA array, Parameter or iterable of them
        Arrays (or Parameters, whose ``.grad`` is used) to take the norm of.
        CUDA arrays (C-contiguous) are reduced on the device; host and CUDA
        arrays may be mixed.
    norm_type : float, default 2.0
        ``inf`` and ``-inf`` allowed; ``0`` counts the arrays that have any
        non-zero element (torch's per-tensor-then-total rule; for a CUDA array
        this is decided on the device from its max-abs partials, without
        copying it to the host).
    error_if_nonfinite : bool, default False
        Raise ``RuntimeError`` if the norm is NaN or infinite.
    foreach : bool or None
        Accepted for torch compatibility (one fused pass is always used).

    Returns
    -------
    np.float32 or np.float64
        float64 if any array is float64, else float32 (``0.0`` for no arrays).
    """
    check_torch_switches(foreach=foreach)
    p = float(norm_type)
    single = isinstance(tensors, (np.ndarray, Parameter)) or is_cuda_array(tensors)
    items = [tensors] if single else list(tensors)
    params = [x for x in items if isinstance(x, Parameter)]
    segments, per_param = _grad_segments(params, writable=False) if params else ([], [])
    for x in items:
        if not isinstance(x, Parameter):
            a = cuda_backend().memory.as_device(x) if is_cuda_array(x) else np.asarray(x)
            segments.append(_loose_segment(a, writable=False))
            per_param.append(a)
    if not per_param:
        return np.float32(0.0)
    total = _total_norm(segments, per_param, p)
    _check_finite(total, p, error_if_nonfinite)
    return _result_dtype(per_param).type(total)


def _clip_coef(max_norm: float, total_norm: Any) -> np.floating:
    """torch's clipping coefficient: ``clamp(max_norm / (total_norm + 1e-6), max=1)``, in the norm's dtype."""
    dt = np.asarray(total_norm).dtype
    t = dt.type if dt in (np.float32, np.float64) else np.float64
    coef = (t(1) / (t(total_norm) + t(1e-6))) * t(max_norm)
    return t(1) if coef > 1 else coef


def _scale(segments: list[_Segment], max_norm: float, total_norm: Any) -> None:
    _scale_by(segments, _clip_coef(max_norm, total_norm))


def _scale_by(segments: list[_Segment], coef: Any) -> None:
    """Multiply every segment by ``coef`` in place (one pass; nothing for a coefficient of exactly one)."""
    if coef == 1:
        return  # multiplying by exactly one changes nothing
    for s in segments:
        if s.array.size and is_bfloat16(s.array.dtype):  # in float32, rounded to nearest (NumPy; Numba lacks bf16)
            s.array[...] = (s.array.astype(np.float32) * np.float32(coef)).astype(s.array.dtype)
            s.write_back()
        elif s.array.size:
            kernel_for(scale_, s.array)(s.array, s.array.dtype.type(coef))
            s.write_back()


def clip_grads_with_norm_(parameters: Any, max_norm: float, total_norm: Any, foreach: bool | None = None) -> None:
    """Scale the gradients by ``min(1, max_norm / (total_norm + 1e-6))`` (``torch.nn.utils.clip_grads_with_norm_``).

    Parameters
    ----------
    parameters : Parameter or iterable of Parameters
    max_norm : float
    total_norm : scalar
        Usually from :func:`get_total_norm`; its dtype sets the precision of the coefficient.
    foreach : bool or None
        Accepted for torch compatibility.
    """
    check_torch_switches(foreach=foreach)
    params = _as_params(parameters)
    segments, per_param = _grad_segments(params, writable=True)
    if per_param:
        _scale(segments, float(max_norm), total_norm)


def clip_grad_norm_(
    parameters: Any,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> np.floating:
    r"""Rescale gradients in place so that their total norm is at most ``max_norm``.

    The norm is taken over all gradients together (as if concatenated); every
    gradient is multiplied by

    .. math:: \min\Big(1, \frac{\text{max\_norm}}{\|g\|_p + 10^{-6}}\Big)

    computed, as in torch, in the norm's dtype. Parameters without a gradient
    are ignored.

    Parameters
    ----------
    parameters : Parameter or iterable of Parameters
        E.g. ``optimizer.parameters()``. Gradients in an optimizer's flat
        buffer are reduced and scaled there in one pass each; gradients in GPU
        memory are reduced and scaled on the device (host and GPU parameters
        may be mixed: the norm is over all of them).
    max_norm : float
        Largest allowed total norm.
    norm_type : float, default 2.0
        Order of the norm: any real, ``inf`` (max-abs) or ``-inf``; ``0``
        counts the gradients with a non-zero element (for a GPU gradient
        decided on the device, without copying it to the host).
    error_if_nonfinite : bool, default False
        Raise ``RuntimeError`` (torch's message) when the total norm is NaN or
        infinite, before anything is changed. Otherwise the gradients are
        scaled by the non-finite coefficient, as torch does.
    foreach : bool or None
        Accepted for torch compatibility.

    Returns
    -------
    np.float32 or np.float64
        The total norm before clipping (float64 if any gradient is float64).

    Examples
    --------
    >>> import numpy as np, numopt
    >>> w = numopt.Parameter(np.zeros(2, np.float32))
    >>> opt = numopt.SGD([w], lr=0.1)
    >>> w.grad = np.array([3.0, 4.0], np.float32)
    >>> float(numopt.utils.clip_grad_norm_(opt.parameters(), max_norm=1.0))
    5.0
    >>> np.round(w.grad, 4)
    array([0.6, 0.8], dtype=float32)
    """
    check_torch_switches(foreach=foreach)
    params = _as_params(parameters)
    p = float(norm_type)
    segments, per_param = _grad_segments(params, writable=True)
    if not per_param:
        return np.float32(0.0)
    dtype = _result_dtype(per_param)
    total = _total_norm(segments, per_param, p)
    _check_finite(total, p, error_if_nonfinite)
    total_norm = dtype.type(total)
    _scale(segments, float(max_norm), total_norm)
    return total_norm


def clip_grad_value_(parameters: Any, clip_value: float, foreach: bool | None = None) -> None:
    """Clamp every gradient element to ``[-clip_value, clip_value]`` in place (NaN stays NaN).

    Gradients in GPU memory are clamped on the device.

    Parameters
    ----------
    parameters : Parameter or iterable of Parameters
    clip_value : float
        Cast to each gradient's dtype, as torch does.
    foreach : bool or None
        Accepted for torch compatibility.

    Examples
    --------
    >>> import numpy as np, numopt
    >>> w = numopt.Parameter(np.zeros(3, np.float32))
    >>> w.grad = np.array([-2.0, 0.5, 3.0], np.float32)
    >>> numopt.utils.clip_grad_value_([w], 1.0)
    >>> w.grad
    array([-1. ,  0.5,  1. ], dtype=float32)
    """
    check_torch_switches(foreach=foreach)
    params = _as_params(parameters)
    v = float(clip_value)
    segments, _ = _grad_segments(params, writable=True)
    for s in segments:
        if s.array.size and is_bfloat16(s.array.dtype):  # bfloat16 gradients: NumPy (Numba lacks bfloat16)
            np.clip(s.array, s.array.dtype.type(-v), s.array.dtype.type(v), out=s.array)
            s.write_back()
        elif s.array.size:
            t = s.array.dtype.type
            kernel_for(clamp_, s.array)(s.array, t(-v), t(v))
            s.write_back()
