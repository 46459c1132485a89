"""Compact optimizer state (``state_dtype="bfloat16"`` or ``"int8"``): its storage and readable views.

With a ``state_dtype``, an optimizer's per-element state lives in a :class:`StateStore` per flat
buffer and state name, in place of a float array; the generated loops read and write it in its
compact form (:mod:`numopt.kernels._lowbit`). ``optimizer.state[p][name]`` is then one of:

:class:`BFloat16State`
    ``.bits`` (``uint16`` bfloat16 bit patterns, shaped like the parameter); ``.dequantize()``
    gives float32 values (``np.asarray(s)`` too).
:class:`Int8State`
    ``.codes`` (``uint8``, shaped like the parameter), ``.absmax`` (one float32 scale per block of
    256 elements), ``.signed`` (which dynamic map); ``.dequantize()`` gives float32 values.
a float array
    with ``"int8"``, the state of a parameter under ``min_8bit_size`` elements (kept in full
    precision, as in bitsandbytes).

These are live views while in ``optimizer.state`` and copies in ``state_dict()``, which
``load_state_dict`` and :func:`numopt.save` / :func:`numopt.load` carry bit for bit. Loading a
full-precision array into a compact state (or the other way) converts it.

CUDA parameters keep their compact state in GPU memory (a :class:`StateStore` of device arrays,
the maps copied to the device once): the views then hold device arrays, ``.dequantize()`` returns
a host NumPy array, and ``state_dict()`` holds host copies (:meth:`Int8State.to_host`). The loops
are the CUDA variants generated from the same rule bodies (:func:`pick`).

bfloat16 parameters (``ml_dtypes.bfloat16``, see :mod:`numopt._bf16`) run through the same
loops, generated once more for bfloat16 ``param`` and ``grad`` (:func:`pick`): the update in
float32, the parameter written back by stochastic or nearest rounding. Their state is float32
with ``state_dtype=None`` (not the parameter's dtype, as torch would keep it: bfloat16 moments
lose most of an update's precision, and ``state_dtype='bfloat16'`` asks for that explicitly), or
the compact form ``state_dtype`` names.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numba
import numpy as np

from ._bf16 import COMPENSATION_KEY
from .kernels._lowbit import (
    BLOCK,
    blocked_cuda,
    blocked_loop,
    quant_map,
    rounding_key,
    storage_cuda,
    storage_loops,
    updated_state,
)

__all__ = [
    "STATE_DTYPES",
    "BFloat16State",
    "Int8State",
    "StateStore",
    "check_state_dtype",
    "decode_bf16",
    "encode_bf16",
]

#: the accepted values of ``state_dtype`` (besides None: the parameter's dtype)
STATE_DTYPES = ("bfloat16", "int8")


def check_state_dtype(owner: type, state_dtype: Any, min_8bit_size: Any) -> None:
    """Raise for a ``state_dtype`` / ``min_8bit_size`` the optimizer class ``owner`` cannot take."""
    if state_dtype is None:
        return
    if not isinstance(state_dtype, str) or state_dtype not in STATE_DTYPES:
        raise ValueError(f"state_dtype must be None, 'bfloat16' or 'int8', got {state_dtype!r}")
    name = owner.__name__
    if owner.rule is None:
        raise ValueError(
            f"state_dtype={state_dtype!r}: {name} has no generated elementwise rule, so its state cannot be "
            "stored in a compact form; use state_dtype=None"
        )
    if not owner.state_tensors:
        raise ValueError(f"state_dtype={state_dtype!r}: {name} keeps no per-element state; use state_dtype=None")
    from .optimizer import Optimizer

    if owner._state_layout is not Optimizer._state_layout:
        raise ValueError(
            f"state_dtype={state_dtype!r}: {name}'s state is not shaped like its parameters; use state_dtype=None"
        )
    if isinstance(min_8bit_size, bool) or not isinstance(min_8bit_size, (int, np.integer)) or min_8bit_size < 0:
        raise ValueError(f"min_8bit_size must be a whole number >= 0, got {min_8bit_size!r}")


# -- bfloat16 encoding (NumPy) ---------------------------------------------------------------------
def encode_bf16(x: Any) -> np.ndarray:
    """The bfloat16 bit patterns (``uint16``) nearest to ``x`` (as float32), ties to even; NaN stays NaN."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(nan, np.uint16(0x7FC0), rounded).astype(np.uint16)


def decode_bf16(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bit patterns (``uint16``)."""
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


# -- host or device arrays ------------------------------------------------------------------------------
def _on_host(a: Any) -> np.ndarray:
    """``a`` itself for a host array; a host copy of a device array."""
    return a if isinstance(a, np.ndarray) else a.copy_to_host()


def _copy(a: Any) -> Any:
    """A copy of the host or device array ``a``, where ``a`` is."""
    if isinstance(a, np.ndarray):
        return a.copy()
    from ._device import cuda_backend

    return cuda_backend().memory.detached(a)


def _values(value: Any) -> np.ndarray:
    """The values of a state entry (a view below, a host or device array) as a host float32 array."""
    if hasattr(value, "dequantize"):
        return value.dequantize()
    return np.asarray(_on_host(value) if hasattr(value, "copy_to_host") else value, np.float32)


# -- the readable views ----------------------------------------------------------------------------
class BFloat16State:
    """One parameter's state in bfloat16: ``.bits`` (``uint16``, the parameter's shape).

    ``np.asarray(s)`` and :meth:`dequantize` give float32 values.
    """

    __slots__ = ("bits",)
    state_dtype = "bfloat16"

    def __init__(self, bits: np.ndarray) -> None:
        self.bits = bits

    @property
    def shape(self) -> tuple[int, ...]:
        return self.bits.shape

    @property
    def nbytes(self) -> int:
        return self.bits.nbytes

    def dequantize(self, dtype: Any = np.float32) -> np.ndarray:
        """The values as a new host float array (float32 unless ``dtype`` says otherwise)."""
        return decode_bf16(_on_host(self.bits)).astype(dtype, copy=False)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.dequantize(np.float32 if dtype is None else dtype)

    def copy(self) -> BFloat16State:
        """A copy, in the memory (host or device) of this one."""
        return BFloat16State(_copy(self.bits))

    def to_host(self) -> BFloat16State:
        """A copy in host memory (NumPy arrays)."""
        return self.copy() if isinstance(self.bits, np.ndarray) else BFloat16State(_on_host(self.bits))

    def __deepcopy__(self, memo: dict) -> BFloat16State:
        return self.copy()

    def __repr__(self) -> str:
        return f"BFloat16State(shape={self.shape}, values={self.dequantize()!r})"


class Int8State:
    """One parameter's block-wise 8-bit state.

    Attributes
    ----------
    codes : uint8 array, the parameter's shape
        Indices into the dynamic map.
    absmax : float32 array, ``ceil(size / 256)``
        Each block's scale (its largest magnitude), blocks of 256 elements in C order.
    signed : bool
        Signed map (state such as ``exp_avg``) or unsigned (non-negative state such as ``exp_avg_sq``).
    """

    __slots__ = ("codes", "absmax", "signed")
    state_dtype = "int8"

    def __init__(self, codes: np.ndarray, absmax: np.ndarray, signed: bool) -> None:
        self.codes, self.absmax, self.signed = codes, absmax, bool(signed)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.codes.shape

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + self.absmax.nbytes

    def dequantize(self, dtype: Any = np.float32) -> np.ndarray:
        """The values ``map[code] * absmax`` (float32) as a new host array."""
        flat = _on_host(self.codes).reshape(-1)
        scales = np.repeat(_on_host(self.absmax), BLOCK)[: flat.size]
        values = quant_map(self.signed).values[flat] * scales
        return values.reshape(self.codes.shape).astype(dtype, copy=False)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.dequantize(np.float32 if dtype is None else dtype)

    def copy(self) -> Int8State:
        """A copy, in the memory (host or device) of this one."""
        return Int8State(_copy(self.codes), _copy(self.absmax), self.signed)

    def to_host(self) -> Int8State:
        """A copy in host memory (NumPy arrays)."""
        if isinstance(self.codes, np.ndarray):
            return self.copy()
        return Int8State(_on_host(self.codes), _on_host(self.absmax), self.signed)

    def __deepcopy__(self, memo: dict) -> Int8State:
        return self.copy()

    def __repr__(self) -> str:
        return f"Int8State(shape={self.shape}, signed={self.signed}, values={self.dequantize()!r})"


def quantize_blocks(values: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, absmax)`` of ``values`` (any shape, C order), blocks of 256: the loops' rule, in NumPy."""
    v = np.ascontiguousarray(values, np.float32).reshape(-1)
    n = v.size
    nb = -(-n // BLOCK)
    padded = np.zeros(nb * BLOCK, np.float32)
    padded[:n] = v
    mags = np.abs(padded).reshape(nb, BLOCK)
    absmax = (
        np.where(np.isnan(mags), np.float32(0), mags).max(axis=1).astype(np.float32) if nb else np.zeros(0, np.float32)
    )
    with np.errstate(divide="ignore"):
        inv = np.where(absmax > 0, np.float32(1) / np.where(absmax > 0, absmax, np.float32(1)), np.float32(0))
    x = (padded.reshape(nb, BLOCK) * inv[:, None].astype(np.float32)).reshape(-1)[:n]
    return quant_map(signed).quantize(x), absmax.astype(np.float32)


# -- the storage ----------------------------------------------------------------------------------
class Q8Slice(NamedTuple):
    """The 8-bit state of a run of parameters, as the 8-bit loop takes it.

    ``table`` and ``packed`` are its map's (:class:`~numopt.kernels._lowbit.QuantMap`).
    """

    codes: np.ndarray
    absmax: np.ndarray
    table: np.ndarray
    packed: np.ndarray


class StateStore:
    """State array ``name`` of one flat buffer, stored compactly.

    ``"bfloat16"``: ``bits`` (``uint16``, the buffer's layout). ``"int8"``: for each parameter of
    ``min_size`` elements or more, ``codes`` (``uint8``, the buffer's layout) and ``absmax`` (one
    float32 per block, blocks numbered by parameter); the others in ``full`` (the buffer's dtype,
    those parameters only, packed). For a buffer in GPU memory (``flat.is_cuda``) every array,
    the map's ``table`` and ``packed`` included, is a device array.
    """

    #: marks compact state among a buffer's state entries (host or device arrays otherwise)
    is_compact_state = True

    def __init__(self, flat: Any, name: str, fill: float, fmt: str, signed: bool, min_size: int) -> None:
        self.name, self.fmt, self.signed = name, fmt, bool(signed)
        self.offsets = list(flat.offsets)
        self.shapes = [p.shape for p in flat.params]
        #: the device-memory helpers (``numopt.kernels.cuda.memory``) of a device buffer; None on the host
        self._mem = flat._mem if flat.is_cuda else None
        #: ``(p0, p1)`` -> the block offsets of those parameters (:meth:`blocks`)
        self._blocks: dict[tuple[int, int], Any] = {}
        new = np.empty if self._mem is None else self._mem.empty
        n = len(self.shapes)
        if fmt == "bfloat16":
            self.bits = new(flat.size, np.uint16)
            self.quantized = [True] * n
        else:
            sizes = [self.offsets[i + 1] - self.offsets[i] for i in range(n)]
            self.quantized = [s >= min_size and s > 0 for s in sizes]
            block_first, full_first = [0], [0]
            for s, q in zip(sizes, self.quantized):
                block_first.append(block_first[-1] + (-(-s // BLOCK) if q else 0))
                full_first.append(full_first[-1] + (0 if q else s))
            self.block_first, self.full_first = block_first, full_first
            self.codes = new(flat.size if any(self.quantized) else 0, np.uint8)
            self.absmax = new(block_first[-1], np.float32)
            self.full = new(full_first[-1], flat.math_dtype)
            self.table, self.packed = map_arrays(self.signed, self._mem is not None)
        for i in range(n):
            self.reset(i, fill)

    # -- what loops and views see
    def slice(self, p0: int, p1: int) -> Any:
        """The storage of parameters ``p0:p1`` (all of one kind) for a loop."""
        lo, hi = self.offsets[p0], self.offsets[p1]
        if self.fmt == "bfloat16":
            return self.bits[lo:hi]
        if self.quantized[p0]:
            return Q8Slice(
                self.codes[lo:hi], self.absmax[self.block_first[p0] : self.block_first[p1]], self.table, self.packed
            )
        return self.full[self.full_first[p0] : self.full_first[p1]]

    def blocks(self, p0: int, p1: int) -> Any:
        """The element offsets of the blocks of parameters ``p0:p1`` (all quantized), and the end of the
        last (:func:`blocks_of`); made once, in the store's memory."""
        key = (p0, p1)
        blocks = self._blocks.get(key)
        if blocks is None:
            blocks = blocks_of(self, p0, p1)
            if self._mem is not None:
                blocks = self._mem.to_device(blocks)
            blocks = self._blocks[key] = blocks
        return blocks

    def view(self, i: int) -> Any:
        """Parameter ``i``'s state as ``optimizer.state[p][name]`` shows it (a live view)."""
        lo, hi, shape = self.offsets[i], self.offsets[i + 1], self.shapes[i]
        if self.fmt == "bfloat16":
            return BFloat16State(self.bits[lo:hi].reshape(shape))
        if self.quantized[i]:
            return Int8State(
                self.codes[lo:hi].reshape(shape),
                self.absmax[self.block_first[i] : self.block_first[i + 1]],
                self.signed,
            )
        return self.full[self.full_first[i] : self.full_first[i + 1]].reshape(shape)

    def owns(self, value: Any) -> bool:
        """Whether ``value`` (a state entry) views this store."""
        arrays = [getattr(self, k) for k in ("bits", "codes", "full") if hasattr(self, k)]
        mine = (
            value.bits if isinstance(value, BFloat16State) else value.codes if isinstance(value, Int8State) else value
        )
        return isinstance(mine, np.ndarray) and any(a.size and np.may_share_memory(mine, a) for a in arrays)

    # -- writing
    def _fill(self, arr: Any, value: Any) -> None:
        """Set every element of ``arr`` (a part of this store) to ``value``."""
        if self._mem is None:
            arr[...] = value
        elif arr.size:
            self._mem.fill_(arr, value)

    def _put(self, arr: Any, values: Any) -> None:
        """Copy ``values`` (a host array, or a device array on the device) into ``arr``, a part of this store."""
        if self._mem is None:
            arr[...] = values
        else:
            self._mem.copy_into(arr, values)

    def reset(self, i: int, fill: float) -> None:
        """Set parameter ``i``'s state to ``fill`` everywhere."""
        lo, hi = self.offsets[i], self.offsets[i + 1]
        if self.fmt == "bfloat16":
            self._fill(self.bits[lo:hi], encode_bf16(np.float32(fill))[0])
        elif self.quantized[i]:
            codes, absmax = quantize_blocks(np.full(1, fill, np.float32), self.signed)  # every block alike
            self._fill(self.codes[lo:hi], codes[0])
            self._fill(self.absmax[self.block_first[i] : self.block_first[i + 1]], absmax[0])
        else:
            self._fill(self.full[self.full_first[i] : self.full_first[i + 1]], fill)

    def assign(self, i: int, value: Any) -> None:
        """Set parameter ``i``'s state from ``value``: bit for bit in its own format, else converted."""
        lo, hi = self.offsets[i], self.offsets[i + 1]
        if self.fmt == "bfloat16":
            bits = value.bits if isinstance(value, BFloat16State) else encode_bf16(_values(value))
            self._put(self.bits[lo:hi], bits.reshape(-1))
        elif self.quantized[i]:
            if isinstance(value, Int8State) and value.signed == self.signed:
                codes, absmax = value.codes, value.absmax
            else:
                codes, absmax = quantize_blocks(_values(value), self.signed)
            self._put(self.codes[lo:hi], codes.reshape(-1))
            self._put(self.absmax[self.block_first[i] : self.block_first[i + 1]], absmax)
        else:
            full = self.full[self.full_first[i] : self.full_first[i + 1]]
            if hasattr(value, "dequantize"):
                value = value.dequantize(full.dtype)
            elif not hasattr(value, "copy_to_host"):  # (a device array is copied as it is)
                value = np.asarray(value, full.dtype)
            self._put(full, value.reshape(-1))

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, k).nbytes for k in ("bits", "codes", "absmax", "full") if hasattr(self, k))


def blocks_of(store: StateStore, p0: int, p1: int) -> np.ndarray:
    """The element offsets of the blocks of parameters ``p0:p1`` (all quantized), and the end of the last."""
    parts = [np.arange(store.offsets[i], store.offsets[i + 1], BLOCK, dtype=np.int64) for i in range(p0, p1)]
    parts.append(np.array([store.offsets[p1]], np.int64))
    return np.concatenate(parts)


#: (signed, on the device) -> the map's ``(table, packed)``: a device copy made once per process
_MAPS: dict[tuple[bool, bool], tuple[Any, Any]] = {}


def map_arrays(signed: bool, device: bool) -> tuple[Any, Any]:
    """The ``(table, packed)`` arrays of the signed or unsigned map (:class:`~numopt.kernels._lowbit.QuantMap`),
    on the host or in GPU memory (copied there once)."""
    key = (bool(signed), bool(device))
    arrays = _MAPS.get(key)
    if arrays is None:
        qmap = quant_map(signed)
        arrays = (qmap.table, qmap.packed)
        if device:
            from ._device import cuda_backend

            to_device = cuda_backend().memory.to_device
            arrays = (to_device(qmap.table), to_device(qmap.packed))
        _MAPS[key] = arrays
    return arrays


_EMPTY_CODES = np.empty(0, np.uint8)
_EMPTY_SCALES = np.empty(0, np.float32)
_EMPTY_BITS = np.empty(0, np.uint16)


def bf16_arguments(run: Any) -> tuple[np.ndarray, int, int, bool]:
    """The arguments a loop for bfloat16 parameters takes after its arrays (``BF16_PARAM_ARGS``), for ``run``
    at its current step: the Kahan compensation (``uint16``, empty without), the rounding key (from the
    optimizer's ``seed`` and the step), the run's offset in its flat buffer, and ``rounding == 'stochastic'``."""
    owner = run._flat().owner
    comp = run.state.get(COMPENSATION_KEY)
    bits = _EMPTY_BITS if comp is None else comp.view(np.uint16)
    return bits, rounding_key(owner.seed, run.step), run.lo, owner.rounding == "stochastic"


def pick(run: Any, kernel: Any) -> Any:
    """The loop of ``kernel`` for a run whose state is compact (``run.fmt``) or whose parameters are bfloat16
    (``run.bf16``), called as ``kernel`` is: a CPU loop, or for a run in GPU memory (``run.cuda``; its
    parameters are never bfloat16) the CUDA variant generated from the same rule."""
    rule = getattr(kernel, "rule", None)
    if rule is None:  # pragma: no cover  (refused at construction)
        raise RuntimeError(f"{kernel!r} has no generated rule: it cannot run on compact state or bfloat16")
    nstate = len(rule.state)
    extra = bf16_arguments(run) if run.bf16 else ()
    if run.fmt != "int8":  # state in a float array or bfloat16: the loops through load / store
        if run.cuda:
            return storage_cuda(rule)
        parallel, serial = storage_loops(rule, run.bf16)
        loop = serial if run.small else parallel
        if not run.bf16:
            return loop

        def call_bf16(param: np.ndarray, grad: np.ndarray, *rest: Any, **kw: Any) -> Any:
            return loop(param, grad, *rest[:nstate], *extra, *rest[nstate:], **kw)

        return call_bf16
    if run.cuda:  # one thread block per quantization block, its rows in shared memory
        loop, rows = blocked_cuda(rule, run.data.dtype), ()
    else:
        loop, rows = blocked_loop(rule, run.bf16), (run.scratch(len(updated_state(rule))),)
    table, packed = map_arrays(True, run.cuda)
    blocks = run.blocks

    def call(param: np.ndarray, grad: np.ndarray, *rest: Any, **kw: Any) -> Any:
        args: list[Any] = [param, grad]
        for a in rest[:nstate]:
            if isinstance(a, Q8Slice):
                args += [a.codes, a.absmax, a.table, a.packed]
            else:  # an optional array turned off (empty; a CUDA launcher swaps in empty device arrays)
                args += [_EMPTY_CODES, _EMPTY_SCALES, table, packed]
        return loop(*args, blocks, *rows, *extra, *rest[nstate:], **kw)

    return call


def new_scratch(dtype: np.dtype, rows: int) -> np.ndarray:
    """Per-thread rows for the 8-bit loop: ``(threads, rows, 256)`` of ``dtype``."""
    return np.zeros((numba.config.NUMBA_NUM_THREADS, max(rows, 1), BLOCK), dtype)
