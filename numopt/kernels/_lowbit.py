"""Compact optimizer state: bfloat16 and block-wise 8-bit variants of the generated loops.

Both are variants of the loops :mod:`numopt.kernels._generate` writes from a rule's one
body; no rule is written again.

bfloat16 (``state_dtype="bfloat16"``)
    State arrays hold bfloat16 bit patterns in ``uint16`` arrays. The loops are the rule's
    ordinary CPU loops with every element read through :func:`load` and written through
    :func:`store` (``Elementwise.source(storage=True)``): for a float array they are plain
    indexing; for a ``uint16`` array ``load`` widens the bfloat16 to float32 and ``store``
    rounds to the nearest bfloat16, ties to even (:func:`~numopt.kernels._intrinsics.bf16_round`).
    The math runs in the parameter's dtype, in registers.

bfloat16 parameters and gradients
    ``param`` and ``grad`` hold bfloat16 bit patterns (``uint16`` views of ``ml_dtypes.bfloat16``
    arrays); the loops are again the rule's loops (``Elementwise.source(storage=True,
    bf16_param=True)``, or the 8-bit loop with ``bf16_param=True``), with the math in float32 and
    the new parameter written by :func:`round_store`: stochastic rounding (the float32 bits plus
    16 random bits, truncated; unbiased: ``E[round(x)] = x``) or rounding to nearest even. The
    random bits are a counter-based hash (:func:`mix32`, murmur3's finalizer) of a key (from the
    seed and the step, :func:`rounding_key`) and the element's index in its flat buffer: the same
    for any thread count, and reproducible. With a Kahan compensation array the parameter is read
    as ``param + compensation`` and :func:`round_store_kahan` keeps the rounding error there. The
    state is float32 (or ``state_dtype``'s form).

int8 (``state_dtype="int8"``)
    Block-wise 8-bit state as in bitsandbytes' 8-bit optimizers (Dettmers et al., "8-bit
    Optimizers via Block-wise Quantization", arXiv 2110.02861): each parameter's elements in
    blocks of :data:`BLOCK`, one float32 scale per block (the block's largest magnitude), each
    element a ``uint8`` code into a 256-entry dynamic map (:func:`dynamic_map`, signed for state
    such as ``exp_avg``, unsigned for non-negative state such as ``exp_avg_sq``). The loop
    (:func:`blocked_source`) runs over blocks in parallel; for each block it dequantizes every
    state element, calls the rule's body, writes the parameter and keeps the new state values in a
    per-thread scratch row (in L1) while it takes their largest magnitude, then quantizes the rows
    to the nearest map entries: one pass over memory. A block belongs to one thread, so the result
    does not depend on the thread count. Both inner loops vectorize (table look-ups become
    gathers); see :func:`blocked_source` for what that takes.

    Where the time goes: per element, two look-ups in the maps (dequantize) and two in the code
    tables (quantize), each a gather lane; on the AVX-512 AMD EPYC this was tuned on, a lane costs
    about 0.4 ns from L1 (scalar loads are no faster), as much as all of float32 Adam's own
    arithmetic (two divisions and a square root, kept for torch's rounding). Measured on one core
    with the arrays in cache, an AdamW step costs about 0.4 ns per element in float32, 0.5 ns with
    bfloat16 state and 2.6 ns with 8-bit state: the 8-bit loop is bound by its look-ups, not by
    memory, so it saves memory but not time.

On the GPU (CUDA parameters; bfloat16 parameters are host-only)
    Both forms have CUDA variants generated from the same bodies: bfloat16 state runs the rule's
    CUDA grid-stride loop through :func:`load` / :func:`store` (:func:`storage_cuda`); 8-bit state
    a kernel with one thread block per quantization block, its rows in shared memory
    (:func:`blocked_cuda_source`). The pieces (:func:`load`, :func:`store`, :func:`magnitude_bits`,
    :func:`scale_of`, :func:`inverse`, :func:`quantize`) are plain functions that compile for the
    CPU and CUDA targets alike and run as Python in Numba's CUDA simulator: the device's bits are
    the CPU's (in the simulator exactly; on a GPU too, but for the fused multiply-adds NVVM may
    form in a rule's arithmetic, see :mod:`numopt.kernels.cuda`).

Quantization, exactly (what the NumPy reference in the tests does)::

    scale = max(|v|) over the block (float32)           (NaN ignored)
    inv   = 1 / scale  (float32; 0 when scale == 0)
    x     = float32(v) * inv
    code  = number of thresholds t with t < x          (thresholds: the float32 midpoints of
                                                        neighbouring map entries)
    code  = 1 if code == 0 and x > 0                   (a positive value never reads back as 0)
    value = map[code] * scale  (float32)

The last rule departs from bitsandbytes' codes on purpose: with the unsigned map (whose code 0 is
0), a second moment under about 1.6e-7 times its block's largest would read back as exactly 0
while the first moment of the same element does not; a zero gradient on the next step (a dead
ReLU unit, a blank input pixel) then moves the weight by ``lr * m / eps``, and training diverged
(``examples/lowbit_quality.py``: 4 of 5 seeds without the rule, none with it). With the signed
map code 0 is the most negative entry, which no positive value takes: the rule changes nothing.

``code`` is found in constant time: a table indexed by the sign, exponent and top 7 mantissa bits
of ``x`` (a *bucket*) gives the count for the smallest value of that bucket, and one comparison
with the next threshold corrects it (each bucket holds at most one threshold; checked when the
table is built). Inside a bucket every value shares the top 16 bits of ``x``, so that comparison
needs only the low 16 bits of the threshold: one ``uint32`` entry per bucket holds both
(:attr:`QuantMap.packed`), and the loop reads it with one 32-bit gather from a table of 26 KB.
(Table look-ups are what the 8-bit loop spends its time on: a gather of 64-bit entries from a
table twice that size, which did not stay in the L1 cache, took twice as long.)
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload

from .._jit import JIT_OPTIONS
from ._generate import (
    BF16_PARAM_ARGS,
    Elementwise,
    _file_digest,
    compile_generated,
    execute_generated,
    portable,
    presence_variants,
)
from ._intrinsics import (
    _ABS_MASK,
    _INF_BITS,
    _ONE,
    _ROUND_BIAS,
    _SHIFT,
    _bits_f32,
    _f32_bits,
    bf16_round,
    bits_f32,
    f32_bits,
    fmix32,
    low32,
)

__all__ = [
    "BLOCK",
    "QuantMap",
    "blocked_loop",
    "dynamic_map",
    "load",
    "mix32",
    "quant_map",
    "round_bits",
    "round_store",
    "round_store_kahan",
    "rounding_key",
    "storage_loops",
    "store",
]

#: elements per quantization block (bitsandbytes' block size for CPU and its 8-bit optimizers)
BLOCK = 256

# -- the dynamic quantization map -----------------------------------------------------------------


def dynamic_map(signed: bool) -> np.ndarray:
    """bitsandbytes' dynamic 8-bit map (``create_dynamic_map``): 256 sorted float32 values in [-1, 1].

    Values ``10**e * m`` for decades ``e = -6 .. 0``, with ``m`` the midpoints of an even split of
    [0.1, 1] that doubles in resolution each decade (twice as fine for the unsigned map), plus 0 and
    1. The signed map mirrors the magnitudes to negative values (without -1).
    """
    data: list[float] = []
    exponent_bits, non_sign_bits = 7, 7
    for i in range(exponent_bits):
        items = (
            2 ** (i + non_sign_bits - exponent_bits) + 1 if signed else 2 ** (i + non_sign_bits - exponent_bits + 1) + 1
        )
        bounds = np.linspace(0.1, 1, items, dtype=np.float32)
        means = (bounds[:-1] + bounds[1:]) / np.float32(2)
        scale = 10.0 ** (-(exponent_bits - 1) + i)
        data += (scale * means.astype(np.float64)).tolist()
        if signed:
            data += (-scale * means.astype(np.float64)).tolist()
    data += [0.0, 1.0]
    assert len(data) == 256
    return np.sort(np.array(data, np.float32))


#: the magnitude buckets of the code table: exponents 2**-26 .. 2**0, 7 mantissa bits each, then 1.0
_EXP_LO = 127 - 26
_LO_TOP = _EXP_LO * 128
_NMAG = 26 * 128 + 1


class QuantMap:
    """A dynamic map with what quantizing to it takes.

    Attributes
    ----------
    values : float32 array (256,)
        The map, sorted.
    table : float32 array (512,)
        ``values`` then the 255 midpoints of neighbouring values (the thresholds) and ``inf``.
    index : uint8 array (2 * 3329,)
        For each bucket (sign, exponent, top 7 mantissa bits of a float32 in [-1, 1]) the number
        of thresholds below the bucket's smallest value.
    packed : uint32 array (2 * 3329,)
        What the loops read, one look-up per element: ``index | limit << 8``, with ``limit`` the
        low 16 bits of the bucket's threshold (the one above ``index``), so that for ``x`` in the
        bucket ``threshold < x`` reads ``low16(x) > limit``; for negative buckets both are
        ``0xFFFF - low16`` (magnitudes order the other way), and ``0xFFFF`` (never exceeded) when
        the threshold lies beyond the bucket. See :func:`quantize`.
    signed : bool
    """

    def __init__(self, signed: bool) -> None:
        self.signed = signed
        self.values = dynamic_map(signed)
        thresholds = ((self.values[:-1] + self.values[1:]) / np.float32(2)).astype(np.float32)
        self.thresholds = np.append(thresholds, np.float32(np.inf)).astype(np.float32)
        self.table = np.concatenate([self.values, self.thresholds]).astype(np.float32)
        starts = ((np.arange(_NMAG, dtype=np.uint32) + _LO_TOP) << 16).view(np.float32).astype(np.float64)
        starts[0] = 0.0
        ends = np.append(starts[1:], 1.0)
        ends[-1] = 1.0
        pos_lo = np.searchsorted(thresholds, starts, side="left")
        pos_hi = np.searchsorted(thresholds, ends, side="left")
        neg_lo = np.searchsorted(thresholds, -ends, side="right")
        neg_lo[-1] = np.searchsorted(thresholds, -1.0, side="left")
        neg_hi = np.searchsorted(thresholds, -starts, side="left")
        if np.any(pos_hi - pos_lo > 1) or np.any(neg_hi - neg_lo > 1):  # pragma: no cover  (a map change)
            raise AssertionError("quantization buckets hold more than one threshold")
        self.index = np.concatenate([pos_lo, neg_lo]).astype(np.uint8)
        self.packed = self._pack(starts, ends)

    def _pack(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """:attr:`packed` from :attr:`index`; ``starts``, ``ends``: each magnitude bucket's range (float64)."""
        above = self.thresholds[self.index.astype(np.intp)]
        bits = above.view(np.uint32).astype(np.int64)
        mag = np.abs(above.astype(np.float64))
        lo, hi = np.concatenate([starts, starts]), np.concatenate([ends, ends])
        negative = np.arange(2 * _NMAG) >= _NMAG
        # the threshold lies in the bucket: its magnitude in [start, end) for a positive bucket, (start, end] for a
        # negative one (the negative bucket holds the values -end < x <= -start)
        inside = np.where(negative, (mag > lo) & (mag <= hi), (mag >= lo) & (mag < hi)) & (above <= 1) & (above > -1)
        inside &= (above < 0) == negative
        low = bits & 0xFFFF
        limit = np.where(inside, np.where(negative, 0xFFFF - low, low), 0xFFFF)
        top = np.concatenate([np.arange(_NMAG) + _LO_TOP] * 2) | (negative << 15)
        if np.any(inside & ((bits >> 16) != top) & (np.arange(2 * _NMAG) % _NMAG != 0)):  # pragma: no cover
            raise AssertionError("a bucket's threshold does not share the bucket's top 16 bits")
        packed = (self.index.astype(np.int64) | (limit << 8)).astype(np.uint32)
        if not np.array_equal(self.lookup(self._probes(), packed), self.nearest(self._probes())):  # pragma: no cover
            raise AssertionError("the packed table does not reproduce the thresholds")
        return packed

    def _probes(self) -> np.ndarray:
        """Values where a code changes (each threshold and its float32 neighbours), bucket edges, -1, 0, 1."""
        t = self.thresholds[:-1]
        edges = ((np.arange(_NMAG, dtype=np.uint32) + _LO_TOP) << 16).view(np.float32)
        x = np.concatenate([t, np.nextafter(t, np.float32(-2)), np.nextafter(t, np.float32(2)), edges, -edges])
        x = np.concatenate([x, np.nextafter(x, np.float32(0)), np.float32([-1, 0, 1, -0.0])]).astype(np.float32)
        return x[(x >= -1) & (x <= 1)]

    def lookup(self, x: np.ndarray, packed: np.ndarray | None = None) -> np.ndarray:
        """Codes of ``x`` in [-1, 1] through :attr:`packed`, in NumPy: what :func:`quantize` does per element."""
        bits = np.asarray(x, np.float32).view(np.uint32).astype(np.int64)
        negative = bits >> 31
        bucket = np.clip(((bits >> 16) & 0x7FFF) - _LO_TOP, 0, _NMAG - 1) + negative * _NMAG
        entry = (self.packed if packed is None else packed)[bucket].astype(np.int64)
        low = (bits & 0xFFFF) ^ (negative * 0xFFFF)
        return ((entry & 0xFF) + (low > (entry >> 8))).astype(np.uint8)

    def nearest(self, x: np.ndarray) -> np.ndarray:
        """The nearest entries' codes of the float32 values ``x`` in [-1, 1]: ``searchsorted`` on the thresholds
        (what the table gives)."""
        return np.searchsorted(self.thresholds[:-1], np.asarray(x, np.float32), side="left").astype(np.uint8)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Codes of the float32 values ``x`` (already divided by their scale): :meth:`nearest`, then code 1
        for a positive value that would take code 0 (see the module docstring)."""
        codes = self.nearest(x)
        codes[(codes == 0) & (np.asarray(x, np.float32) > 0)] = 1
        return codes


@functools.cache
def quant_map(signed: bool) -> QuantMap:
    """The signed or unsigned :class:`QuantMap` (built once)."""
    return QuantMap(signed)


# -- per-element access by storage dtype -----------------------------------------------------------


def load(a, i):
    """Element ``i`` of ``a``: as it is for a float array, a bfloat16 (``uint16`` bits) widened to float32."""
    if a.dtype == np.uint16:
        return bits_f32(np.uint32(np.uint32(a[i]) << _SHIFT))
    return a[i]


def store(a, i, v):
    """Write ``v`` to element ``i`` of ``a``; into a ``uint16`` array as the nearest bfloat16 (ties to even)."""
    if a.dtype == np.uint16:
        a[i] = np.uint16(f32_bits(bf16_round(np.float32(v))) >> _SHIFT)
    else:
        a[i] = v


# load and store as Python (above: what the CUDA simulator runs) and compiled (below: for the CPU and CUDA
# targets alike), the same operations; compiled, the array's dtype picks the implementation once, when typed
@overload(load, jit_options=JIT_OPTIONS)
def _load_compiled(a, i):
    if isinstance(a, types.Array) and a.dtype == types.uint16:

        def impl(a, i):
            return bits_f32(np.uint32(np.uint32(a[i]) << _SHIFT))

        return impl

    def impl_plain(a, i):
        return a[i]

    return impl_plain


@overload(store, jit_options=JIT_OPTIONS)
def _store_compiled(a, i, v):
    if isinstance(a, types.Array) and a.dtype == types.uint16:

        def impl(a, i, v):
            a[i] = np.uint16(f32_bits(bf16_round(np.float32(v))) >> _SHIFT)

        return impl

    def impl_plain(a, i, v):
        a[i] = v

    return impl_plain


# -- writing bfloat16 parameters: stochastic or nearest rounding -------------------------------------
_U32 = np.uint32
_QNAN16 = np.uint16(0x7FC0)


@numba.njit(cache=True, **JIT_OPTIONS)
def mix32(h):
    """murmur3's 32-bit finalizer of ``h`` (a bijection of the 32-bit integers that mixes every bit):
    ``h ^= h >> 16; h *= 0x85EBCA6B; h ^= h >> 13; h *= 0xC2B2AE35; h ^= h >> 16`` modulo 2**32."""
    return fmix32(_U32(h))


def rounding_key(seed: int, step: float) -> int:
    """The 32-bit key of stochastic rounding at step ``step`` (the parameter's count, from 1) for ``seed``:
    ``mix32(seed ^ mix32(step + 0x9E3779B9))`` on the low 32 bits of each."""
    s = (int(step) + 0x9E3779B9) & 0xFFFFFFFF
    return int(mix32(np.uint32((seed & 0xFFFFFFFF) ^ int(mix32(np.uint32(s))))))


@numba.njit(cache=True, **JIT_OPTIONS)
def round_bits(v, key, index, stochastic):
    """The bfloat16 bits (``uint16``) of float32 ``v``: stochastic rounding with the random low 16 bits
    ``mix32(key ^ index)`` (``index``: the element's index in its flat buffer, low 32 bits), or nearest
    even; NaN becomes a quiet NaN, infinities stay."""
    bits = _f32_bits(np.float32(v))
    random = _U32(fmix32(_U32(_U32(key) ^ low32(np.int64(index)))) & _ULOW16)
    nearest = _U32(_ROUND_BIAS + ((bits >> _SHIFT) & _ONE))
    rounded = np.uint16(_U32(bits + (random if stochastic else nearest)) >> _SHIFT)
    return _QNAN16 if (bits & _ABS_MASK) > _INF_BITS else rounded


@numba.njit(cache=True, **JIT_OPTIONS)
def round_store(param, i, v, key, base, stochastic):
    """``param[i] = round_bits(v, key, base + i, stochastic)``: a bfloat16 parameter written back."""
    param[i] = round_bits(v, key, base + i, stochastic)


@numba.njit(cache=True, **JIT_OPTIONS)
def round_store_kahan(param, compensation, i, v, key, base, stochastic):
    """:func:`round_store`, and the rounding error ``v - param[i]`` (exact in float32) kept in
    ``compensation[i]`` (rounded to nearest bfloat16; 0 where it is not finite)."""
    bits = round_bits(v, key, base + i, stochastic)
    param[i] = bits
    error = np.float32(v) - _bits_f32(_U32(_U32(bits) << _SHIFT))
    error = error if error - error == _F0 else _F0
    compensation[i] = np.uint16(_f32_bits(bf16_round(error)) >> _SHIFT)


# -- 8-bit pieces ----------------------------------------------------------------------------------
_F0 = np.float32(0)
_F1 = np.float32(1)
_MASK = np.uint32(0x7FFF)
_SIGN = np.uint32(31)


_I32 = np.int32
_INF = _I32(0x7F800000)
_LO32, _Z32, _TOP32, _NMAG32 = _I32(_LO_TOP), _I32(0), _I32(_NMAG - 1), _I32(_NMAG)


@portable
def magnitude_bits(v):
    """The bits of ``|float32(v)|`` as an ``int32``, 0 for NaN: they order like the magnitudes.

    The block's scale is the largest of them (:func:`scale_of`): a 32-bit integer maximum, which
    LLVM vectorizes (a float maximum that skips NaN it does not, without fast-math flags).
    """
    b = _I32(f32_bits(np.float32(v)) & _ABS_MASK)
    return b if b <= _INF else _Z32


@portable
def scale_of(m):
    """The float32 whose bits are the largest :func:`magnitude_bits` ``m``: ``max |v|`` (NaN ignored)."""
    return bits_f32(np.uint32(m))


@portable
def inverse(scale):
    """``1 / scale`` in float32, 0 for a zero scale."""
    return _F1 / scale if scale > _F0 else _F0


_LOW16 = _I32(0xFFFF)
_ULOW16 = np.uint32(0xFFFF)
_EIGHT = _I32(8)
_BYTE = _I32(0xFF)


@portable
def quantize(v, inv, packed):
    """The code of ``float32(v) * inv``: the number of thresholds below it (:attr:`QuantMap.packed`)."""
    # branch-free, in 32-bit integers (so the look-up is a 16-lane gather with 32-bit indices)
    x = min(max(np.float32(v) * inv, -_F1), _F1)
    bits = f32_bits(x)
    negative = _I32(bits >> _SIGN)
    bucket = _I32(_I32(np.uint32(bits >> _SHIFT) & _MASK) - _LO32)
    entry = _I32(packed[_I32(min(max(bucket, _Z32), _TOP32) + _I32(negative * _NMAG32))])
    low = _I32(_I32(bits & _ULOW16) ^ _I32(negative * _LOW16))  # magnitudes order negative values the other way
    code = _I32(_I32(entry & _BYTE) + _I32(low > _I32(entry >> _EIGHT)))
    return np.uint8(code + _I32(_I32(code == _Z32) & _I32(x > _F0)))  # a positive value: code 1 at least


# -- the loops -------------------------------------------------------------------------------------
_STORAGE: dict[str, tuple[Any, Any]] = {}
_BLOCKED: dict[str, Any] = {}


def storage_loops(rule: Elementwise, bf16_param: bool = False) -> tuple[Any, Any]:
    """``(parallel, serial)`` loops of ``rule`` that read and write through :func:`load` / :func:`store`;
    ``bf16_param``: those for bfloat16 parameters and gradients (arguments :data:`BF16_PARAM_ARGS` after
    the arrays)."""
    key = f"{rule._module.__name__}.{rule.name}" + ("/bf16" if bf16_param else "")
    if key not in _STORAGE:
        src = rule.source("cpu", storage=True, bf16_param=bf16_param)
        extra = {"prange": prange, "load": load, "store": store}
        if bf16_param:
            extra.update(float32=np.float32, round_store=round_store, round_store_kahan=round_store_kahan)
        ns = _exec(rule, "storage" + ("_bf16" if bf16_param else ""), src, extra)

        def parallel(fname: str) -> bool:
            return fname[len(rule.name) :].startswith("_p") or (
                fname == rule.name and not rule.optional and not bf16_param
            )

        loops = compile_generated(ns, rule.name, parallel)
        _STORAGE[key] = (loops[rule.name], loops[f"{rule.name}_serial"])
    return _STORAGE[key]


def blocked_signature(rule: Elementwise, bf16_param: bool = False, scratch: bool = True) -> list[str]:
    """The 8-bit loop's arguments: ``param, grad``, four per state array, ``blocks, scratch``
    (``bf16_param``: then :data:`BF16_PARAM_ARGS`), the scalars. ``scratch=False``: without
    ``scratch`` (the CUDA kernel keeps its rows in shared memory)."""
    args = [*rule.arrays[:2]]
    for a in rule.state:
        args += [a, f"{a}_absmax", f"{a}_qtable", f"{a}_qpacked"]
    args += ["blocks", *(["scratch"] if scratch else []), *(BF16_PARAM_ARGS if bf16_param else ())]
    for p in rule._const_params:
        args.append(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}")
    args.append("grad_scale=1.0")
    return args


def _dequantized(a: str) -> str:
    """Element ``i`` of 8-bit state array ``a``, dequantized with the block's old scale, in the math dtype."""
    return f"dt({a}_qtable[{a}[i]] * scale_{a})"


def _blocked_variant(rule: Elementwise, fname: str, present: tuple[str, ...], bf16_param: bool = False) -> list[str]:
    """The 8-bit loop with the optional state arrays ``present`` (the others absent: zero, never written);
    ``bf16_param``: for bfloat16 parameters and gradients (math in float32, the parameter written by
    :func:`round_store`, or :func:`round_store_kahan` with ``'compensation'`` in ``present``)."""
    state = [a for a in rule.state if a not in rule.optional or a in present]
    updated = [a for a in updated_state(rule) if a in state]
    row = {a: k for k, a in enumerate(updated_state(rule))}
    kahan = bf16_param and "compensation" in present

    def element(a: str) -> str:
        if a == "param":
            if kahan:
                return "(dt(load(param, i)) + dt(load(compensation, i)))"
            return "dt(load(param, i))" if bf16_param else "param[i]"
        if a == "grad":
            return "dt(load(grad, i)) * gs" if bf16_param else "grad[i] * gs"
        return _dequantized(a) if a in state else "zero"

    if kahan:
        write = "round_store_kahan(param, compensation, i, param_i, key, base, stochastic)"
    else:
        write = "round_store(param, i, param_i, key, base, stochastic)" if bf16_param else "param[i] = param_i"
    dtype = "float32" if bf16_param else "param.dtype.type"
    outs = ", ".join(f"{a}_i" if a == "param" or a in updated else "_" for a in rule.updates)
    lines = [
        f"def {fname}({', '.join(blocked_signature(rule, bf16_param))}):",
        f"    c = constants({dtype}, {', '.join(rule.scalars)})",
        f"    dt = {dtype}",
        "    zero = dt(0)",
        "    gs = dt(grad_scale)",
        "    base = blocks[0]",
        "    for b in prange(blocks.size - 1):",
        "        lo = u64(blocks[b] - base)",
        "        n = blocks[b + 1] - blocks[b]",
        "        t = get_thread_id()",
        *[f"        scale_{a} = {a}_absmax[b]" for a in state],
        *[f"        m_{a} = z32" for a in updated],
        "        for j in range(n):",
        "            i = lo + u64(j)",
        f"            {outs} = body(c, {', '.join(element(a) for a in rule.arrays)})",
        f"            {write}",
        *[f"            scratch[t, {row[a]}, j] = {a}_i" for a in updated],
        *[f"            m_{a} = max(m_{a}, magnitude_bits({a}_i))" for a in updated],
    ]
    for a in updated:  # the new scales (the old ones are read no more)
        lines += [
            f"        scale_{a} = scale_of(m_{a})",
            f"        {a}_absmax[b] = scale_{a}",
            f"        inv_{a} = inverse(scale_{a})",
        ]
    lines += ["        for j in range(n):", "            i = lo + u64(j)"]
    lines += [f"            {a}[i] = quantize(scratch[t, {row[a]}, j], inv_{a}, {a}_qpacked)" for a in updated]
    return lines


def blocked_source(rule: Elementwise, bf16_param: bool = False) -> str:
    """The 8-bit loop of an optimizer's rule (arrays ``param, grad, <state>...``), as Python source.

    ``blocks`` holds the start of every block (element offsets, plus the end of the last); a
    state array is its ``uint8`` codes, one float32 scale per block (``<a>_absmax``), its map's
    ``table`` and ``packed`` (:class:`QuantMap`); an empty state array is absent (read as zero,
    never written). ``scratch[t, k, j]`` holds element ``j`` of the block's ``k``-th updated state
    for thread ``t``.

    Per block, two inner loops, each vectorized by LLVM: dequantize (a gather from the map), body,
    write the parameter and the new state into the scratch rows, and take the largest magnitude
    of each new state (an integer maximum of :func:`magnitude_bits`); then quantize the rows
    (:func:`quantize`, a gather from the packed table). What that takes: element offsets are
    unsigned (a signed index gets Numba's negative-index wrap-around, which stops vectorization),
    arrays are indexed directly (a view such as ``scratch[t]`` inside the parallel loop makes Numba
    drop the ``noalias`` of the loop's arrays, and without it LLVM cannot vectorize a loop that
    reads a table at computed indices while it writes), and, as for the ordinary loops, every
    combination of optional state arrays present gets a loop of its own (``<name>_q8_<bits>``),
    with ``<name>_q8`` picking one.
    """
    name = rule.name
    fname = f"{name}_q8"
    optional = (*rule.optional, "compensation") if bf16_param else rule.optional
    if not optional:
        return "\n".join(_blocked_variant(rule, fname, ())) + "\n"
    signature = blocked_signature(rule, bf16_param)
    call_args = ", ".join(a.split("=")[0] for a in signature)
    lines = presence_variants(
        fname,
        ", ".join(signature),
        call_args,
        optional,
        f"{fname}_",
        lambda f, p: _blocked_variant(rule, f, p, bf16_param),
    )
    return "\n".join(lines) + "\n"


def blocked_loop(rule: Elementwise, bf16_param: bool = False) -> Any:
    """The compiled 8-bit loop of ``rule`` (:func:`blocked_source`), built on first use."""
    if rule.arrays[:2] != ("param", "grad") or rule.updates[0] != "param":
        raise TypeError(f"{rule.name}: 8-bit state needs an optimizer's rule (arrays param, grad, <state>...)")
    key = f"{rule._module.__name__}.{rule.name}" + ("/bf16" if bf16_param else "")
    if key not in _BLOCKED:
        src = blocked_source(rule, bf16_param)
        extra = {
            "prange": prange,
            "get_thread_id": numba.get_thread_id,
            "magnitude_bits": magnitude_bits,
            "scale_of": scale_of,
            "quantize": quantize,
            "inverse": inverse,
            "u64": np.uint64,
            "z32": _Z32,
            "load": load,
            "float32": np.float32,
            "round_store": round_store,
            "round_store_kahan": round_store_kahan,
        }
        ns = _exec(rule, "q8" + ("_bf16" if bf16_param else ""), src, extra)
        public = f"{rule.name}_q8"
        # the variants run in parallel; the function that picks one among them runs none itself
        compiled = compile_generated(ns, public, lambda f: f != public or not (rule.optional or bf16_param))
        _BLOCKED[key] = compiled[public]
    return _BLOCKED[key]


def blocked_cuda_source(rule: Elementwise, dtype: str) -> str:
    """The CUDA 8-bit kernel of an optimizer's rule for parameters of ``dtype`` (``'float32'`` or
    ``'float64'``), as Python source: :func:`blocked_source`'s loop with a CUDA thread block per
    quantization block.

    The arguments are the CPU loop's without ``scratch``. Each thread block takes blocks ``b`` =
    ``blockIdx.x``, ``+ gridDim.x``, ...; its threads take elements ``j = threadIdx.x``, ``+ blockDim.x``,
    ... of the block: dequantize, call the body, write the parameter, keep the new state values in a
    row of shared memory (one row of ``BLOCK`` per updated state array) and their largest magnitude
    (:func:`magnitude_bits`) in a register; an ``atomic.max`` per row gives the block's. After a
    barrier thread 0 writes the new scales and every thread quantizes its elements (:func:`quantize`).
    The same functions as on the CPU, and a maximum does not depend on its order: the codes and
    scales are the CPU loop's, bit for bit, for any ``blockDim``. An optional state array is tested
    once per launch (``use_<a>``: a uniform branch); an absent one is read as zero, never written.
    """
    updated = updated_state(rule)
    row = {a: k for k, a in enumerate(updated)}
    optional = [a for a in rule.state if a in rule.optional]

    def element(a: str) -> str:
        if a == "param":
            return "param[i]"
        if a == "grad":
            return "grad[i] * gs"
        return f"{a}_i" if a in optional else _dequantized(a)

    def guarded(a: str, lines: list[str], indent: str) -> list[str]:
        """``lines`` for array ``a``: under ``if use_<a>:`` for an optional one."""
        if a not in optional:
            return [indent + line for line in lines]
        return [f"{indent}if use_{a}:", *[f"{indent}    {line}" for line in lines]]

    outs = ", ".join(f"{a}_i" if a == "param" or a in updated else "_" for a in rule.updates)
    rows = max(len(updated), 1)
    lines = [
        f"def {rule.name}_q8_cuda({', '.join(blocked_signature(rule, scratch=False))}):",
        f"    c = constants(param.dtype.type, {', '.join(rule.scalars)})",
        "    dt = param.dtype.type",
        "    zero = dt(0)",
        "    gs = dt(grad_scale)",
        *[f"    use_{a} = {a}.size != 0" for a in optional],
        f"    rows = cuda.shared.array(({rows}, {BLOCK}), {dtype})",
        f"    peak = cuda.shared.array({rows}, int32)",
        "    t = cuda.threadIdx.x",
        "    threads = cuda.blockDim.x",
        "    base = blocks[0]",
        "    for b in range(cuda.blockIdx.x, blocks.size - 1, cuda.gridDim.x):",
        "        lo = blocks[b] - base",
        "        n = blocks[b + 1] - blocks[b]",
        *[f"        scale_{a} = {a}_absmax[b]" + (f" if use_{a} else f0" if a in optional else "") for a in rule.state],
        *[f"        m_{a} = z32" for a in updated],
        "        if t == 0:",
        *[f"            peak[{row[a]}] = z32" for a in updated],
        "        cuda.syncthreads()",
        "        for j in range(t, n, threads):",
        "            i = lo + j",
        *[f"            {a}_i = {_dequantized(a)} if use_{a} else zero" for a in optional],
        f"            {outs} = body(c, {', '.join(element(a) for a in rule.arrays)})",
        "            param[i] = param_i",
    ]
    for a in updated:
        lines += guarded(a, [f"rows[{row[a]}, j] = {a}_i", f"m_{a} = max(m_{a}, magnitude_bits({a}_i))"], " " * 12)
    lines += [f"        cuda.atomic.max(peak, {row[a]}, m_{a})" for a in updated]
    lines.append("        cuda.syncthreads()")
    for a in updated:  # the new scales (the old ones are read no more)
        lines += [f"        scale_{a} = scale_of(peak[{row[a]}])", f"        inv_{a} = inverse(scale_{a})"]
    lines.append("        if t == 0:")
    for a in updated:
        lines += guarded(a, [f"{a}_absmax[b] = scale_{a}"], " " * 12)
    lines += ["        for j in range(t, n, threads):", "            i = lo + j"]
    for a in updated:
        lines += guarded(a, [f"{a}[i] = quantize(rows[{row[a]}, j], inv_{a}, {a}_qpacked)"], " " * 12)
    lines.append("        cuda.syncthreads()  # (the rows and peaks are the next block's)")
    return "\n".join(lines) + "\n"


_CUDA: dict[str, Any] = {}


def storage_cuda(rule: Elementwise) -> Any:
    """The CUDA loop of ``rule`` that reads and writes through :func:`load` / :func:`store` (bfloat16 state on
    the device), a launcher with the CPU storage loops' arguments; built on first use."""
    key = f"{rule._module.__name__}.{rule.name}/storage"
    if key not in _CUDA:
        from numba import cuda

        from .cuda._launch import Launcher, jit

        src = rule.source("cuda", storage=True)
        ns = _exec(rule, "storage_cuda", src, {"cuda": cuda, "load": load, "store": store})
        fn = ns[f"{rule.name}_cuda"]
        _CUDA[key] = Launcher(jit(fn), fn, storage_loops(rule)[0], lambda args: args[0].size)
    return _CUDA[key]


def blocked_cuda(rule: Elementwise, dtype: Any) -> Any:
    """The CUDA 8-bit kernel of ``rule`` for parameters of ``dtype`` (:func:`blocked_cuda_source`), a launcher
    taking the CPU loop's arguments without ``scratch``; one thread block per quantization block (the
    simulator runs a few threads per block, each looping over its share), built on first use."""
    if rule.arrays[:2] != ("param", "grad") or rule.updates[0] != "param":
        raise TypeError(f"{rule.name}: 8-bit state needs an optimizer's rule (arrays param, grad, <state>...)")
    name = np.dtype(dtype).name
    key = f"{rule._module.__name__}.{rule.name}/q8/{name}"
    if key not in _CUDA:
        from numba import cuda

        from .cuda import _launch

        extra = {
            "cuda": cuda,
            "magnitude_bits": magnitude_bits,
            "scale_of": scale_of,
            "quantize": quantize,
            "inverse": inverse,
            "z32": _Z32,
            "f0": _F0,
            "int32": np.int32,
            name: np.dtype(name).type,
        }
        ns = _exec(rule, f"q8_cuda_{name}", blocked_cuda_source(rule, name), extra)
        fn = ns[f"{rule.name}_q8_cuda"]
        at = 2 + 4 * len(rule.state)  # the position of ``blocks``

        def config(nblocks: int) -> tuple[int, int]:
            if _launch.SIMULATOR:
                return min(nblocks, _launch.SIM_Q8_BLOCKS), _launch.SIM_Q8_THREADS
            return nblocks, BLOCK

        _CUDA[key] = _launch.Launcher(_launch.jit(fn), fn, None, lambda args: args[at].size - 1, config)
    return _CUDA[key]


def updated_state(rule: Elementwise) -> tuple[str, ...]:
    """The state arrays ``rule`` writes (each needs a scratch row in the 8-bit loop)."""
    return tuple(a for a in rule.updates if a in rule.state)


def _exec(rule: Elementwise, target: str, src: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Run generated ``src`` (:func:`~numopt.kernels._generate.execute_generated`), the file's name also
    hashing this module (its pieces are inlined)."""
    src += f"# numopt.kernels._lowbit {_file_digest(__file__)[:16]}\n"
    names = {"constants": rule.constants, "body": rule.body, **extra}
    return execute_generated(__name__, rule.name, target, src, rule._module, names)
