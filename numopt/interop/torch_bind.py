"""Zero-copy binding of a torch model to a numopt optimizer's flat buffers (the half of
:mod:`numopt.interop.torch` behind :func:`~numopt.interop.torch.bind`).

torch is imported inside these functions only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._bf16 import bfloat16, is_bfloat16
from .torch_state import _torch, from_torch_state_dict, to_torch_state_dict

__all__ = ["TorchBinding", "bind"]


class TorchBinding:
    """The link between torch tensors and the flat buffers of a bound optimizer (``optimizer.binding``).

    After :func:`bind`, each tensor's ``.data`` is a view of the optimizer's flat
    data buffer and its ``.grad`` a view of the flat gradient buffer
    (``torch.from_numpy`` on the flat views: same memory, no copy). :meth:`sync`,
    called by the optimizer at every ``step()`` and ``zero_grad()``, repairs what
    torch may have replaced since (a cheap pointer comparison per tensor).

    Attributes
    ----------
    tensors : list of torch.Tensor
        The bound tensors (those with ``requires_grad``), in the optimizer's order.
    params : list of numopt.Parameter
        Their numopt counterparts (``params[i].data`` and ``tensors[i].data`` share memory).
    names : list of str or None
        The parameters' names (from ``named_parameters()`` or ``(name, tensor)`` pairs).
    copies : int
        How many times a replaced tensor was copied back in (a diagnostic: 0 when
        nothing replaced ``.data`` or ``.grad``, e.g. without ``model.zero_grad()``).
    """

    def __init__(self, tensors: list[Any], params: list[Any], names: list[str | None]) -> None:
        torch = _torch()
        self.tensors = tensors
        self.params = params
        self.names = names
        self.copies = 0
        self._torch = torch
        self._grad_np = [p._flat.grad_view(p._index) for p in params]
        self._data_t = [_from_numpy(p.data, torch) for p in params]
        self._grad_t = [_from_numpy(g, torch) for g in self._grad_np]
        self._data_ptr = [t.data_ptr() for t in self._data_t]
        self._grad_ptr = [t.data_ptr() for t in self._grad_t]

    def _label(self, i: int) -> str:
        name = self.names[i]
        return f"parameter {name!r}" if name is not None else f"parameter {i}"

    def attach(self) -> None:
        """Point every tensor's ``.data`` and ``.grad`` at the flat buffers (gradients already there are kept)."""
        with self._torch.no_grad():
            for i, t in enumerate(self.tensors):
                g = t.grad
                if g is not None:
                    _check_grad(g, self._label(i), self._torch)
                    np.copyto(self._grad_np[i], _to_numpy(g.detach(), self._torch))
                t.data = self._data_t[i]
                t.grad = self._grad_t[i]
                self.params[i].grad = self._grad_np[i]

    def sync(self) -> None:
        """Copy in and rebind what torch replaced: ``.data`` (``param.data = ...``, ``load_state_dict(assign=True)``
        on the same tensor objects) and ``.grad`` (``model.zero_grad()`` sets it to ``None``; the next backward
        allocates a new tensor). A ``.grad`` that is ``None`` skips the parameter at the next step, as in torch.
        """
        params = self.params
        for i, t in enumerate(self.tensors):
            if t.data_ptr() != self._data_ptr[i]:
                self._adopt_data(i, t)
            g = t.grad
            p = params[i]
            if g is None:
                if p._grad is not None:
                    p.grad = None
            elif g.data_ptr() != self._grad_ptr[i]:
                _check_grad(g, self._label(i), self._torch)
                np.copyto(self._grad_np[i], _to_numpy(g.detach(), self._torch))
                t.grad = self._grad_t[i]
                self.copies += 1
                if p._grad is not self._grad_np[i]:
                    p.grad = self._grad_np[i]
            elif p._grad is not self._grad_np[i]:
                p.grad = self._grad_np[i]

    def rebind_grads(self) -> None:
        """Point every ``.grad`` back at the flat gradient buffer, without copying (before zeroing it)."""
        for i, t in enumerate(self.tensors):
            if t.data_ptr() != self._data_ptr[i]:
                self._adopt_data(i, t)
            g = t.grad
            if g is None or g.data_ptr() != self._grad_ptr[i]:
                t.grad = self._grad_t[i]
            if self.params[i]._grad is not self._grad_np[i]:
                self.params[i].grad = self._grad_np[i]

    def _adopt_data(self, i: int, t: Any) -> None:
        p = self.params[i]
        new = t.detach()
        if new.device.type != "cpu" or new.dtype != self._data_t[i].dtype or tuple(new.shape) != p.shape:
            raise RuntimeError(
                f"bind: {self._label(i)} was replaced by a tensor of shape {tuple(new.shape)}, dtype {new.dtype} on "
                f"{new.device}, but it is bound with shape {p.shape}, {self._data_t[i].dtype} on cpu; "
                "bind the model again after changing its dtype, device or shapes"
            )
        np.copyto(p.data, _to_numpy(new, self._torch))
        with self._torch.no_grad():
            t.data = self._data_t[i]
        self.copies += 1


def _to_numpy(t: Any, torch: Any) -> np.ndarray:
    """A CPU tensor's memory as a NumPy array (no copy); a bfloat16 tensor as an ``ml_dtypes.bfloat16`` array."""
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(bfloat16())
    return t.numpy()


def _from_numpy(a: np.ndarray, torch: Any) -> Any:
    """A tensor over ``a``'s memory (no copy); an ``ml_dtypes.bfloat16`` array as a ``torch.bfloat16`` tensor."""
    if is_bfloat16(a.dtype):
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _check_grad(g: Any, label: str, torch: Any) -> None:
    if g.layout != torch.strided:
        raise RuntimeError(f"bind: {label} has a sparse gradient; bound optimizers take dense gradients")


def _check_tensor(t: Any, label: str, torch: Any) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"bind: {label} is a {type(t).__name__}, not a torch.Tensor")
    if t.device.type != "cpu":
        raise ValueError(
            f"bind: {label} is on {t.device}; bind shares CPU memory only (for CUDA tensors, wrap them in "
            "numopt.Parameter, which updates them on the GPU)"
        )
    if t.dtype not in (torch.float32, torch.float64, torch.bfloat16):
        raise TypeError(f"bind: {label} has dtype {t.dtype}; numopt optimizes float32, float64 and bfloat16 tensors")
    if t.dtype == torch.bfloat16:
        bfloat16()  # ImportError naming ml_dtypes without it
    if t.layout != torch.strided:
        raise ValueError(f"bind: {label} has layout {t.layout}; bind takes dense (strided) tensors")
    if not t.is_contiguous():
        raise ValueError(
            f"bind: {label} is not contiguous; make it contiguous first (param.data = param.data.contiguous())"
        )
    if not t.is_leaf:
        raise ValueError(f"bind: {label} is not a leaf tensor (it is computed from others), so it gets no .grad")


def _named_items(source: Any, torch: Any) -> list[tuple[str | None, Any]]:
    """``(name or None, tensor)`` for a Module, or an iterable of tensors or ``(name, tensor)`` pairs."""
    if isinstance(source, torch.nn.Module):
        return list(source.named_parameters())
    if isinstance(source, torch.Tensor):
        raise TypeError(
            "bind takes a torch.nn.Module or an iterable of tensors, not a single tensor; wrap it in a list"
        )
    items: list[tuple[str | None, Any]] = []
    for item in source:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            items.append((item[0], item[1]))
        else:
            items.append((None, item))
    return items


def _holds_tensor(value: Any, torch: Any) -> bool:
    """Whether ``value`` (a state dict or part of one) holds a torch tensor anywhere."""
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, dict):
        return any(_holds_tensor(v, torch) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_tensor(v, torch) for v in value)
    return False


def _bound_class(cls: type) -> type:
    """``cls`` with :class:`_BoundOptimizer`'s ``step``, ``zero_grad`` and torch-form state dicts
    (one subclass per class, cached)."""
    sub = _BOUND_CLASSES.get(cls)
    if sub is None:
        sub = type(cls.__name__, (_BoundOptimizer, cls), {"__module__": cls.__module__, "__doc__": cls.__doc__})
        sub.__qualname__ = cls.__qualname__
        _BOUND_CLASSES[cls] = sub
    return sub


class _BoundOptimizer:
    """Mixed into a numopt optimizer class by :func:`bind`: keeps the torch tensors bound across steps."""

    binding: TorchBinding

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        binding = self.binding
        binding.sync()
        if closure is not None:
            user_closure = closure

            def closure() -> Any:  # the closure's backward may have replaced .grad tensors
                loss = user_closure()
                binding.sync()
                return loss

        return super().step(closure)  # type: ignore[misc]

    def clip_grad_norm_(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`numopt.Optimizer.clip_grad_norm_` over the model's gradients: the drop-in for
        ``torch.nn.utils.clip_grad_norm_(model.parameters(), ...)`` before ``step()``, with the clipping
        applied inside the step (the ``.grad`` tensors keep their unclipped values until then)."""
        self.binding.sync()  # gradients a backward created since the last step join the buffer first
        return super().clip_grad_norm_(*args, **kwargs)  # type: ignore[misc]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the flat gradient buffer in place (one memset per buffer), keeping ``.grad`` bound.

        ``set_to_none`` is accepted for torch compatibility and ignored: a bound
        optimizer keeps every ``.grad`` as a view of its buffer, so a parameter
        that gets no gradient in the next backward has a zero gradient (as with
        torch's ``zero_grad(set_to_none=False)``), not ``None``. ``model.zero_grad()``
        (torch's, which sets ``.grad`` to ``None``) also works: the next step
        copies the new gradients in and binds them again.
        """
        self.binding.rebind_grads()
        super().zero_grad(set_to_none=False)  # type: ignore[misc]

    def state_dict(self) -> dict[str, Any]:
        """The state in torch's form (tensors, as :func:`~numopt.interop.torch.to_torch_state_dict` makes it),
        so ``torch.save`` / ``torch.load`` (``weights_only=True``) take it."""
        return to_torch_state_dict(super().state_dict(), type(self).__name__)  # type: ignore[misc]

    def load_state_dict(self, state_dict: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        """Load a state in torch's form (this optimizer's :meth:`state_dict`, or a ``torch.optim`` optimizer's
        of the same class over the same model) or in numopt's (NumPy arrays): tensors anywhere mean torch's form,
        converted with :func:`~numopt.interop.torch.from_torch_state_dict`. ``match`` and ``strict`` as for
        ``optimizer_cls.load_state_dict``.
        """
        if _holds_tensor(state_dict, self.binding._torch):
            state_dict = from_torch_state_dict(state_dict)
        return super().load_state_dict(state_dict, *args, **kwargs)  # type: ignore[misc]


_BOUND_CLASSES: dict[type, type] = {}


def bind(module_or_params: Any, optimizer_cls: type, **kwargs: Any) -> Any:
    """A numopt optimizer whose flat buffers are a torch model's parameter and gradient storage.

    Each parameter's values are copied once into the optimizer's flat buffers;
    then every tensor's ``.data`` becomes a view of the flat data buffer and its
    ``.grad`` a view of the flat gradient buffer (``torch.from_numpy`` on the
    flat views). ``loss.backward()`` accumulates straight into numopt's gradient
    buffer, ``step()`` updates the model's weights in place in one compiled pass
    per buffer, and nothing is copied per step.

    Parameters
    ----------
    module_or_params : torch.nn.Module, iterable, or list of dicts
        A module (its ``named_parameters()``), an iterable of tensors or of
        ``(name, tensor)`` pairs, or parameter groups: dicts with ``'params'``
        (any of the above but a module's parameters given as a list) and
        per-group hyperparameters. Tensors with ``requires_grad=False`` are
        skipped (left as they are). Only CPU, float32, float64 or bfloat16 (with ``ml_dtypes``), contiguous,
        dense leaf tensors can be bound.
    optimizer_cls : type
        A numopt optimizer class (``numopt.AdamW``, ``numopt.SGD``, ...; not
        ``SparseAdam``, whose gradients are ``numopt.SparseGrad`` rows).
    **kwargs
        The optimizer's hyperparameters, as for ``optimizer_cls(params, **kwargs)``.

    Returns
    -------
    Optimizer
        An instance of ``optimizer_cls`` (a subclass of it that keeps the
        binding), with ``.binding`` (a :class:`TorchBinding`). Named parameters
        give the numopt Parameters their names, so ``state_dict()`` records
        torch's ``param_names``. ``state_dict()`` returns torch's form (see
        Notes); everything else is the numopt optimizer as usual: schedulers,
        ``numopt.utils`` clipping.

    Notes
    -----
    - ``optimizer.zero_grad()`` zeroes the gradient buffer in place and keeps the
      binding (a parameter with no gradient in the next backward then gets a zero
      gradient rather than ``None``). ``model.zero_grad()`` (torch's, setting
      ``.grad`` to ``None``) works too, at the cost of one copy per tensor at the next
      step; so does anything else that replaces ``.data`` or ``.grad`` with a tensor
      of the same shape and dtype: ``step()`` compares data pointers, copies the new
      tensor in and binds the view again.
    - ``model.train()`` / ``eval()``, ``model.state_dict()`` (its tensors share the
      flat memory) and ``model.load_state_dict(sd)`` (which copies in place) leave
      the binding as it is; a second backward before ``step()`` accumulates, as in torch.
    - ``load_state_dict(sd, assign=True)``, ``model.to(dtype)`` or anything that
      replaces the ``nn.Parameter`` objects themselves, or changes their dtype,
      needs a new ``bind`` (a dtype change raises at the next step).
    - ``state_dict()`` speaks torch: it returns tensors (``'step'`` a 0-d tensor), as
      :func:`~numopt.interop.torch.to_torch_state_dict` converts numopt's state, so
      torch checkpointing works unchanged: ``torch.save(opt.state_dict(), f)``, then
      ``opt.load_state_dict(torch.load(f))`` (``weights_only=True``) resumes the run
      bit for bit. ``load_state_dict`` takes that form, a state dict saved from the
      ``torch.optim`` optimizer of the same class over the same model, or numopt's
      NumPy form (``numopt.load`` of a plain numopt optimizer's state): a state dict
      holding tensors is converted with :func:`~numopt.interop.torch.from_torch_state_dict`.
      For ``numopt.save``, convert first: ``numopt.save(from_torch_state_dict(opt.state_dict()), path)``.
    - numopt writes the weights directly, without bumping torch's version counters:
      call ``step()`` between backward and the next forward, as usual (not between a
      forward and its backward).

    Examples
    --------
    >>> import torch, numopt                                          # doctest: +SKIP
    >>> from numopt.interop.torch import bind
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    >>> opt = bind(model, numopt.AdamW, lr=1e-3, weight_decay=0.01)
    >>> for x, y in batches:
    ...     opt.zero_grad()
    ...     torch.nn.functional.mse_loss(model(x), y).backward()     # writes into opt's gradient buffer
    ...     opt.step()                                                # updates model's weights in place
    """
    torch = _torch()
    from .._threads import choose_threading_layer
    from ..optimizer import Optimizer
    from ..parameter import Parameter

    choose_threading_layer(torch_present=True)  # before numopt's first parallel step in this process

    if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, Optimizer)):
        raise TypeError(
            f"bind: optimizer_cls must be a numopt optimizer class (e.g. numopt.AdamW), got {optimizer_cls!r}"
        )
    if getattr(optimizer_cls, "_sparse_grads", False):
        raise TypeError(
            f"bind: {optimizer_cls.__name__} takes row-sparse numopt.SparseGrad gradients, which torch's backward "
            "does not produce in numopt's buffers; use it with numopt.Parameter directly"
        )
    if isinstance(module_or_params, (list, tuple)) and module_or_params and isinstance(module_or_params[0], dict):
        raw_groups = [dict(g) for g in module_or_params]
        for gi, g in enumerate(raw_groups):
            if "params" not in g:
                raise ValueError(f"bind: parameter group {gi} has no 'params' entry")
    else:
        raw_groups = [{"params": module_or_params}]

    tensors: list[Any] = []
    params: list[Any] = []
    names: list[str | None] = []
    seen: set[int] = set()
    groups = []
    for gi, g in enumerate(raw_groups):
        items = _named_items(g["params"], torch)
        entries = []
        for j, (name, t) in enumerate(items):
            label = f"parameter {name!r}" if name is not None else f"parameter {j} of group {gi}"
            _check_tensor(t, label, torch)
            if not t.requires_grad:
                continue
            if id(t) in seen:
                raise ValueError(f"bind: {label} is listed twice")
            seen.add(id(t))
            p = Parameter(_to_numpy(t.detach(), torch), name=name)  # wraps torch's memory; packing copies it once
            tensors.append(t)
            params.append(p)
            names.append(name)
            entries.append((name, p) if name is not None else p)
        if entries:
            groups.append({**g, "params": entries})
    if not groups:
        raise ValueError("bind: no parameter requires grad (nothing to optimize)")
    named = [n is not None for n in names]
    if any(named) and not all(named):
        raise ValueError("bind: give every parameter a name or none (mix of named and unnamed tensors)")

    opt = _bound_class(optimizer_cls)(groups, **kwargs)
    binding = TorchBinding(tensors, params, names)
    binding.attach()
    opt.binding = binding
    return opt
