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

int8 (``state_dtype="int8"``)
    Block-wise 8-bit state as in bitsandbytes' 8-bit optimizers (Dettmers et al., "8-bit
    Optimizers via Block-wise Quantization", arXiv 2110.02861): each parameter's elements in
    blocks of :data:`BLOCK`, one float32 scale per block (the block's largest magnitude), each
    element a ``uint8`` code into a 256-entry dynamic map (:func:`dynamic_map`, signed for state
    such as ``exp_avg``, unsigned for non-negative state such as ``exp_avg_sq``). The loop
    (:func:`blocked_source`) runs over blocks in parallel; for each block it dequantizes every
    state element, calls the rule's body, writes the parameter, keeps the new state values in a
    per-thread scratch row and their largest magnitude, then quantizes them to the nearest map
    entry: one pass over memory. A block belongs to one thread, so the result does not depend
    on the thread count.

Quantization, exactly (what the NumPy reference in the tests does)::

    scale = max(|v|) over the block (float32)           (NaN ignored)
    inv   = 1 / scale  (float32; 0 when scale == 0)
    x     = float32(v) * inv
    code  = number of thresholds t with t < x          (thresholds: the float32 midpoints of
                                                        neighbouring map entries)
    value = map[code] * scale  (float32)

``code`` is found in constant time: a table indexed by the sign, exponent and top 7 mantissa bits
of ``x`` gives the count for the smallest value of that bucket, and one comparison with the next
threshold corrects it (each bucket holds at most one threshold; checked when the table is built).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload

from .._jit import JIT_OPTIONS, kernel
from ._generate import Elementwise, _file_digest, _source_file
from ._intrinsics import _bits_f32, _f32_bits, bf16_round

__all__ = [
    "BLOCK",
    "QuantMap",
    "blocked_loop",
    "dynamic_map",
    "load",
    "quant_map",
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

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Codes of the float32 values ``x`` (already divided by their scale): ``searchsorted`` on the thresholds."""
        return np.searchsorted(self.thresholds[:-1], np.asarray(x, np.float32), side="left").astype(np.uint8)


@functools.cache
def quant_map(signed: bool) -> QuantMap:
    """The signed or unsigned :class:`QuantMap` (built once)."""
    return QuantMap(signed)


# -- per-element access by storage dtype -----------------------------------------------------------


def load(a, i):
    """Element ``i`` of ``a``: as it is for a float array, a bfloat16 (``uint16`` bits) widened to float32."""
    if a.dtype == np.uint16:
        return _py_bf16(a[i])
    return a[i]


def store(a, i, v):
    """Write ``v`` to element ``i`` of ``a``; into a ``uint16`` array as the nearest bfloat16 (ties to even)."""
    if a.dtype == np.uint16:
        a[i] = _py_bf16_bits(np.float32(v))
    else:
        a[i] = v


def _py_bf16(bits: Any) -> np.float32:
    return np.array([np.uint32(bits) << np.uint32(16)], np.uint32).view(np.float32)[0]


def _py_bf16_bits(x: np.float32) -> np.uint16:
    return np.uint16(np.array([x], np.float32).view(np.uint32)[0] >> np.uint32(16))


_SHIFT = np.uint32(16)


@overload(load, jit_options=JIT_OPTIONS)
def _load_compiled(a, i):
    if isinstance(a, types.Array) and a.dtype == types.uint16:

        def impl(a, i):
            return _bits_f32(np.uint32(np.uint32(a[i]) << _SHIFT))

        return impl

    def impl_plain(a, i):
        return a[i]

    return impl_plain


@overload(store, jit_options=JIT_OPTIONS)
def _store_compiled(a, i, v):
    if isinstance(a, types.Array) and a.dtype == types.uint16:

        def impl(a, i, v):
            a[i] = np.uint16(_f32_bits(bf16_round(np.float32(v))) >> _SHIFT)

        return impl

    def impl_plain(a, i, v):
        a[i] = v

    return impl_plain


# -- 8-bit pieces ----------------------------------------------------------------------------------
_F1 = np.float32(1)
_F0 = np.float32(0)
_MASK = np.uint32(0x7FFF)
_SIGN = np.uint32(31)


@numba.njit(cache=True, **JIT_OPTIONS)
def dequantize(code, table, scale):
    """``map[code] * scale`` in float32 (``table[:256]`` is the map)."""
    return table[code] * scale


@numba.njit(cache=True, **JIT_OPTIONS)
def grow_absmax(m, v):
    """``max(m, |v|)`` in float32 (a NaN ``v`` is ignored)."""
    a = abs(np.float32(v))
    return a if a > m else m


@numba.njit(cache=True, **JIT_OPTIONS)
def inverse(scale):
    """``1 / scale`` in float32, 0 for a zero scale."""
    return _F1 / scale if scale > _F0 else _F0


@numba.njit(cache=True, **JIT_OPTIONS)
def quantize(v, inv, table, index):
    """The code of ``float32(v) * inv``: the number of thresholds (``table[256:]``) below it."""
    # branch-free (the signs and the last comparison are data, unpredictable): min/max and arithmetic
    x = min(max(np.float32(v) * inv, -_F1), _F1)
    bits = _f32_bits(x)
    j = min(max(np.int64((bits >> _SHIFT) & _MASK) - _LO_TOP, 0), _NMAG - 1) + _NMAG * np.int64(bits >> _SIGN)
    k = np.int64(index[j])
    return np.uint8(k + np.int64(table[256 + k] < x))


# -- the loops -------------------------------------------------------------------------------------
_STORAGE: dict[str, tuple[Any, Any]] = {}
_BLOCKED: dict[str, Any] = {}


def storage_loops(rule: Elementwise) -> tuple[Any, Any]:
    """``(parallel, serial)`` loops of ``rule`` that read and write through :func:`load` / :func:`store`."""
    key = f"{rule._module.__name__}.{rule.name}"
    if key not in _STORAGE:
        src = (
            f"# Generated by numopt.kernels._lowbit from {rule._module.__name__}.{rule.name}: do not edit.\n"
            + rule.source("cpu", storage=True)
        )
        ns = _exec(rule, f"{rule.name}_storage", src, {"prange": prange, "load": load, "store": store})
        loops = {}
        for fname in [k for k, v in ns.items() if k.startswith(rule.name) and inspect.isfunction(v)]:
            fn = ns[fname]
            fn.__qualname__ = fname
            tag = fname[len(rule.name) :]
            parallel = tag.startswith("_p") or (fname == rule.name and not rule.optional)
            loops[fname] = ns[fname] = kernel(fn, parallel=parallel, twin=False)
        _STORAGE[key] = (loops[rule.name], loops[f"{rule.name}_serial"])
    return _STORAGE[key]


def blocked_signature(rule: Elementwise) -> list[str]:
    """The 8-bit loop's arguments: ``param, grad``, four per state array, ``blocks, scratch``, the scalars."""
    args = [*rule.arrays[:2]]
    for a in rule.state:
        args += [a, f"{a}_absmax", f"{a}_qtable", f"{a}_qindex"]
    args += ["blocks", "scratch"]
    for p in rule._const_params:
        args.append(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}")
    args.append("grad_scale=1.0")
    return args


def blocked_source(rule: Elementwise) -> str:
    """The 8-bit loop of an optimizer's rule (arrays ``param, grad, <state>...``), as Python source.

    ``blocks`` holds the start of every block (element offsets, plus the end of the last); a
    state array is its ``uint8`` codes, one float32 scale per block (``<a>_absmax``), its map's
    ``table`` and ``index`` (:class:`QuantMap`); an empty state array is absent (read as zero,
    never written). ``scratch[t, k]`` holds block values of the ``k``-th updated state for thread ``t``.
    """
    name, state = rule.name, rule.state
    updated = [a for a in rule.updates if a in state]
    lines = [
        f"def {name}_q8({', '.join(blocked_signature(rule))}):",
        f"    c = constants(param.dtype.type, {', '.join(rule.scalars)})",
        "    dt = param.dtype.type",
        "    zero = dt(0)",
        "    gs = dt(grad_scale)",
        *[f"    use_{a} = {a}.size != 0" for a in state],
        "    base = blocks[0]",
        "    for b in prange(blocks.size - 1):",
        "        lo = blocks[b] - base",
        "        hi = blocks[b + 1] - base",
        "        s = scratch[get_thread_id()]",
        *[f"        scale_{a} = {a}_absmax[b] if use_{a} else f0" for a in state],
        *[f"        m_{a} = f0" for a in updated],
        "        for i in range(lo, hi):",
        *[f"            {a}_i = dt(dequantize({a}[i], {a}_qtable, scale_{a})) if use_{a} else zero" for a in state],
        f"            {', '.join(f'{a}_i' for a in rule.updates)} = body(c, param[i], grad[i] * gs, "
        f"{', '.join(f'{a}_i' for a in state)})",
        "            param[i] = param_i",
    ]
    for k, a in enumerate(updated):
        lines += [f"            s[{k}, i - lo] = {a}_i", f"            m_{a} = grow_absmax(m_{a}, {a}_i)"]
    for k, a in enumerate(updated):
        lines += [
            f"        if use_{a}:",
            f"            {a}_absmax[b] = m_{a}",
            f"            inv = inverse(m_{a})",
            "            for i in range(lo, hi):",
            f"                {a}[i] = quantize(s[{k}, i - lo], inv, {a}_qtable, {a}_qindex)",
        ]
    return "\n".join(lines) + "\n"


def blocked_loop(rule: Elementwise) -> Any:
    """The compiled 8-bit loop of ``rule`` (:func:`blocked_source`), built on first use."""
    if rule.arrays[:2] != ("param", "grad") or rule.updates[0] != "param":
        raise TypeError(f"{rule.name}: 8-bit state needs an optimizer's rule (arrays param, grad, <state>...)")
    key = f"{rule._module.__name__}.{rule.name}"
    if key not in _BLOCKED:
        src = f"# Generated by numopt.kernels._lowbit from {rule._module.__name__}.{rule.name}: do not edit.\n"
        src += blocked_source(rule)
        extra = {
            "prange": prange,
            "get_thread_id": numba.get_thread_id,
            "dequantize": dequantize,
            "quantize": quantize,
            "grow_absmax": grow_absmax,
            "inverse": inverse,
            "f0": _F0,
        }
        ns = _exec(rule, f"{rule.name}_q8", src, extra)
        fn = ns[f"{rule.name}_q8"]
        fn.__qualname__ = f"{rule.name}_q8"
        _BLOCKED[key] = kernel(fn, parallel=True, twin=False)
    return _BLOCKED[key]


def updated_state(rule: Elementwise) -> tuple[str, ...]:
    """The state arrays ``rule`` writes (each needs a scratch row in the 8-bit loop)."""
    return tuple(a for a in rule.updates if a in rule.state)


def _exec(rule: Elementwise, stem: str, src: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Run generated ``src`` from a file whose name also hashes this module (its pieces are inlined)."""
    src += f"# numopt.kernels._lowbit {_file_digest(__file__)[:16]}\n"
    path = _source_file(stem, src, rule._module)
    namespace = {"__name__": rule._module.__name__, "constants": rule.constants, "body": rule.body, **extra}
    exec(compile(src, path, "exec"), namespace)  # noqa: S102  (our own generated source)
    return namespace
