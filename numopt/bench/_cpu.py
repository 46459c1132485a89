"""numopt's side on the CPU, and one table row: numopt, roofline and torch timed in alternating rounds."""

from __future__ import annotations

import functools
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ._report import Row, add_ratio
from ._timing import sample_times, time_call
from ._torch import BITSANDBYTES, WORKER_MODES, TorchWorker
from ._workloads import _READS, Workload, algorithms, one_pass_roofline, roofline_kernel, stream_bytes


def numopt_optimizer(
    algo: str,
    work: Workload,
    kwargs: dict[str, Any] | None = None,
    *,
    to_device: Callable[[np.ndarray], Any] | None = None,
    param_dtype: str | None = None,
) -> Any:
    """A numopt optimizer of ``algo`` over ``work``'s shapes, with gradients, stepped once (compiled, state made).

    ``kwargs``: the constructor's options (default: the benchmark's, from :func:`algorithms`);
    ``to_device``: where parameters and gradients go (``numba.cuda.to_device``; default: host arrays);
    ``param_dtype``: ``"bfloat16"`` for bfloat16 parameters and gradients (``ml_dtypes.bfloat16``, the
    same values rounded to nearest), else float32.
    """
    import numopt

    cls = getattr(numopt, algo, None)
    if cls is None:
        return None
    rng = np.random.default_rng(0)
    dtype = np.dtype(np.float32)
    if param_dtype is not None:
        from .._bf16 import bfloat16

        if param_dtype != "bfloat16":
            raise ValueError(f"param_dtype must be None or 'bfloat16', got {param_dtype!r}")
        dtype = bfloat16()

    def normal(shape: tuple[int, ...]) -> Any:
        a = (rng.standard_normal(shape, dtype=np.float32) * np.float32(0.01)).astype(dtype, copy=False)
        return a if to_device is None else to_device(a)

    params = [numopt.Parameter(normal(s)) for s in work.shapes]
    opt = cls(params, **(algorithms()[algo][0] if kwargs is None else kwargs))
    if callable(getattr(opt, "train", None)):  # the Schedule-Free optimizers step in train mode only
        opt.train()
    for p in params:
        p.grad = normal(p.shape)
    opt.step()  # compile, pack grads, create state
    return opt


#: the suffix of a row that clips the gradient norm before each step (``"AdamW+clip"``)
CLIP_SUFFIX = "+clip"
#: the ``max_norm`` of those rows (transformer training's usual value)
CLIP_NORM = 1.0


#: the suffixes of rows whose optimizer keeps compact state (``"AdamW+int8"``), with their ``state_dtype``
STATE_SUFFIXES = {"+int8": "int8", "+bf16": "bfloat16"}
#: the suffixes of rows whose parameters and gradients are not float32 (``"AdamW+bf16p"``), with their dtype;
#: before a state suffix when both are there (``"AdamW+bf16p+int8"``)
PARAM_SUFFIXES = {"+bf16p": "bfloat16"}
#: bytes one state element moves per step (read and written), by ``state_dtype`` (None: float32, which
#: bfloat16 parameters keep too): int8 adds its per-block float32 scale (one per 256 elements)
_STATE_BYTES = {None: 8, "int8": 2 * (1 + 4 / 256), "bfloat16": 4}
#: bytes of one parameter or gradient element, by the parameters' dtype (None: float32)
_PARAM_BYTES = {None: 4, "bfloat16": 2}


class RowSpec(NamedTuple):
    """What a row name asks for: ``"AdamW+bf16p+int8"`` -> ``RowSpec("AdamW", False, "int8", "bfloat16")``."""

    optimizer: str
    clipped: bool = False  # ``+clip``: clip_grad_norm_ before each step
    state_dtype: str | None = None  # ``+int8`` / ``+bf16``: compact state
    param_dtype: str | None = None  # ``+bf16p``: bfloat16 parameters and gradients (None: float32)


def parse_row(algo: str) -> RowSpec:
    """What the row name ``algo`` asks for: ``<optimizer>[+bf16p][+int8|+bf16]``, or ``<optimizer>+clip``.

    ``"AdamW+clip"`` -> ``("AdamW", True, None, None)``, ``"AdamW+int8"`` -> ``("AdamW", False, "int8", None)``,
    ``"AdamW+bf16p+bf16"`` -> ``("AdamW", False, "bfloat16", "bfloat16")``, ``"Adam"`` -> ``("Adam", False, None,
    None)``. ``+clip`` does not compose with the others (``ValueError``): a clipped row's reference column is
    numopt's unfused clipping, a compact or bfloat16 row's is numopt's float32 step, and a row has one.
    """
    others = (*PARAM_SUFFIXES, *STATE_SUFFIXES)
    if CLIP_SUFFIX in algo:
        name = algo.split(CLIP_SUFFIX)[0]
        if not algo.endswith(CLIP_SUFFIX) or any(s in algo for s in others):
            raise ValueError(
                f"row {algo!r}: {CLIP_SUFFIX} does not compose with {', '.join(others)} (each asks for its own "
                f"reference column); time {algo.split('+')[0] + CLIP_SUFFIX!r} as a row of its own"
            )
        return RowSpec(name, clipped=True)
    name, state_dtype, param_dtype = algo, None, None
    suffix = next((s for s in STATE_SUFFIXES if name.endswith(s)), None)
    if suffix is not None:
        name, state_dtype = name[: -len(suffix)], STATE_SUFFIXES[suffix]
    suffix = next((s for s in PARAM_SUFFIXES if name.endswith(s)), None)
    if suffix is not None:
        name, param_dtype = name[: -len(suffix)], PARAM_SUFFIXES[suffix]
    if any(s in name for s in others):
        raise ValueError(
            f"row {algo!r}: the suffixes go as <optimizer>[{'|'.join(PARAM_SUFFIXES)}][{'|'.join(STATE_SUFFIXES)}], "
            "each at most once"
        )
    return RowSpec(name, False, state_dtype, param_dtype)


def compact_streams(rw: int, ro: int, state_dtype: str | None, param_dtype: str | None = None) -> tuple[float, int]:
    """``(bytes per element, read-only float32 streams of the roofline kernel)`` of a step whose ``rw - 1``
    state arrays are stored as ``state_dtype`` (None: float32) over parameters of ``param_dtype`` (None:
    float32; ``"bfloat16"``: 2 bytes): the parameter is read and written (8 bytes, or 4), the ``ro``
    read-only arrays (the gradient) read (4 each, or 2), each state element moves :data:`_STATE_BYTES`.
    The roofline kernel (one float32 array updated, read-only float32 arrays) moves the nearest whole
    number of 4-byte streams; :func:`bench_row` scales its time to the step's bytes."""
    p = _PARAM_BYTES[param_dtype]
    per_element = 2 * p + p * ro + (rw - 1) * _STATE_BYTES[state_dtype]
    return per_element, min(max(1, round((per_element - 8) / 4)), max(_READS))


def _clipped_step(opt: Any) -> None:
    """numopt's clipped step: the norm pass, then the step applying the coefficient in its loop."""
    opt.clip_grad_norm_(CLIP_NORM)
    opt.step()


class _SeparatelyClippedStep:
    """The unfused way: ``numopt.utils.clip_grad_norm_`` (norm pass + scaling pass), then the step.

    The gradients are not new at each call as in training: once scaled, their norm sits at
    ``max_norm`` and the coefficient would round to exactly 1, which skips the scaling pass.
    So ``max_norm`` shrinks by one part in a million per call: every call scales, as with fresh
    gradients (torch's ``clip_grad_norm_`` multiplies even by 1, so it needs no such care).
    """

    def __init__(self, opt: Any) -> None:
        self.opt, self.params, self.max_norm = opt, list(opt.parameters()), CLIP_NORM

    def __call__(self) -> None:
        from numopt.utils import clip_grad_norm_

        self.max_norm *= 1 - 1e-6
        clip_grad_norm_(self.params, self.max_norm)
        self.opt.step()


def bench_numopt(algo: str, work: Workload, **timing: Any) -> dict | None:
    """Time numopt's ``step()`` of ``algo`` on ``work`` alone (median/min seconds)."""
    opt = numopt_optimizer(algo, work)
    return None if opt is None else time_call(opt.step, **timing)


def cold_start(with_cache: bool) -> float:
    """Seconds for ``import numopt`` plus a first Adam (or SGD) step in a fresh process."""
    # A command line, not a module: running a module of numopt would import numopt before the clock starts.
    code = (
        "import time; t=time.perf_counter(); import numpy as np, numopt; "
        "cls = getattr(numopt, 'Adam', numopt.SGD); p = numopt.Parameter((1000,)); "
        "o = cls([p], lr=1e-3); p.grad = np.ones(1000, np.float32); o.step(); "
        "print(time.perf_counter()-t)"
    )
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        if not with_cache:
            env["NUMBA_CACHE_DIR"] = tmp
            env["NUMOPT_CACHE"] = "0"
        else:
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)  # warm it
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def bench_row(
    algo: str, work: Workload, worker: TorchWorker | None, rounds: int, timing: dict, roofs: dict | None = None
) -> Row | None:
    """One table row: numopt's step, the roofline kernel and torch's modes, timed in alternating rounds.

    Each round times numopt, then numopt's reference step of a ``+clip``, compact-state or
    ``+bf16p`` row (the unfused clipping; the float32 step), then the no-math kernel of the same
    access pattern (for compact-state and ``+bf16p`` rows a one-pass kernel, scaled to the step's
    bytes), then each torch mode in the worker (on a bfloat16 model for a ``+bf16p`` row; and, for an
    ``+int8`` row, bitsandbytes' 8-bit optimizer when it is installed). Times are medians over all rounds; the
    ratios (% of roofline, speed-ups) are medians of the per-round ratios, each
    taken between neighbours in time: this machine's bandwidth can jump by 1.5x
    from one second to the next, and a jump between rounds then moves both
    sides of a ratio instead of one. (So a ratio can differ a little from the
    ratio of the two printed medians; the row records each ratio's interquartile
    range over the rounds, and :func:`add_ratio` marks it as noise when the rounds
    disagree, or the medians' ratio falls outside that range.)
    """
    base, clipped, state_dtype, param_dtype = parse_row(algo)
    kwargs, rw, ro = algorithms()[base]
    torch_kwargs = kwargs
    if state_dtype is not None:
        kwargs = {**kwargs, "state_dtype": state_dtype}
    opt = numopt_optimizer(base, work, kwargs, param_dtype=param_dtype)
    if opt is None:
        return None
    step = opt.step
    separate = None
    nbytes = None  # bytes one step moves (below: float32 streams, unless the state is compact)
    roof_scale = 1.0  # the roofline kernel's time times this: its time for the step's bytes
    one_pass = state_dtype is not None or param_dtype is not None
    if one_pass:
        # compact state or bfloat16 parameters: the "reference" is numopt's own float32 step (float32
        # parameters and state); torch steps float32, or a bfloat16 model for bfloat16 parameters
        per_element, ro_roof = compact_streams(rw, ro, state_dtype, param_dtype)
        nbytes = round(work.size * per_element)
        roof_scale = nbytes / stream_bytes(work.size, 1, ro_roof)
        separate = numopt_optimizer(base, work, torch_kwargs).step
    if clipped:
        # the clipped step: the norm pass, then the step applying the coefficient (+1 read of the
        # gradients); its "reference" is numopt's own unfused way: utils.clip_grad_norm_ writing the
        # scaled gradients, then the step
        ro += 1
        step = functools.partial(_clipped_step, opt)
        other = numopt_optimizer(base, work, kwargs)
        separate = _SeparatelyClippedStep(other)
    step()
    roof = None
    if work.size >= 1_000_000:
        roofs = {} if roofs is None else roofs  # roofline arrays reused by the rows of a workload
        key = ("one pass", ro_roof) if one_pass else (rw, ro)
        if key not in roofs:
            roofs[key] = one_pass_roofline(work.size, ro_roof) if one_pass else roofline_kernel(work.size, rw, ro)
        roof = roofs[key]
    if worker is not None:
        if clipped:  # torch: clip_grad_norm_(foreach=True), then the step, in every mode
            worker.setup(base, work.shapes, kwargs, clip=CLIP_NORM)
        else:
            # a compact-state or bfloat16 row's reference column is numopt's float32 step: no third-party
            # reference; an int8 row also times bitsandbytes' 8-bit counterpart, when it has one (on the
            # bfloat16 model for +bf16p+int8)
            reference = None if one_pass else type(opt).reference
            eight_bit = BITSANDBYTES.get(base) if state_dtype == "int8" else None
            worker.setup(base, work.shapes, torch_kwargs, reference, eight_bit=eight_bit, dtype=param_dtype)
    samples: dict[str, list[list[float]]] = {}  # contender -> one list of times per round
    for _ in range(rounds):
        samples.setdefault("numopt", []).append(sample_times(step, **timing))
        if separate is not None:
            samples.setdefault("reference", []).append(sample_times(separate, **timing))
        if roof is not None:
            samples.setdefault("roofline", []).append(sample_times(roof[0], **timing))
        if worker is not None:
            for mode, times in worker.time(**timing).items():
                samples.setdefault(mode, []).append(times)
    del opt, roof, step, separate

    def pooled(name: str) -> float:
        return statistics.median([t for times in samples[name] for t in times])

    def ratio(name: str) -> None:
        """Set ``name``'s ratio from the rounds' (``name``'s median time) / (numopt's median time)."""
        pairs = zip(samples[name], samples["numopt"])
        per_round = [statistics.median(a) / statistics.median(b) for a, b in pairs]
        add_ratio(row, name, per_round, pooled(name) / seconds)

    seconds = pooled("numopt")
    if nbytes is None:
        nbytes = stream_bytes(work.size, rw, ro)
    if roof_scale != 1.0:
        samples["roofline"] = [[t * roof_scale for t in times] for times in samples.get("roofline", [])]
    row = Row(algo, work.name, work.size, seconds * 1e3, gbps=nbytes / seconds / 1e9)
    row.bytes_per_param = nbytes / work.size
    if samples.get("roofline"):
        row.roofline_gbps = nbytes / pooled("roofline") / 1e9
        ratio("roofline")
    # the torch columns, and the reference column (numopt's own unfused or float32-state step for +clip and
    # compact-state rows: timed without torch too)
    for mode in WORKER_MODES if worker is not None else ("reference",):
        row.torch_ms[mode] = pooled(mode) * 1e3 if mode in samples else None
        if mode in samples:
            ratio(mode)
        else:
            row.speedup[mode] = None
    return row
