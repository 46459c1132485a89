"""Scalar building blocks for kernels that must round exactly like torch.

``fma(a, b, c)``
    ``a * b + c`` with one rounding (LLVM's ``llvm.fma``; one instruction on
    CPUs with FMA). torch's vectorized CPU kernels use fused multiply-adds for
    ``lerp`` and ``add(..., alpha=)``; kernels that must match them bit for bit
    use this instead of ``a * b + c`` (which Numba rounds twice).
``f32_bits(x)``, ``bits_f32(b)``
    The bits of a float32 as a ``uint32``, and back: one bit cast in compiled code (CPU
    and CUDA), a NumPy view as Python (the CUDA simulator runs them so).
``bf16_round(x)``
    A float32 rounded to the nearest bfloat16 (ties to even), returned as a
    float32 whose low 16 mantissa bits are zero: the value torch's
    ``tensor.bfloat16()`` holds (checked bit for bit on random bit patterns,
    subnormals included). NaN becomes a quiet NaN; values beyond bfloat16's
    range round to infinity, as in torch.

Both are inlined into the calling kernel and vectorize.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from .._jit import JIT_OPTIONS

__all__ = ["bf16_round", "bits_f32", "f32_bits", "fma", "fmix32", "low32"]


@intrinsic
def fma(typingctx, a, b, c):  # noqa: ARG001  (numba's intrinsic signature)
    """``a * b + c`` rounded once; all three arguments of one float type."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None
    sig = a(a, b, c)

    def codegen(context, builder, signature, args):  # noqa: ARG001
        ty = args[0].type
        fn = builder.module.declare_intrinsic("llvm.fma", [ty], ir.FunctionType(ty, [ty, ty, ty]))
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def sqrt(typingctx, x):  # noqa: ARG001  (numba's intrinsic signature)
    """The square root of a float, correctly rounded, in its own type (NaN below 0): ``llvm.sqrt``.

    The same instruction np.sqrt compiles to on the CPU; numba-cuda has no lowering of ``np.sqrt`` on
    scalars, and NVVM compiles this to the correctly rounded ``sqrt.rn``.
    """
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, signature, args):  # noqa: ARG001
        ty = args[0].type
        fn = builder.module.declare_intrinsic("llvm.sqrt", [ty], ir.FunctionType(ty, [ty]))
        return builder.call(fn, args)

    return x(x), codegen


@intrinsic
def _f32_bits(typingctx, x):  # noqa: ARG001
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):  # noqa: ARG001
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@intrinsic
def _bits_f32(typingctx, x):  # noqa: ARG001
    if x != types.uint32:
        return None

    def codegen(context, builder, signature, args):  # noqa: ARG001
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


def f32_bits(x):
    """The bits of the float32 ``x`` as a ``uint32`` (a bit cast)."""
    return np.float32(x).view(np.uint32)


def bits_f32(b):
    """The float32 whose bits are the ``uint32`` ``b`` (a bit cast)."""
    return np.uint32(b).view(np.float32)


@overload(f32_bits, inline="never", jit_options=JIT_OPTIONS)
def _f32_bits_compiled(x):
    def impl(x):
        return _f32_bits(x)

    return impl


@overload(bits_f32, inline="never", jit_options=JIT_OPTIONS)
def _bits_f32_compiled(b):
    def impl(b):
        return _bits_f32(b)

    return impl


@intrinsic
def fmix32(typingctx, h):  # noqa: ARG001
    """murmur3's 32-bit finalizer of ``h`` (``uint32``), in 32-bit operations (Numba's own ``uint32``
    arithmetic widens to 64 bits, and a 64-bit vector multiply costs three 32-bit ones)."""
    if h != types.uint32:
        return None

    def codegen(context, builder, signature, args):  # noqa: ARG001
        i32 = ir.IntType(32)
        x = args[0]
        for shift, factor in ((16, 0x85EBCA6B), (13, 0xC2B2AE35)):
            x = builder.xor(x, builder.lshr(x, ir.Constant(i32, shift)))
            x = builder.mul(x, ir.Constant(i32, factor))
        return builder.xor(x, builder.lshr(x, ir.Constant(i32, 16)))

    return types.uint32(types.uint32), codegen


@intrinsic
def low32(typingctx, x):  # noqa: ARG001
    """The low 32 bits of a 64-bit integer, as a ``uint32``."""
    if not (isinstance(x, types.Integer) and x.bitwidth == 64):
        return None

    def codegen(context, builder, signature, args):  # noqa: ARG001
        return builder.trunc(args[0], ir.IntType(32))

    return types.uint32(x), codegen


_ABS_MASK = np.uint32(0x7FFFFFFF)
_INF_BITS = np.uint32(0x7F800000)
_QNAN_BITS = np.uint32(0x7FC00000)
_HIGH_MASK = np.uint32(0xFFFF0000)
_ROUND_BIAS = np.uint32(0x7FFF)
_SHIFT = np.uint32(16)
_ONE = np.uint32(1)


@njit(inline="always", cache=True)
def bf16_round(x):
    """``x`` (float32) rounded to bfloat16 precision, round-to-nearest-even."""
    bits = _f32_bits(x)
    if (bits & _ABS_MASK) > _INF_BITS:  # NaN stays NaN (quiet)
        return _bits_f32(_QNAN_BITS)
    # numba widens uint32 arithmetic to uint64; no sum below exceeds 32 bits
    rounded = (bits + _ROUND_BIAS + ((bits >> _SHIFT) & _ONE)) & _HIGH_MASK
    return _bits_f32(np.uint32(rounded))
