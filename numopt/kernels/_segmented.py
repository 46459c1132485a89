"""Loops over a run's blocks, generated for the CPU and CUDA from one per-element piece each.

The optimizers with a per-parameter or global reduction (Lamb, LARS, Prodigy) step a run
of a flat buffer in passes over its block table (:mod:`numopt.kernels.segments`: blocks
of at most ``CHUNK`` elements, each inside one parameter), with a little host arithmetic
between the passes (each parameter's norms and trust ratio from the blocks' partial sums).
Each pass is declared once, as a :class:`BlockPass`: a per-element ``piece`` (a
:func:`~numopt.kernels._generate.portable` function, shared by every target) and its
``constants`` function, as an elementwise rule is (:mod:`numopt.kernels._generate`).
From it come

* a parallel CPU loop (``prange`` over the blocks), and its serial twin;
* a CUDA loop (one CUDA block per table block, grid-stride; the threads' sums added in a
  fixed tree order), built on first use.

Either way each block writes its own float64 partial sums, so the results do not depend on
the thread count or the grid size. A whole step is one Python function taking a backend
first (:func:`segmented`): it runs its passes with ``on.run(pass, ...)`` and reads the
partials with ``on.to_host(...)``; the same function then serves the CPU (parallel and
serial) and CUDA, where only the partials and one scalar per parameter cross between host
and device.

A piece takes ``(c, <per-parameter values>..., <elements>...)`` and returns a tuple: the new
values of the arrays the pass updates, in the order ``updates`` names them, then the
``sums`` float64 numbers added up per block.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import prange
from numba.extending import register_jitable

from .._jit import CHUNK, kernel
from ._generate import execute_generated, portable

__all__ = ["BlockPass", "CPU", "SERIAL", "no_constants", "parameter_sums", "segmented"]


class BlockPass:
    """One pass over a run's block table: a per-element piece, its constants, and the loops made from them.

    The loops take ``(<arrays>..., offs, start, owner, <per_param>..., [partials,] <scalars>...)``:
    the run's arrays, its block table (:func:`numopt.kernels.segments.block_table`), one array
    per per-parameter value (indexed by the block's parameter), ``partials`` (float64,
    ``(sums, blocks)``; only when ``sums``) and the constants function's scalars.

    Parameters
    ----------
    piece : function ``(c, <per_param>..., <arrays>...) -> tuple``
        One element's work (see the module docstring).
    constants : function ``(dt, <scalars>...) -> tuple``
        The loop constants, cast once to the first array's dtype ``dt``.
    arrays : tuple of str
        The arrays the piece reads, in its order; the first sets the dtype.
    updates : tuple of str
        The arrays it writes, in the order it returns them.
    optional : tuple of str
        Arrays that may be empty (an option turns them off): read as zero, never written.
    per_param : tuple of str
        Per-parameter arrays; the piece gets each one's entry for the element's parameter.
    sums : int
        The float64 numbers the piece returns last, added up per block into ``partials``.
    """

    def __init__(
        self,
        piece: Callable,
        constants: Callable,
        *,
        arrays: tuple[str, ...],
        updates: tuple[str, ...] = (),
        optional: tuple[str, ...] = (),
        per_param: tuple[str, ...] = (),
        sums: int = 0,
    ) -> None:
        self.piece = portable(piece)
        self.constants = portable(constants)
        self.name = f"{piece.__name__}_blocks"
        names = tuple(inspect.signature(piece).parameters)
        if names != ("c", *per_param, *arrays):
            raise TypeError(f"{piece.__name__}: a piece takes (c, {', '.join((*per_param, *arrays))}), got {names}")
        if any(a not in arrays for a in (*updates, *optional)):
            raise TypeError(f"{piece.__name__}: updates and optional must name its arrays")
        self.arrays, self.updates, self.optional = tuple(arrays), tuple(updates), tuple(optional)
        self.per_param, self.sums = tuple(per_param), int(sums)
        params = list(inspect.signature(constants).parameters)
        if params[:1] != ["dt"]:
            raise TypeError(f"{constants.__name__}: the constants function takes (dt, <scalars>...)")
        self.scalars = tuple(params[1:])
        self._module = sys.modules[piece.__module__]
        namespace = self._define("cpu", {"prange": prange})
        self.parallel = kernel(namespace[self.name], parallel=True, twin=False)
        self.serial = kernel(namespace[f"{self.name}_serial"], parallel=False)
        self._cuda: Any = None

    def signature(self) -> list[str]:
        """The loops' parameter names."""
        partials = ["partials"] if self.sums else []
        return [*self.arrays, "offs", "start", "owner", *self.per_param, *partials, *self.scalars]

    def _loop(self, fname: str, target: str) -> list[str]:
        first = self.arrays[0]
        lines = [
            f"def {fname}({', '.join(self.signature())}):",
            f"    c = constants({', '.join((f'{first}.dtype.type', *self.scalars))})",
        ]
        if self.optional:
            lines.append(f"    zero = {first}.dtype.type(0)")
        lines += [f"    use_{a} = {a}.size != 0" for a in self.optional]
        if target == "cuda":
            lines += ["    t = cuda.threadIdx.x", "    nt = cuda.blockDim.x"]
            if self.sums:
                lines.append("    shared = cuda.shared.array(RED_THREADS, float64)")
            lines.append("    for b in range(cuda.blockIdx.x, start.size, cuda.gridDim.x):")
            elements = "range(start[b] + t, hi, nt)"
        else:
            lines.append(f"    for b in {'range' if fname.endswith('_serial') else 'prange'}(start.size):")
            elements = "range(start[b], hi)"
        lines += ["        i = owner[b]", "        hi = min(start[b] + CHUNK, offs[i + 1])"]
        lines += [f"        {p}_i = {p}[i]" for p in self.per_param]
        lines += [f"        s{k} = np.float64(0)" for k in range(self.sums)]
        lines.append(f"        for j in {elements}:")
        lines += [f"            {a}_j = {a}[j] if use_{a} else zero" for a in self.optional]
        args = [f"{p}_i" for p in self.per_param] + [f"{a}_j" if a in self.optional else f"{a}[j]" for a in self.arrays]
        outs = [f"{a}_new" for a in self.updates] + [f"d{k}" for k in range(self.sums)]
        lines.append(f"            {', '.join(outs)}{',' if len(outs) == 1 else ''} = piece(c, {', '.join(args)})")
        for a in self.updates:
            if a in self.optional:
                lines += [f"            if use_{a}:", f"                {a}[j] = {a}_new"]
            else:
                lines.append(f"            {a}[j] = {a}_new")
        lines += [f"            s{k} += d{k}" for k in range(self.sums)]
        if target == "cuda" and self.sums:
            lines += [f"        s{k} = block_sum(shared, s{k})" for k in range(self.sums)]
            lines.append("        if t == 0:")
            lines += [f"            partials[{k}, b] = s{k}" for k in range(self.sums)]
        else:
            lines += [f"        partials[{k}, b] = s{k}" for k in range(self.sums)]
        return lines

    def source(self, target: str = "cpu") -> str:
        """The generated Python source of the pass's loops: ``'cpu'`` (parallel and serial) or ``'cuda'``."""
        if target == "cuda":
            return "\n".join(self._loop(f"{self.name}_cuda", "cuda")) + "\n"
        return "\n".join([*self._loop(self.name, "cpu"), "", *self._loop(f"{self.name}_serial", "cpu")]) + "\n"

    def _define(self, target: str, extra: dict[str, Any]) -> dict[str, Any]:
        names = {"constants": self.constants, "piece": self.piece, "np": np, "CHUNK": CHUNK, **extra}
        return execute_generated(__name__, self.name, target, self.source(target), self._module, names)

    def cuda(self) -> Any:
        """The compiled CUDA loop (launch it with :func:`numopt.kernels.cuda.segments.launch`)."""
        if self._cuda is None:
            from numba import cuda, float64

            from .cuda._launch import jit
            from .cuda.clip import RED_THREADS
            from .cuda.segments import block_sum

            extra = {"cuda": cuda, "float64": float64, "RED_THREADS": RED_THREADS, "block_sum": block_sum}
            self._cuda = jit(self._define("cuda", extra)[f"{self.name}_cuda"])
        return self._cuda

    def __repr__(self) -> str:
        return f"<block pass {self._module.__name__}.{self.name}{self.arrays}>"


@register_jitable
def parameter_sums(partials, first, i):
    """Parameter ``i``'s two sums: its blocks' partials (``partials[0]``, ``partials[1]``), added in block
    order (``first[i]:first[i + 1]``), the same for any thread count. For the host arithmetic between passes."""
    s0 = np.float64(0)
    s1 = np.float64(0)
    for b in range(first[i], first[i + 1]):
        s0 += partials[0, b]
        s1 += partials[1, b]
    return s0, s1


def no_constants(dt):
    """The constants of a pass that has none."""
    return ()


class _Host:
    """The CPU backend of a :func:`segmented` step: passes run as the parallel or the serial loop."""

    def __init__(self, serial: bool) -> None:
        self.serial = serial

    def run(self, block_pass: BlockPass, *args: Any) -> None:
        (block_pass.serial if self.serial else block_pass.parallel)(*args)

    def to_host(self, a: np.ndarray) -> np.ndarray:
        """``a`` readable on the host (here: ``a`` itself)."""
        return a

    def scratch(self, a: np.ndarray) -> np.ndarray:
        """A host array to fill for ``a`` (here: ``a`` itself), then handed to :meth:`send`."""
        return a

    def send(self, host: np.ndarray, a: np.ndarray) -> None:
        """Make ``a`` hold ``host`` (here: it does already)."""


#: the CPU backends: parallel loops, and the serial loops (runs under ``CHUNK`` elements)
CPU, SERIAL = _Host(serial=False), _Host(serial=True)


def segmented(step: Callable) -> Any:
    """Make ``step(on, ...)`` a kernel: called as ``step(...)`` it runs on the CPU in parallel;
    ``.serial`` runs it on one thread; ``.on_cuda`` on device arrays (the CUDA twin, registered by
    :mod:`numopt.kernels.cuda.segments`)."""
    parameters = list(inspect.signature(step).parameters.values())[1:]

    @functools.wraps(step)
    def parallel(*args: Any, **kwargs: Any) -> Any:
        return step(CPU, *args, **kwargs)

    @functools.wraps(step)
    def serial(*args: Any, **kwargs: Any) -> Any:
        return step(SERIAL, *args, **kwargs)

    def on_cuda(*args: Any, **kwargs: Any) -> Any:
        from .cuda.segments import DEVICE

        return step(DEVICE, *args, **kwargs)

    for fn in (parallel, serial, on_cuda):
        fn.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    on_cuda.__name__ = on_cuda.__qualname__ = step.__name__
    on_cuda.__doc__ = f"CUDA twin of :func:`{step.__module__}.{step.__name__}` (same arguments, device arrays)."
    parallel.serial = serial  # type: ignore[attr-defined]
    parallel.on_cuda = on_cuda  # type: ignore[attr-defined]
    parallel.py_func = parallel  # type: ignore[attr-defined]  (as a Numba kernel: its signature, its key)
    return parallel
