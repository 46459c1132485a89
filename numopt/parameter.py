"""``Parameter`` (an array plus its gradient) and the row-sparse ``SparseGrad``."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from ._bf16 import bfloat16, dtype_expression, is_bfloat16
from ._device import cuda_backend, is_cuda_array

if TYPE_CHECKING:  # pragma: no cover
    from .flat import FlatBuffer

__all__ = ["Parameter", "SparseGrad", "SUPPORTED_DTYPES"]

_ON_DEVICE = (
    "this Parameter lives in GPU memory; copy it to the host with p.data.copy_to_host(), "
    "or view it with CuPy or torch (cupy.asarray(p), torch.as_tensor(p, device='cuda'))"
)

#: Floating dtypes a parameter may have (and bfloat16, ``ml_dtypes.bfloat16``, on the host: see ``numopt._bf16``).
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check_dtype(dtype: Any, what: str) -> np.dtype:
    if isinstance(dtype, str) and dtype == "bfloat16":
        return bfloat16()  # ImportError naming ml_dtypes without it
    dt = np.dtype(dtype)
    if dt not in SUPPORTED_DTYPES and not is_bfloat16(dt):
        raise TypeError(
            f"{what} must have dtype float32 or float64 (or ml_dtypes.bfloat16), got {dt}; convert it first, "
            "e.g. arr.astype(np.float32)"
        )
    return dt


#: what to do instead of wrapping a torch tensor (whose memory numopt's packing would leave behind)
TORCH_TENSOR_ADVICE = (
    "numopt packs parameters into its own flat buffers, so the tensor would never see the updates: "
    "to train a torch model, use numopt.interop.torch.bind(model, numopt.Adam, ...) (zero-copy, torch's "
    "backward writes numopt's gradients); for a deliberate copy, pass tensor.detach().numpy()"
)


def is_torch_tensor(value: Any) -> bool:
    """Whether ``value`` is a torch tensor (checked by type; imports nothing)."""
    return any(c.__module__ == "torch" and c.__name__ == "Tensor" for c in type(value).__mro__)


def _as_param_array(value: Any, dtype: Any = None) -> np.ndarray:
    """Validate ``value`` as parameter storage, copying only when ``dtype`` asks for it."""
    if is_torch_tensor(value):
        raise TypeError(f"Parameter does not take a torch tensor: {TORCH_TENSOR_ADVICE}")
    if is_cuda_array(value):
        return _as_device_param_array(value, dtype)
    if isinstance(value, np.generic):  # a NumPy scalar owns no shareable buffer
        value = np.array(value)
    if not isinstance(value, np.ndarray):
        if not hasattr(value, "__array__"):
            raise TypeError(
                "Parameter takes an ndarray or a shape tuple, "
                f"got {type(value).__name__}; use np.asarray(...) for lists"
            )
        value = np.asarray(value)
    if dtype is not None and np.dtype(dtype) != value.dtype:
        # The caller asked for another dtype: this is the one explicit copy.
        value = value.astype(_check_dtype(dtype, "Parameter"), order="C")
    _check_dtype(value.dtype, "Parameter data")
    if not value.flags.c_contiguous:
        raise ValueError(
            "Parameter data must be C-contiguous (a strided view would be copied "
            "silently); pass np.ascontiguousarray(arr)"
        )
    if not value.flags.writeable:
        raise ValueError("Parameter data is read-only; pass a writable array, e.g. arr.copy()")
    return value


def _as_device_param_array(value: Any, dtype: Any = None) -> Any:
    """A CUDA array as parameter storage: a Numba device array over the same memory (no copy)."""
    memory = cuda_backend().memory
    arr = memory.as_device(value)
    if dtype is not None and np.dtype(dtype) != arr.dtype:
        raise TypeError(
            f"Parameter does not convert CUDA arrays (dtype {arr.dtype} given, {np.dtype(dtype)} asked); "
            "convert it on the device first"
        )
    if is_bfloat16(_check_dtype(arr.dtype, "Parameter data")):  # pragma: no cover  (needs a GPU)
        raise TypeError("bfloat16 parameters are host-only: keep them in host memory, or use float32 on the GPU")
    if not arr.is_c_contiguous():
        raise ValueError("Parameter data must be C-contiguous; pass a contiguous copy of the CUDA array")
    if memory.is_readonly(value):
        raise ValueError("Parameter data is read-only; pass a writable CUDA array")
    return arr


class SparseGrad:
    """A row-sparse gradient: ``values[j]`` adds to row ``indices[j]`` of the parameter.

    Parameters
    ----------
    indices : array_like of int
        Row indices along the first axis; duplicates are allowed and summed.
    values : ndarray
        Shape ``(len(indices), *param.shape[1:])``.
    """

    __slots__ = ("indices", "values")

    def __init__(self, indices: Any, values: np.ndarray) -> None:
        idx = np.asarray(indices)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise TypeError("SparseGrad indices must be a 1-D integer array")
        vals = np.asarray(values)
        if vals.ndim < 1 or vals.shape[0] != idx.shape[0]:
            raise ValueError(f"SparseGrad values must have shape (k, ...) with k={idx.shape[0]} rows, got {vals.shape}")
        self.indices = idx.astype(np.int64, copy=False)
        self.values = vals

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    def check_for(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        """Raise if this gradient cannot belong to a parameter of ``shape`` and ``dtype``."""
        if len(shape) == 0:
            raise ValueError("a SparseGrad needs a parameter with at least one dimension")
        if self.values.shape[1:] != tuple(shape[1:]):
            raise ValueError(
                f"SparseGrad values have row shape {self.values.shape[1:]}, "
                f"parameter rows have shape {tuple(shape[1:])}"
            )
        if self.values.dtype != dtype:
            raise TypeError(f"SparseGrad values have dtype {self.values.dtype}, parameter has {dtype}")
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= shape[0]):
            raise IndexError(f"SparseGrad indices out of range for a first axis of length {shape[0]}")

    def to_dense(self, out: np.ndarray) -> np.ndarray:
        """Write the dense gradient into ``out`` (zeroing the untouched rows)."""
        out[...] = 0
        np.add.at(out, self.indices, self.values)
        return out

    def __repr__(self) -> str:
        return f"SparseGrad(rows={self.indices.size}, row_shape={self.values.shape[1:]})"


class Parameter:
    """An optimizable array and its gradient.

    Parameters
    ----------
    array_or_shape : ndarray, CUDA array, int or tuple of int
        The initial values (kept without copying: it must be float32/float64,
        or ``ml_dtypes.bfloat16`` on the host, C-contiguous and writable), or a
        shape for a zero-filled parameter.
    dtype : dtype, optional
        float32 (the default for a shape), float64, or bfloat16
        (``ml_dtypes.bfloat16`` or ``'bfloat16'``; needs the optional package
        ``ml_dtypes``). Given with an array of another dtype, the array is
        converted, which copies it. A bfloat16 parameter takes bfloat16
        gradients only (a float32 gradient is refused: convert it).
    name : str, optional
        Recorded in ``state_dict()`` and used to load state by name.

    Notes
    -----
    When an optimizer takes the parameter, it copies ``data`` once into its
    flat buffer and rebinds ``data`` and ``grad`` to views of that buffer: the
    array originally passed in is no longer the parameter's storage after that.
    Read and write through ``p.data``, ``p.grad`` or ``np.asarray(p)``.

    A CUDA array (a Numba device array, or anything exposing
    ``__cuda_array_interface__``: CuPy arrays, torch CUDA tensors) makes a
    CUDA parameter: ``data`` and ``grad`` are then Numba device arrays, the
    optimizer keeps the parameter and its state in GPU memory and updates them
    there, and ``cupy.asarray(p)`` / ``torch.as_tensor(p, device="cuda")``
    view the live values (``np.asarray(p)`` raises: copy with
    ``p.data.copy_to_host()``). Gradients may be assigned as CUDA arrays
    (copied device to device at the next step) or host arrays (copied to the
    device).

    Assigning an array to ``p.grad`` keeps that array until the next
    ``step()``, which copies it into the flat gradient buffer and rebinds
    ``p.grad`` to the view. Writing into ``p.grad[...]`` in place avoids that copy.
    """

    __slots__ = ("_data", "_grad", "_flat_ref", "_index", "name", "__weakref__")

    def __init__(self, array_or_shape: Any = None, dtype: Any = None, name: str | None = None) -> None:
        shape = array_or_shape
        if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
            shape = (int(shape),)
        if isinstance(shape, tuple) and all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in shape
        ):
            if any(s < 0 for s in shape):
                raise ValueError(f"Parameter shape must be non-negative, got {shape}")
            data = np.zeros(shape, dtype=_check_dtype(np.float32 if dtype is None else dtype, "Parameter"))
        elif array_or_shape is None:
            raise TypeError("Parameter needs an ndarray or a shape")
        else:
            data = _as_param_array(array_or_shape, dtype)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Parameter name must be a str, got {type(name).__name__}")
        self._data: np.ndarray = data
        self._grad: np.ndarray | SparseGrad | None = None
        self._flat_ref: weakref.ref | None = None
        self._index: int = -1
        self.name = name

    @property
    def _flat(self) -> FlatBuffer | None:
        """The flat buffer holding this parameter, while its optimizer lives.

        A weak reference: buffers hold their parameters, so a strong one back would
        make a cycle that only the garbage collector frees (gigabytes, late).
        """
        ref = self._flat_ref
        return None if ref is None else ref()

    @_flat.setter
    def _flat(self, flat: FlatBuffer | None) -> None:
        self._flat_ref = None if flat is None else weakref.ref(flat)

    # -- pickle / copy.deepcopy -------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """The values, gradient and name, without the (weak) binding to a flat buffer.

        Pickled alone, a parameter comes back unbound, with copies of its values and
        gradient. Pickled with its optimizer, the flat buffer binds it again when the
        buffer is restored (see ``FlatBuffer.__setstate__``): the state holds nothing
        that leads back to the buffer, so the parameter is always restored first.
        """
        state = {"data": self._data, "grad": self._grad, "name": self.name}
        extra = getattr(self, "__dict__", None)  # a subclass without __slots__
        if extra:
            state["__dict__"] = extra
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._data = state["data"]
        self._grad = state["grad"]
        self._flat_ref = None
        self._index = -1
        self.name = state["name"]
        if "__dict__" in state:
            self.__dict__.update(state["__dict__"])

    # -- data ---------------------------------------------------------------
    @property
    def data(self) -> np.ndarray:
        """The live values (a view into the optimizer's flat buffer once packed)."""
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        if self._flat is None:
            self._data = _as_param_array(value)
            if self._grad is not None and (
                getattr(self._grad, "shape", self._data.shape) != self._data.shape
                or (not isinstance(self._grad, SparseGrad) and is_cuda_array(self._grad) != self.is_cuda)
            ):
                self._grad = None
            return
        if is_cuda_array(value):
            if not self.is_cuda:
                raise TypeError("cannot assign a CUDA array to a host parameter packed in an optimizer")
            arr = cuda_backend().memory.as_device(value)
        else:
            arr = np.asarray(value)
        if arr.shape != self.shape:
            raise ValueError(f"cannot assign data of shape {arr.shape} to a parameter of shape {self.shape}")
        if arr.dtype != self.dtype:
            raise TypeError(f"cannot assign data of dtype {arr.dtype} to a {self.dtype} parameter")
        # Packed: keep the binding and copy the values into the flat buffer.
        self._flat._assign(self._data, arr)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def size(self) -> int:
        return self._data.size

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def is_cuda(self) -> bool:
        """Whether the parameter lives in GPU memory (``data`` is then a Numba device array)."""
        return not isinstance(self._data, np.ndarray)

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        """The live data of a CUDA parameter, for CuPy, torch, Numba (``cupy.asarray(p)``, no copy)."""
        if not self.is_cuda:
            raise AttributeError("a host Parameter has no __cuda_array_interface__; use np.asarray(p)")
        return self._data.__cuda_array_interface__

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if self.is_cuda:
            raise TypeError(_ON_DEVICE)
        if copy:
            return np.array(self._data, dtype=dtype, copy=True)
        if dtype is None or np.dtype(dtype) == self._data.dtype:
            return self._data
        if copy is False:
            raise ValueError("converting a Parameter to another dtype needs a copy")
        return self._data.astype(dtype)

    def __len__(self) -> int:
        return len(self._data)

    # -- grad ---------------------------------------------------------------
    @property
    def grad(self) -> np.ndarray | SparseGrad | None:
        """The gradient, or ``None`` (the parameter is then skipped by ``step()``)."""
        return self._grad

    @grad.setter
    def grad(self, value: Any) -> None:
        if value is not None:
            if isinstance(value, SparseGrad):
                if self.is_cuda:
                    raise TypeError("SparseGrad gradients are host arrays; a CUDA parameter takes dense gradients")
                value.check_for(self.shape, self.dtype)
            else:
                if is_cuda_array(value):
                    if not self.is_cuda:
                        raise TypeError("assigned grad is a CUDA array, but the parameter lives in host memory")
                    value = cuda_backend().memory.as_device(value)
                elif not isinstance(value, np.ndarray):
                    value = np.asarray(value)
                if value.shape != self.shape:
                    raise ValueError(f"assigned grad has shape {value.shape}, parameter has shape {self.shape}")
                if value.dtype != self.dtype:
                    raise TypeError(
                        f"assigned grad has dtype {value.dtype}, parameter has dtype {self.dtype}; convert the "
                        f"gradient (g.astype({dtype_expression(self.dtype)})) or make the parameter {value.dtype} "
                        f"(numopt.Parameter(arr.astype({dtype_expression(value.dtype)})))"
                    )
        self._grad = value
        if self._flat is not None:
            self._flat.mark_dirty()

    # -- misc ---------------------------------------------------------------
    def zero_grad_(self) -> None:
        """Fill the gradient with zeros (allocating it if it is ``None``)."""
        if self._flat is not None:
            self.grad = self._flat.grad_view(self._index)
            self._flat._fill(self._grad, 0.0)
        elif self.is_cuda:
            self._grad = cuda_backend().memory.zeros_like(self._data)
        else:
            self._grad = np.zeros_like(self._data)

    def numpy(self) -> np.ndarray:
        """Return the live data array (no copy), like ``np.asarray(p)``."""
        if self.is_cuda:
            raise TypeError(_ON_DEVICE)
        return self._data

    def __repr__(self) -> str:
        nm = f", name={self.name!r}" if self.name else ""
        return f"Parameter(shape={self.shape}, dtype={self.dtype}{nm})"
