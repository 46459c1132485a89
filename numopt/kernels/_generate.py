"""Every loop of an elementwise update rule, generated from the rule's one body.

An update rule is written once, as two plain functions in ``numopt/kernels/<rule>.py``:

``<rule>_constants(dt, <scalars>...)``
    The per-step constants of the loop, formed from float64 scalars (``lr``, the
    betas, bias corrections, ...) and flags, each cast once to the arrays' dtype
    ``dt``. Returns a tuple.
``<rule>_step(c, param, grad, <state>...)``
    The rule for one element: ``c`` is that tuple, the other arguments are one
    element of each array. Returns the new values of the arrays it updates, in
    the order ``updates`` names them. Its docstring states the rule.

:func:`elementwise` turns the pair into kernels over 1-D arrays, all with the
signature ``(param, grad, <state>..., <scalars>...)``:

* a parallel CPU loop (``prange``), the function the decorator returns;
* its thread-free twin, ``.serial``, for arrays too small for a parallel launch;
* a size-aware loop, ``.auto`` (``numopt.functional.<rule>``), that runs the serial loop
  for arrays under ``numopt._jit.PARALLEL_THRESHOLD`` elements and the parallel one from
  there (the threshold is written into the generated source, so it is part of its hash);
* a CUDA grid-stride loop, built on first use by ``.rule.cuda()``.

Each loop reads one element of every array, calls the body (inlined) and writes
back what it updates: one pass over memory. An optimizer's loops (arrays
``param, grad, ...``) take one more, optional scalar last, ``grad_scale``: the
gradient is multiplied by it as it is read (clipping fused into the step;
``Optimizer.clip_grad_norm_``). State arrays named in ``optional``
may be empty (an option turns them off): the loop then neither reads nor writes
them. The loops are Python source generated here and compiled by Numba from a
file (so Numba's on-disk cache works for them); the file's name carries a hash
of everything that goes into it, the rule's module included, so a changed rule
never meets a stale cached loop.

Bodies and the pieces they share (:mod:`numopt.kernels._pieces`) are plain
functions made :func:`portable`: the same function compiles inlined into CPU
and CUDA loops, and runs as Python in Numba's CUDA simulator.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from numba import prange
from numba.extending import overload

from .._jit import CACHE, JIT_OPTIONS, PARALLEL_THRESHOLD, kernel

__all__ = ["BF16_PARAM_ARGS", "Elementwise", "elementwise", "portable"]

#: the arguments a loop for bfloat16 parameters (``Elementwise.source(bf16_param=True)``) takes after its
#: arrays: the Kahan ``compensation`` array (``uint16``, may be empty), the rounding ``key`` (a 32-bit
#: integer from the seed and the step), ``base`` (the element offset of ``param[0]`` in its flat buffer)
#: and ``stochastic`` (a flag: stochastic rounding, else nearest even); see ``numopt.kernels._lowbit``
BF16_PARAM_ARGS = ("compensation", "key", "base", "stochastic")


def portable(fn: Callable) -> Callable:
    """Make the plain function ``fn`` callable from compiled loops on every target.

    ``fn`` stays an ordinary Python function (the CUDA simulator runs it as such);
    Numba code calling it compiles ``fn`` itself, on the CPU and on CUDA alike,
    with numopt's flags (the NumPy error model: division by zero gives inf/nan).
    It is compiled as a function of its own that LLVM then inlines into the loop
    (the loop still vectorizes); Numba's own IR inlining (``inline="always"``)
    compiled 3-5x slower and trips its parallel-loop analysis on nested tuples.
    Float literals in a per-element piece would be float64 in compiled code: take
    constants from the caller instead.
    """

    if getattr(fn, "_portable", False):  # already made portable (a piece shared by several loops)
        return fn

    def typer(*args: Any) -> Callable:
        return fn

    typer.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    overload(fn, inline="never", jit_options=JIT_OPTIONS)(typer)
    fn._portable = True  # type: ignore[attr-defined]
    return fn


class Elementwise:
    """An elementwise update rule: its body, its constants, and the loops generated from them.

    Attributes
    ----------
    name : str
        The kernel's name, ``'<rule>_step'`` (the body's name).
    arrays : tuple of str
        The kernel's array arguments, in order: for an optimizer ``param``, ``grad``,
        then the state. The first array sets the loop's length and dtype.
    state : tuple of str
        An optimizer's state arrays (``arrays`` less ``param`` and ``grad``).
    updates : tuple of str
        The arrays the rule writes, in the order its body returns them.
    optional : tuple of str
        State arrays that may be empty (turned off by an option).
    scalars : tuple of str
        The kernel's scalar arguments (float64 numbers and flags), in order.
    """

    def __init__(
        self, body: Callable, constants: Callable, updates: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> None:
        self.body = portable(body)
        self.constants = portable(constants)
        self.name: str = body.__name__
        arrays = tuple(inspect.signature(body).parameters)
        if arrays[:1] != ("c",) or len(arrays) < 2:
            raise TypeError(f"{self.name}: a rule body takes (c, <arrays>...), got {arrays}")
        self.arrays: tuple[str, ...] = arrays[1:]
        self.state: tuple[str, ...] = arrays[3:] if arrays[1:3] == ("param", "grad") else ()
        first = self.arrays[0]
        unknown = [a for a in (*updates, *optional) if a not in self.arrays[1:] and a != first]
        if unknown or updates[:1] != (first,) or first in optional:
            raise TypeError(f"{self.name}: updates must start with {first!r} and name its arrays; got {updates}")
        self.updates: tuple[str, ...] = tuple(updates)
        self.optional: tuple[str, ...] = tuple(optional)
        const_sig = inspect.signature(constants)
        names = list(const_sig.parameters)
        if names[:1] != ["dt"]:
            raise TypeError(f"{constants.__name__}: the constants function takes (dt, <scalars>...)")
        self._const_params = list(const_sig.parameters.values())[1:]
        self.scalars: tuple[str, ...] = tuple(p.name for p in self._const_params)
        #: an optimizer's rule (arrays ``param, grad, ...``): its loops take a last, optional scalar
        #: ``grad_scale`` (float64, default 1), every gradient element multiplied by it (rounded to the
        #: arrays' dtype, as a separate scaling pass would) before the body sees it: clipping by norm
        #: fused into the step. Multiplying by exactly 1 changes no value.
        self.scales_grad: bool = arrays[1:3] == ("param", "grad")
        self._cuda: Any = None
        self._module = sys.modules[body.__module__]
        self.parallel, serial, auto = self._compile_cpu()
        self.parallel.serial = serial
        self.parallel.auto = auto
        self.parallel.rule = self
        for loop in (self.parallel, serial, auto):
            loop.__doc__ = body.__doc__

    @property
    def functional_name(self) -> str:
        """The rule's name in :mod:`numopt.functional` (``adam_step`` -> ``adam``)."""
        return self.name.removesuffix("_step")

    # -- the loops -------------------------------------------------------------------------------
    def _signature(self, extra: tuple[str, ...] = (), ema: bool = False) -> str:
        params = [*self.arrays, *extra]
        for p in self._const_params:
            params.append(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}")
        if self.scales_grad:
            params.append("grad_scale=1.0")
        if ema:  # (defaults of None and 1.0: with some others, e.g. 0.0, Numba's dispatcher takes a slow path)
            params += ["ema=None", "ema_weight=1.0"]
        return ", ".join(params)

    def _takes_ema(self, target: str, storage: bool, bf16_param: bool) -> bool:
        """Whether these loops take the optional ``ema`` array: an optimizer's plain CPU loops do."""
        return self.scales_grad and target == "cpu" and not storage and not bf16_param

    def _loop(
        self,
        fname: str,
        loop: str,
        present: tuple[str, ...] | None,
        storage: bool = False,
        bf16_param: bool = False,
        ema: bool = False,
    ) -> list[str]:
        """One loop function. ``present``: the optional arrays it reads and writes unconditionally
        (the others are absent: read as zero, never written); ``None``: decide per array at run time.
        ``storage``: every element goes through ``load(a, i)`` / ``store(a, i, v)``, which decode and
        encode by the array's dtype (``numopt.kernels._lowbit``: bfloat16 state in uint16 arrays).
        ``bf16_param`` (with ``storage``): ``param`` and ``grad`` hold bfloat16 bits, the math runs in
        float32 and the new parameter is written by ``round_store`` (stochastic or nearest rounding);
        with ``'compensation'`` in ``present``, the parameter is read as ``param + compensation`` and
        written by ``round_store_kahan``, which keeps what rounding lost in ``compensation``. The loop
        takes the arguments :data:`BF16_PARAM_ARGS` after the arrays. ``ema``: the loop also takes the
        optional ``ema`` array and its ``ema_weight``, and folds each new ``param`` into it (see
        :meth:`_takes_ema`)."""
        kahan = bf16_param and present is not None and "compensation" in present

        def get(a: str) -> str:
            if a == "param" and kahan:
                return "(dt(load(param, i)) + dt(load(compensation, i)))"
            return f"dt(load({a}, i))" if storage else f"{a}[i]"

        def put(a: str, v: str) -> str:
            if a == "param" and bf16_param and kahan:
                return f"round_store_kahan(param, compensation, i, {v}, key, base, stochastic)"
            if a == "param" and bf16_param:
                return f"round_store(param, i, {v}, key, base, stochastic)"
            return f"store({a}, i, {v})" if storage else f"{a}[i] = {v}"

        dtype = "float32" if bf16_param else f"{self.arrays[0]}.dtype.type"
        lines = [
            f"def {fname}({self._signature(BF16_PARAM_ARGS if bf16_param else (), ema)}):",
            f"    c = constants({dtype}, {', '.join(self.scalars)})",
            f"    n = {self.arrays[0]}.size",
        ]
        if storage:
            lines.append(f"    dt = {dtype}")
        dynamic = self.optional if present is None else ()
        absent = () if present is None else tuple(a for a in self.optional if a not in present)
        if dynamic or absent:
            lines.append(f"    zero = {dtype}(0)")
        if self.scales_grad:
            lines.append(f"    gs = {dtype}(grad_scale)")
        if ema:  # Numba prunes the branches on `ema is not None` when no ema is given
            lines += [
                "    if ema is not None:",
                f"        ew, esmall, ecomplement = lerp_constants({dtype}, ema_weight)",
            ]
        lines += [f"    use_{a} = {a}.size != 0" for a in dynamic]
        lines.append(f"    for i in {loop}:")
        lines += [f"        {a}_i = {get(a)} if use_{a} else zero" for a in dynamic]

        def element(a: str) -> str:
            if a in absent:
                return "zero"
            if a in dynamic:
                return f"{a}_i"
            return f"{get('grad')} * gs" if a == "grad" and self.scales_grad else get(a)

        args = ", ".join(element(a) for a in self.arrays)
        outs = ", ".join("_" if a in absent else f"{a}_i" for a in self.updates)
        lines.append(f"        {outs} = body(c, {args})")
        for a in self.updates:
            if a in dynamic:
                lines += [f"        if use_{a}:", f"            {put(a, f'{a}_i')}"]
            elif a not in absent:
                lines.append(f"        {put(a, f'{a}_i')}")
        if ema:
            lines += [
                "        if ema is not None:",
                "            ema[i] = lerp(ema[i], param_i, ew, esmall, ecomplement)",
            ]
        return lines

    def source(self, target: str = "cpu", storage: bool = False, bf16_param: bool = False) -> str:
        """The generated Python source of the rule's loops: ``'cpu'`` or ``'cuda'``.

        On the CPU, each loop (parallel ``<name>``, serial ``<name>_serial``) is generated
        once per combination of optional arrays present (``<name>_p<bits>``, ``<name>_s<bits>``),
        each reading and writing its arrays unconditionally, and ``<name>`` / ``<name>_serial``
        pick one: a load or store under a condition kept LLVM from vectorizing the loop (10x
        slower in Numba's parallel loops, 3x in serial ones). ``<name>_auto`` calls ``<name>_serial``
        or ``<name>`` by the first array's size. The CUDA loop tests per optional array whether it
        is there (a uniform branch costs a GPU nothing). ``storage``: the loops (CPU or CUDA) with every
        element read and written through ``load`` / ``store`` (see :meth:`_loop`); ``bf16_param``: those
        CPU loops for bfloat16 parameters and gradients (math in float32), one variant more per loop for
        the optional ``compensation`` array (Kahan summation), extra arguments :data:`BF16_PARAM_ARGS`
        (bfloat16 parameters are host-only: no CUDA loop).
        """
        if target == "cuda":
            if bf16_param:
                raise ValueError("bfloat16 parameters are host-only: there is no CUDA loop for them")
            grid = "range(cuda.grid(1), n, cuda.gridsize(1))"
            return "\n".join(self._loop(f"{self.name}_cuda", grid, None, storage)) + "\n"
        extra = BF16_PARAM_ARGS if bf16_param else ()
        optional = (*self.optional, "compensation") if bf16_param else self.optional
        ema = self._takes_ema(target, storage, bf16_param)
        call_args = ", ".join(
            [
                *self.arrays,
                *extra,
                *self.scalars,
                *(["grad_scale"] if self.scales_grad else []),
                *(["ema", "ema_weight"] if ema else []),
            ]
        )
        lines: list[str] = []
        for public, tag, loop in ((f"{self.name}_serial", "s", "range(n)"), (self.name, "p", "prange(n)")):
            if not optional:
                lines += [*self._loop(public, loop, (), storage, bf16_param, ema), ""]
                continue

            def variant(fname: str, present: tuple[str, ...], loop: str = loop) -> list[str]:
                return self._loop(fname, loop, present, storage, bf16_param, ema)

            lines += presence_variants(
                public, self._signature(extra, ema), call_args, optional, f"{self.name}_{tag}", variant
            )
            lines.append("")
        lines += [
            f"def {self.name}_auto({self._signature(extra, ema)}):",
            f"    if {self.arrays[0]}.size < {PARALLEL_THRESHOLD}:",
            f"        {self.name}_serial({call_args})",
            "    else:",
            f"        {self.name}({call_args})",
            "",
        ]
        return "\n".join(lines)

    def _define(self, target: str, extra: dict[str, Any]) -> dict[str, Any]:
        """Execute the generated source for ``target`` from a file, so Numba can cache it; return its namespace."""
        from ._pieces import lerp, lerp_constants  # (here: _pieces imports this module)

        names = {"constants": self.constants, "body": self.body, "lerp": lerp, "lerp_constants": lerp_constants}
        return execute_generated(__name__, self.name, target, self.source(target), self._module, {**names, **extra})

    def _compile_cpu(self) -> tuple[Any, Any, Any]:
        """``(parallel, serial, size-aware)`` kernels: every loop of the generated CPU source, compiled lazily."""
        namespace = self._define("cpu", {"prange": prange})
        variants = {f"_p{_bits(b)}" for b in itertools.product((0, 1), repeat=len(self.optional))}

        def parallel(fname: str) -> bool:
            return fname[len(self.name) :] in variants or (fname == self.name and not self.optional)

        compiled = compile_generated(namespace, self.name, parallel)
        return compiled[self.name], compiled[f"{self.name}_serial"], compiled[f"{self.name}_auto"]

    def cuda(self) -> Any:
        """The CUDA kernel (a launcher with the CPU kernel's signature), generated and compiled on first use."""
        if self._cuda is None:
            from numba import cuda

            from .cuda._launch import Launcher, jit

            fn = self._define("cuda", {"cuda": cuda})[f"{self.name}_cuda"]
            self._cuda = Launcher(jit(fn), fn, self.parallel, lambda args: args[0].size)
        return self._cuda

    def __repr__(self) -> str:
        return f"<update rule {self._module.__name__}.{self.name}{self.arrays}>"


def elementwise(
    constants: Callable, updates: tuple[str, ...], optional: tuple[str, ...] = ()
) -> Callable[[Callable], Any]:
    """Decorate a rule body: return its parallel CPU kernel (with ``.serial`` and ``.rule``).

    See the module docstring for the form of ``constants`` and the body.
    """

    def deco(body: Callable) -> Any:
        return Elementwise(body, constants, updates, optional).parallel

    return deco


def _bits(bits: tuple) -> str:
    return "".join("1" if b else "0" for b in bits)


def presence_variants(
    public: str,
    signature: str,
    call_args: str,
    optional: tuple[str, ...],
    prefix: str,
    variant: Callable[[str, tuple[str, ...]], list[str]],
) -> list[str]:
    """Source lines: one loop per combination of the ``optional`` arrays present (``variant(name, present)``,
    named ``<prefix><bits>``), then ``def <public>(<signature>)``, which calls (with ``call_args``) the one
    whose arrays are there. Each loop reads and writes its arrays unconditionally: a load or store under a
    condition keeps LLVM from vectorizing it."""
    combos = list(itertools.product((False, True), repeat=len(optional)))
    lines: list[str] = []
    for bits in combos:
        present = tuple(a for a, on in zip(optional, bits) if on)
        lines += [*variant(f"{prefix}{_bits(bits)}", present), ""]
    lines.append(f"def {public}({signature}):")
    lines += [f"    use_{a} = {a}.size != 0" for a in optional]
    for k, bits in enumerate(combos):
        cond = " and ".join(f"{'' if on else 'not '}use_{a}" for a, on in zip(optional, bits))
        head = "else:" if k == len(combos) - 1 else f"{'if' if k == 0 else 'elif'} {cond}:"
        lines += [f"    {head}", f"        {prefix}{_bits(bits)}({call_args})"]
    return lines


def execute_generated(
    generator: str, name: str, target: str, src: str, module: Any, namespace: dict[str, Any]
) -> dict[str, Any]:
    """Execute ``src``, the ``target`` loops that module ``generator`` wrote for ``module.name``, from a file
    (:func:`_source_file`: Numba's cache needs one) in ``namespace``; return the namespace."""
    src = f"# Generated by {generator} from {module.__name__}.{name}: do not edit.\n" + src
    path = _source_file(f"{name}_{target}", src, module)
    namespace = {"__name__": module.__name__, **namespace}
    exec(compile(src, path, "exec"), namespace)  # noqa: S102  (our own generated source)
    return namespace


def compile_generated(namespace: dict[str, Any], prefix: str, parallel: Callable[[str], bool]) -> dict[str, Any]:
    """Every function of ``namespace`` named ``<prefix>...``, made a numopt kernel (compiled on first call;
    ``parallel(name)``: with ``prange`` loops) and put back in ``namespace``, so the generated functions
    that call each other call the kernels. Returns them by name."""
    compiled: dict[str, Any] = {}
    for fname in [k for k, v in namespace.items() if k.startswith(prefix) and inspect.isfunction(v)]:
        fn = namespace[fname]
        fn.__qualname__ = fname
        compiled[fname] = namespace[fname] = kernel(fn, parallel=parallel(fname), twin=False)
    return compiled


# -- where generated sources live --------------------------------------------------------------------
_DIR: str | None = None


def _writable(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".probe", delete=True)
        probe.close()
    except OSError:
        return False
    return True


def _generated_dir() -> str:
    """A writable folder for generated sources: beside this module if possible, else a user cache folder."""
    global _DIR
    if _DIR is None:
        here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_generated")
        cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        user = os.path.join(cache_home, "numopt", "generated")
        fallback = os.path.join(
            tempfile.gettempdir(), f"numopt-generated-{os.getuid() if hasattr(os, 'getuid') else 0}"
        )
        _DIR = next((d for d in (here, user, fallback) if _writable(d)), "")
    return _DIR


_HASHED: dict[str, str] = {}


def _file_digest(path: str) -> str:
    digest = _HASHED.get(path)
    if digest is None:
        with open(path, "rb") as f:
            digest = _HASHED[path] = hashlib.sha256(f.read()).hexdigest()
    return digest


def _source_file(stem: str, src: str, module: Any) -> str:
    """The path of a file holding ``src``, written once (atomically) if it does not exist yet.

    The name carries a hash of ``src``, of the rule's module and of the modules every body
    shares (this one and ``_pieces``): Numba keys its on-disk cache by the file's path and
    time stamp, so any change to what is inlined into the loop gives a new file.
    """
    h = hashlib.sha256(src.encode())
    for path in (module.__file__, __file__, os.path.join(os.path.dirname(__file__), "_pieces.py")):
        h.update(_file_digest(path).encode())
    name = f"{stem}_{h.hexdigest()[:16]}.py"
    folder = _generated_dir()
    if not folder or not CACHE:
        return f"<numopt generated {name}>"
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".py")
        with os.fdopen(fd, "w") as f:
            f.write(src)
        os.replace(tmp, path)
    return path
