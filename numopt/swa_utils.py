"""Weight averaging: SWA and EMA, mirroring ``torch.optim.swa_utils`` (torch 2.13) for Parameters.

:class:`AveragedModel` keeps a running average of a list of parameters (or
of an optimizer's parameters) in one contiguous buffer per dtype, and folds
the current values in with one Numba pass per contiguous range: when the
parameters belong to one optimizer group, that is one pass over the flat
buffers. The average of parameters in GPU memory is kept in GPU memory and
updated by the CUDA twins of the same kernels. :class:`SWALR` anneals the
learning rate to a constant SWA rate.

>>> import numpy as np, numopt
>>> w = numopt.Parameter(np.zeros(3, np.float32))
>>> opt = numopt.SGD([w], lr=0.1)
>>> ema = numopt.swa_utils.AveragedModel(opt, multi_avg_fn=numopt.swa_utils.get_ema_multi_avg_fn(0.9))
>>> for _ in range(3):
...     w.grad = -np.ones(3, np.float32); opt.step(); ema.update_parameters(opt)
>>> np.round(ema.module[0].data, 4)   # EMA of 0.1, 0.2, 0.3 (started at the first value)
array([0.129, 0.129, 0.129], dtype=float32)
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import numpy as np

from ._device import cuda_backend, is_cuda_array, kernel_for
from .kernels.averaging import lerp_, running_mean_
from .lr_scheduler import LRScheduler, _per_group
from .optimizer import Optimizer
from .parameter import Parameter

__all__ = [
    "SWALR",
    "AveragedModel",
    "get_ema_avg_fn",
    "get_ema_multi_avg_fn",
    "get_swa_avg_fn",
    "get_swa_multi_avg_fn",
]

ArrayList = Sequence[np.ndarray]
#: where an average is kept: (dtype, in GPU memory)
_Key = tuple[np.dtype, bool]


def _copy(dst: Any, src: Any) -> None:
    """Copy ``src`` into ``dst`` where ``dst`` lives (host, or device: device to device, or host to device)."""
    if isinstance(dst, np.ndarray):
        dst[...] = src if not is_cuda_array(src) else cuda_backend().memory.to_host(src)
    else:
        cuda_backend().memory.copy_into(dst, src if is_cuda_array(src) else np.asarray(src, dst.dtype))


def _flat_pair(averaged: Any, current: Any) -> tuple[Any, Any] | None:
    """1-D views for the kernels, or ``None`` when the (host) arrays need the NumPy fallback."""
    if is_cuda_array(averaged):
        mem = cuda_backend().memory
        avg = mem.as_device(averaged)
        cur = mem.as_device(current) if is_cuda_array(current) else None
        if cur is None or cur.dtype != avg.dtype or cur.size != avg.size:
            raise TypeError(
                "averaging in GPU memory needs a current CUDA array of the same dtype and size, got "
                f"{type(current).__name__} {getattr(current, 'dtype', '?')} {getattr(current, 'shape', '?')} "
                f"for {avg.dtype} {avg.shape}"
            )
        if not (avg.is_c_contiguous() and cur.is_c_contiguous()):
            raise ValueError("averaging in GPU memory needs C-contiguous CUDA arrays")
        return avg.reshape(avg.size), cur.reshape(cur.size)
    if not (isinstance(averaged, np.ndarray) and averaged.flags.c_contiguous and averaged.flags.writeable):
        return None
    if averaged.dtype not in (np.float32, np.float64):
        return None
    cur = np.ascontiguousarray(current, dtype=averaged.dtype)
    if cur.shape != averaged.shape and cur.size != averaged.size:
        raise ValueError(f"cannot average arrays of shapes {averaged.shape} and {cur.shape}")
    return averaged.reshape(-1), cur.reshape(-1)


def _lerp_all(averaged: ArrayList, current: ArrayList, weight: float) -> None:
    if len(averaged) != len(current):
        raise ValueError(f"got {len(averaged)} averaged arrays and {len(current)} current ones")
    for a, c in zip(averaged, current):
        pair = _flat_pair(a, c)
        if pair is None:  # an array the kernel cannot take: same formula in NumPy
            w = a.dtype.type(weight)
            d = c - a
            a[...] = a + w * d if abs(w) < 0.5 else c - d * (1 - w)
        elif pair[0].size:
            kernel_for(lerp_, pair[0])(pair[0], pair[1], pair[0].dtype.type(weight))


def get_ema_multi_avg_fn(decay: float = 0.999) -> Callable[[ArrayList, ArrayList, Any], None]:
    r"""An exponential-moving-average update over lists of arrays, for ``AveragedModel(multi_avg_fn=...)``.

    .. math:: \bar\theta \leftarrow \text{lerp}(\bar\theta, \theta, 1 - \text{decay})
              = \text{decay}\cdot\bar\theta + (1 - \text{decay})\cdot\theta

    Parameters
    ----------
    decay : float, default 0.999
        In ``[0, 1]``.
    """
    if decay < 0.0 or decay > 1.0:
        raise ValueError(f"Invalid decay value {decay} provided. Please provide a value in [0,1] range.")

    def ema_update(ema_param_list: ArrayList, current_param_list: ArrayList, _: Any = None) -> None:
        _lerp_all(ema_param_list, current_param_list, 1 - decay)

    ema_update._numopt_elementwise = True  # type: ignore[attr-defined]
    ema_update._numopt_ema_decay = float(decay)  # type: ignore[attr-defined]  (what AveragedModel(in_step=True) reads)
    return ema_update


def _swa_weight(num_averaged: Any) -> float:
    # torch's AveragedModel hands its int64 n_averaged tensor to this function, so 1 / (n + 1)
    # is computed in float32 (the default dtype) before lerp uses it: numopt does the same.
    return float(np.float32(1.0) / np.float32(int(num_averaged) + 1))


def get_swa_multi_avg_fn() -> Callable[[ArrayList, ArrayList, Any], None]:
    r"""A running-mean (SWA) update over lists of arrays, for ``AveragedModel(multi_avg_fn=...)``.

    .. math:: \bar\theta \leftarrow \text{lerp}\big(\bar\theta, \theta, \tfrac{1}{n + 1}\big)

    with :math:`n` the number of models averaged so far. As in torch, where the
    weight is computed from an int64 tensor, :math:`1/(n+1)` is rounded to
    float32 before use (float64 arrays therefore match torch, not the exact mean).
    """

    def swa_update(averaged_param_list: ArrayList, current_param_list: ArrayList, num_averaged: Any) -> None:
        _lerp_all(averaged_param_list, current_param_list, _swa_weight(num_averaged))

    swa_update._numopt_elementwise = True  # type: ignore[attr-defined]
    return swa_update


def get_ema_avg_fn(decay: float = 0.999) -> Callable[[np.ndarray, np.ndarray, Any], np.ndarray]:
    """Per-array EMA: returns ``decay * averaged + (1 - decay) * current`` (for ``avg_fn=``)."""
    if decay < 0.0 or decay > 1.0:
        raise ValueError(f"Invalid decay value {decay} provided. Please provide a value in [0,1] range.")

    def ema_update(ema_param: np.ndarray, current_param: np.ndarray, num_averaged: Any) -> np.ndarray:
        return decay * ema_param + (1 - decay) * current_param

    return ema_update


def get_swa_avg_fn() -> Callable[[np.ndarray, np.ndarray, Any], np.ndarray]:
    """Per-array running mean: returns ``averaged + (current - averaged) / (n + 1)`` (for ``avg_fn=``)."""

    def swa_update(averaged_param: np.ndarray, current_param: np.ndarray, num_averaged: Any) -> np.ndarray:
        return averaged_param + (current_param - averaged_param) / (num_averaged + 1)

    return swa_update


def _param_list(model: Any) -> list[Parameter]:
    if isinstance(model, Optimizer):
        return list(model.parameters())
    if isinstance(model, AveragedModel):
        return list(model.module)
    if isinstance(model, Parameter):
        return [model]
    if isinstance(model, np.ndarray):
        raise TypeError("AveragedModel takes numopt.Parameter objects (or an optimizer), not an ndarray")
    params = list(model)
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"AveragedModel takes numopt.Parameter objects, got {type(p).__name__}")
    return params


def _key(p: Parameter) -> _Key:
    return (p.dtype, p.is_cuda)


class AveragedModel:
    r"""A running average (SWA by default, or EMA) of a list of parameters.

    The averaged copies live in one contiguous buffer per dtype, in the memory
    of the parameters (host, or GPU: a device buffer, updated by the CUDA
    twins of the kernels; host and GPU parameters may be mixed);
    ``module[i]`` is a Parameter viewing its slice. :meth:`update_parameters`
    first copies the current values (when nothing has been averaged yet), then
    folds them in:

    - default: :math:`\bar\theta \leftarrow \bar\theta + (\theta - \bar\theta) / (n + 1)` (the mean of all
      models seen), one Numba pass;
    - ``multi_avg_fn`` from :func:`get_ema_multi_avg_fn` / :func:`get_swa_multi_avg_fn`: one Numba
      pass per contiguous range (one per optimizer buffer); a user ``multi_avg_fn(averaged_list,
      current_list, n_averaged)`` gets per-parameter arrays of one dtype, updates the first list in
      place;
    - ``avg_fn(averaged, current, n_averaged) -> new_averaged``: called per parameter.

    For GPU parameters, the default and the ``multi_avg_fn`` of :func:`get_ema_multi_avg_fn` /
    :func:`get_swa_multi_avg_fn` run on the device. A user ``avg_fn`` or ``multi_avg_fn`` is not
    supported there (``NotImplementedError`` at construction): it would get Numba device arrays,
    which have no arithmetic operators on a GPU.

    Parameters
    ----------
    model : Optimizer, Parameter or iterable of Parameters
        What to average; :meth:`update_parameters` must be given the same structure
        (shapes, dtypes, and host or GPU memory, in order).
    device : None, 'cpu' or 'cuda'
        Accepted for torch compatibility: each average is kept where its parameter lives;
        ``'cpu'`` (host parameters only) and ``'cuda'`` (GPU parameters only) only confirm it.
    avg_fn, multi_avg_fn : callable, optional
        At most one of them; for host parameters only, except the ``multi_avg_fn`` of
        :func:`get_ema_multi_avg_fn` / :func:`get_swa_multi_avg_fn`.
    use_buffers : bool, default False
        Accepted for torch compatibility (Parameters have no buffers).
    in_step : bool, default False
        numopt only: update the average inside each ``model.step()`` instead of by
        :meth:`update_parameters` (which then refuses to run). ``model`` must be the
        optimizer and ``multi_avg_fn`` an exponential moving average
        (:func:`get_ema_multi_avg_fn`). Where the step is one generated loop per run (the
        elementwise optimizers, float32/float64 host parameters, state in the parameters'
        dtype), the loop folds each new parameter value into the average as it writes it:
        the step reads and writes 8 more bytes per float32 parameter instead of a separate
        pass of 12. Everything else (the first update, which copies; parameters without a
        gradient; compact state, bfloat16 or GPU parameters; optimizers whose step is not one
        call of their rule) is folded in right after the step, by the usual pass. The
        result is the same, bit for bit, as ``opt.step(); ema.update_parameters(opt)``; a
        step skipped for a non-finite gradient norm updates nothing.

    Attributes
    ----------
    module : list of Parameter
        The averaged parameters (views of the packed buffer; read them, do not
        hand them to an optimizer).
    n_averaged : int
        Number of :meth:`update_parameters` calls so far.
    """

    def __init__(
        self,
        model: Any,
        device: Any = None,
        avg_fn: Callable[[np.ndarray, np.ndarray, Any], np.ndarray] | None = None,
        multi_avg_fn: Callable[[ArrayList, ArrayList, Any], None] | None = None,
        use_buffers: bool = False,
        *,
        in_step: bool = False,
    ) -> None:
        if avg_fn is not None and multi_avg_fn is not None:
            raise AssertionError("Only one of avg_fn and multi_avg_fn should be provided")
        params = _param_list(model)
        if device is not None and (
            str(device) not in ("cpu", "cuda") or any(p.is_cuda != (str(device) == "cuda") for p in params)
        ):
            raise ValueError(
                "AveragedModel keeps each average where its parameter lives: device must be None, 'cpu' for "
                f"host parameters or 'cuda' for GPU parameters, got {device!r}"
            )
        custom, what = (avg_fn, "avg_fn") if avg_fn is not None else (multi_avg_fn, "multi_avg_fn")
        if custom is not None and not getattr(custom, "_numopt_elementwise", False) and any(p.is_cuda for p in params):
            raise NotImplementedError(
                f"AveragedModel over GPU parameters does not support a user {what} "
                "(it would get Numba device arrays, which have no arithmetic on a GPU); use the default running "
                "mean, or multi_avg_fn=get_ema_multi_avg_fn(decay) / get_swa_multi_avg_fn(), which run on the device"
            )
        self._shapes = [(p.shape, *_key(p)) for p in params]
        sizes: dict[_Key, int] = {}
        self._offsets: list[tuple[_Key, int, int]] = []
        for p in params:
            lo = sizes.get(_key(p), 0)
            sizes[_key(p)] = lo + p.size
            self._offsets.append((_key(p), lo, lo + p.size))
        #: (dtype, in GPU memory) -> the packed averaged values (a host or device array)
        self._buffers: dict[_Key, Any] = {
            (dt, gpu): cuda_backend().memory.empty(n, dt) if gpu else np.empty(n, dt) for (dt, gpu), n in sizes.items()
        }
        self._views = [self._buffers[k][lo:hi].reshape(p.shape) for (k, lo, hi), p in zip(self._offsets, params)]
        for view, p in zip(self._views, params):
            _copy(view, p.data)
        self.module: list[Parameter] = [Parameter(v, name=p.name) for v, p in zip(self._views, params)]
        self.n_averaged = 0
        self.avg_fn = avg_fn
        self.multi_avg_fn = multi_avg_fn
        self.use_buffers = use_buffers
        #: with ``in_step=True``: the optimizer whose steps update this average
        self.in_step = False
        self._owner: Optimizer | None = None
        self._aligned: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._covered: dict[int, list[tuple[int, int]]] = {}
        if in_step:
            self._attach(model)

    # -- pickle / copy.deepcopy ------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Everything but the packed buffers and their views: the averages travel once, in ``module``.

        The parameters of ``module`` are restored first (their state leads nowhere back
        here); :meth:`__setstate__` packs those that viewed the average again.
        """
        state = {k: v for k, v in self.__dict__.items() if k not in ("_buffers", "_views", "_aligned", "_covered")}
        state["_bound"] = [q._data is view for q, view in zip(self.module, self._views)]
        state["_sizes"] = {key: int(buf.size) for key, buf in self._buffers.items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        bound = state.pop("_bound")
        sizes = state.pop("_sizes")
        self.__dict__.update(state)
        self._aligned, self._covered = weakref.WeakKeyDictionary(), {}
        self._buffers = {
            (dt, gpu): cuda_backend().memory.empty(n, dt) if gpu else np.zeros(n, dt) for (dt, gpu), n in sizes.items()
        }
        self._views = [
            self._buffers[k][lo:hi].reshape(shape) for (k, lo, hi), (shape, *_) in zip(self._offsets, self._shapes)
        ]
        for q, view, was_bound in zip(self.module, self._views, bound):
            if was_bound:  # (one left unbound is copied in by the next update, as before pickling)
                _copy(view, q._data)
                q._data = view

    def parameters(self) -> Iterator[Parameter]:
        """The averaged parameters, in the order given at construction."""
        return iter(self.module)

    # -- updating ----------------------------------------------------------------------------------
    def _check_bindings(self) -> None:
        for i, (q, view) in enumerate(zip(self.module, self._views)):
            if q._data is view:
                continue
            if q._flat is not None:
                raise RuntimeError(
                    f"AveragedModel.module[{i}] was packed by an optimizer, so it no longer views the "
                    "average; give the optimizer copies instead (numopt.Parameter(q.data.copy()))"
                )
            _copy(view, q._data)  # the user assigned new values: adopt them
            q._data = view

    def _segments(self, params: list[Parameter]) -> dict[_Key, list[tuple[Any, Any]]]:
        """Per dtype and memory, (averaged, current) pairs of 1-D ranges covering every parameter once.

        Consecutive parameters that are also consecutive in one optimizer buffer
        merge into one range, so a whole group is one pair.
        """
        runs: dict[_Key, list[list[Any]]] = {}
        for (dt, lo, hi), p in zip(self._offsets, params):
            if hi == lo:
                continue
            flat = p._flat
            s_lo, s_hi = (flat.offsets[p._index], flat.offsets[p._index + 1]) if flat is not None else (0, p.size)
            group = runs.setdefault(dt, [])
            last = group[-1] if group else None
            if last is not None and flat is not None and last[2] is flat and last[1] == lo and last[4] == s_lo:
                last[1], last[4] = hi, s_hi
            else:
                group.append([lo, hi, flat, s_lo, s_hi, p])
        return {
            dt: [
                (self._buffers[dt][lo:hi], flat.data[s_lo:s_hi] if flat is not None else p.data.reshape(p.size))
                for lo, hi, flat, s_lo, s_hi, p in group
            ]
            for dt, group in runs.items()
        }

    def update_parameters(self, model: Any) -> None:
        """Fold the current values of ``model`` (same structure as at construction) into the average."""
        if self.in_step:
            raise RuntimeError(
                "this AveragedModel is updated inside its optimizer's step() (in_step=True): calling "
                "update_parameters as well would fold each step in twice"
            )
        self._fold(model)

    def _fold(self, model: Any) -> None:
        """:meth:`update_parameters`' work."""
        params = _param_list(model)
        if [(p.shape, *_key(p)) for p in params] != self._shapes:
            raise ValueError(
                "update_parameters got parameters that do not match the averaged ones "
                f"({len(params)} given, {len(self._shapes)} averaged; shapes, dtypes and host or GPU memory "
                "must agree in order)"
            )
        self._check_bindings()
        n = self.n_averaged
        if n == 0:
            for pairs in self._segments(params).values():
                for avg, cur in pairs:
                    _copy(avg, cur)
        elif self.avg_fn is not None and self.multi_avg_fn is None:
            for q, p in zip(self.module, params):
                np.copyto(q.data, self.avg_fn(q.data, p.data, n))
        elif self.multi_avg_fn is None:
            for (dt, _), pairs in self._segments(params).items():
                count = dt.type(n + 1)
                for avg, cur in pairs:
                    kernel_for(running_mean_, avg)(avg, cur, count)
        elif getattr(self.multi_avg_fn, "_numopt_elementwise", False):
            for pairs in self._segments(params).values():
                self.multi_avg_fn([a for a, _ in pairs], [c for _, c in pairs], n)
        else:
            for key in self._buffers:
                mine = [q.data for q, p in zip(self.module, params) if _key(p) == key]
                theirs = [p.data for p in params if _key(p) == key]
                self.multi_avg_fn(mine, theirs, n)
        self.n_averaged = n + 1

    # -- inside the optimizer's step (in_step=True) -------------------------------------------------
    def _attach(self, opt: Any) -> None:
        """Make ``opt``'s steps update this average (see ``in_step``)."""
        from .optimizer import WrapsOptimizer

        decay = getattr(self.multi_avg_fn, "_numopt_ema_decay", None)
        if decay is None:
            raise ValueError(
                "in_step=True updates an exponential moving average inside the step: give "
                "multi_avg_fn=get_ema_multi_avg_fn(decay)"
            )
        if not isinstance(opt, Optimizer) or isinstance(opt, WrapsOptimizer):
            raise TypeError(
                f"in_step=True needs the optimizer whose steps update the average as model, got {type(opt).__name__}"
            )
        if type(opt)._step is not Optimizer._step:
            raise ValueError(
                f"in_step=True: {type(opt).__name__}.step() is not one update of the parameters (it may evaluate "
                "the model several times); call update_parameters after each step instead"
            )
        if opt._in_step_average is not None:
            raise ValueError("this optimizer's steps already update an AveragedModel (in_step=True)")
        self._weight = 1.0 - decay
        self._owner = opt
        self.in_step = True
        opt._in_step_average = self
        opt.register_step_post_hook(self._after_step)

    def _aligned_with(self, flat: Any) -> np.ndarray | None:
        """This average's values of ``flat``'s parameters as one array aligned with ``flat.data`` (they are
        stored in the same order, back to back), or None."""
        hit = self._aligned.get(flat, False)
        if hit is not False:
            return hit
        aligned = None
        positions = {id(p): i for i, p in enumerate(_param_list(self._owner))}
        where = [positions.get(id(p)) for p in flat.params]
        if None not in where and len(positions) == len(self._offsets) and not flat.is_cuda:
            key, base, _ = self._offsets[where[0]]
            offsets = flat.offsets
            if key == (flat.dtype, False) and all(
                self._offsets[i] == (key, base + offsets[j], base + offsets[j + 1]) for j, i in enumerate(where)
            ):
                aligned = self._buffers[key][base : base + offsets[len(where)]]
        self._aligned[flat] = aligned
        return aligned

    def ema_of(self, flat: Any, run: Any) -> np.ndarray | None:
        """For ``Optimizer._update_all``: the average's values of ``run`` for its loop to update (and its
        weight set on the run), or None where the step cannot update them (they are folded in after it)."""
        if run.fmt is not None or run.bf16 or run.cuda:
            return None
        aligned = self._aligned_with(flat)
        if aligned is None:
            return None
        self._covered.setdefault(id(flat), []).append((run.lo, run.hi))
        run.ema_weight = self._weight
        return aligned[run.lo : run.hi]

    def _after_step(self, opt: Any, args: Any, kwargs: Any) -> None:
        """After each step of the optimizer: fold in what its loops did not (all of it the first time)."""
        covered, self._covered = self._covered, {}
        if self.n_averaged == 0:
            self._fold(opt)
            return
        positions = None
        for flats in opt._flats:
            for flat in flats:
                aligned = self._aligned_with(flat)
                if aligned is None:  # parameter by parameter, by the usual pass
                    if positions is None:
                        positions = {id(p): i for i, p in enumerate(_param_list(opt))}
                    views = [self._views[positions[id(p)]] for p in flat.params]
                    _lerp_all(views, [p.data for p in flat.params], self._weight)
                    continue
                start, size = 0, flat.offsets[len(flat.params)]
                for lo, hi in [*sorted(covered.get(id(flat), ())), (size, size)]:
                    if lo > start:
                        _lerp_all([aligned[start:lo]], [flat.data[start:lo]], self._weight)
                    start = max(start, hi)
        self.n_averaged += 1

    # -- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{'n_averaged': int, 'params': [host NumPy copies]}`` (averages in GPU memory are copied to the host)."""
        return {
            "n_averaged": self.n_averaged,
            "params": [q.data.copy() if isinstance(q.data, np.ndarray) else q.data.copy_to_host() for q in self.module],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (validated before anything changes; copied to the device for GPU averages)."""
        arrays = list(state_dict["params"])
        if len(arrays) != len(self.module):
            raise ValueError(f"state has {len(arrays)} parameters, this AveragedModel averages {len(self.module)}")
        for i, (a, q) in enumerate(zip(arrays, self.module)):
            if np.shape(a) != q.shape:
                raise ValueError(f"state params[{i}] has shape {np.shape(a)}, the averaged parameter {q.shape}")
        n = int(state_dict["n_averaged"])
        if n < 0:
            raise ValueError(f"n_averaged must be >= 0, got {n}")
        self._check_bindings()
        for a, q in zip(arrays, self.module):
            _copy(q.data, a)
        self.n_averaged = n

    def __repr__(self) -> str:
        return f"AveragedModel({len(self.module)} parameters, n_averaged={self.n_averaged})"


def _linear_anneal(t: float) -> float:
    return t


def _cosine_anneal(t: float) -> float:
    return (1 - math.cos(math.pi * t)) / 2


class SWALR(LRScheduler):
    r"""Anneal each group's learning rate to a fixed SWA value over ``anneal_epochs`` epochs, then hold it.

    With :math:`\alpha(t)` the annealing curve (cosine :math:`\tfrac12(1 - \cos\pi t)` or linear
    :math:`t`) of the fraction :math:`t = \min(1, \text{step} / \text{anneal\_epochs})`:

    .. math:: \eta = \alpha\,\eta_{swa} + (1 - \alpha)\,\eta_{start}

    Parameters
    ----------
    optimizer : Optimizer
    swa_lr : float or list of float
        The learning rate(s) to anneal to (stored as ``group['swa_lr']``).
    anneal_epochs : int, default 10
    anneal_strategy : {'cos', 'linear'}, default 'cos'
    last_epoch : int, default -1
    """

    def __init__(
        self,
        optimizer: Optimizer,
        swa_lr: float | list[float],
        anneal_epochs: int = 10,
        anneal_strategy: Literal["cos", "linear"] = "cos",
        last_epoch: int = -1,
    ) -> None:
        for lr, group in zip(_per_group("swa_lr", optimizer, swa_lr), optimizer.param_groups):
            group["swa_lr"] = lr
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}")
        self._set_anneal_func(anneal_strategy)
        if not isinstance(anneal_epochs, int) or anneal_epochs < 0:
            raise ValueError(f"anneal_epochs must be equal or greater than 0, got {anneal_epochs}")
        self.anneal_epochs = anneal_epochs
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _get_initial_lr(lr: float, swa_lr: float, alpha: float) -> float:
        """Undo the previous step's interpolation: the lr the annealing started from."""
        if alpha == 1:
            return swa_lr
        return (lr - alpha * swa_lr) / (1 - alpha)

    def get_lr(self) -> list[float]:
        if not self._get_lr_called_within_step:
            warnings.warn(
                "To get the last learning rate computed by the scheduler, please use `get_last_lr()`.",
                UserWarning,
                stacklevel=2,
            )
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        span = max(1, self.anneal_epochs)
        groups = self.optimizer.param_groups
        prev_alpha = self.anneal_func(max(0, min(1, (step - 1) / span)))
        starts = [self._get_initial_lr(g["lr"], g["swa_lr"], prev_alpha) for g in groups]
        alpha = self.anneal_func(max(0, min(1, step / span)))
        return [g["swa_lr"] * alpha + lr * (1 - alpha) for g, lr in zip(groups, starts)]

    def _set_anneal_func(self, anneal_strategy: str) -> None:
        self._anneal_strategy = anneal_strategy
        self.anneal_func = _cosine_anneal if anneal_strategy == "cos" else _linear_anneal

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "anneal_func")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.update(state_dict)
        self._set_anneal_func(self._anneal_strategy)
