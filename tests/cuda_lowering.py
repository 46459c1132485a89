"""Every CUDA loop numopt generates, compiled for a real GPU as far as no GPU is needed.

Run by ``tests/test_cuda.py`` in a subprocess, without the simulator: the simulator runs kernels as
Python, so it cannot tell whether numba-cuda can compile what they call (it cannot compile ``np.sqrt``
on a scalar, for one). Each loop is typed with the argument types its CPU twin was compiled for in
host steps here, then typed and lowered to LLVM IR for compute capability 9.0 with
``numba.cuda.compiler.compile_cuda``; only NVVM's translation to PTX, which needs the CUDA toolkit,
is left out. numba-cuda asks the current device for its compute capability when it compiles a
device function; with no GPU, a stand-in answers.

Prints one line per failure and ``lowered N loops``; exits 1 if any failed or was left untyped.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba.cuda.dispatcher as cuda_dispatcher  # noqa: E402
from numba import float32, float64, int64, void  # noqa: E402
from numba.cuda.compiler import compile_cuda  # noqa: E402

import numopt  # noqa: E402
from numopt import swa_utils, utils  # noqa: E402
from numopt.kernels import _lowbit, averaging, clip, lamb, lars, prodigy, segments  # noqa: E402
from numopt.kernels.cuda import clip as cuda_clip  # noqa: E402
from numopt.optimizer import registered  # noqa: E402
from tests.optim_db import OPTIM_DB, prepared  # noqa: E402

CC = (9, 0)


class _Device:
    compute_capability = CC


cuda_dispatcher.get_current_device = lambda: _Device()  # no GPU: the compute capability to compile for


def host_steps() -> None:
    """Two host steps of every optimizer row (float32 and float64; float, bfloat16 and int8 state where
    taken), an in-step EMA and both clippings: each CPU loop is then compiled for the types it runs with."""
    rng = np.random.default_rng(0)
    names = {c.__name__ for c in registered()}
    for case in OPTIM_DB:
        if case.name not in names or case.shapes is not None or case.name == "LBFGS":
            continue
        for dtype in (np.float32, np.float64):
            for state_dtype in (None, "bfloat16", "int8"):
                params = [numopt.Parameter(rng.standard_normal(s).astype(dtype)) for s in ((600,), (5, 3))]
                kwargs = dict(case.kwargs)
                if state_dtype is not None:
                    if "state_dtype" not in inspect.signature(getattr(numopt, case.name)).parameters:
                        continue
                    kwargs.update(state_dtype=state_dtype, min_8bit_size=100)
                opt = prepared(case, getattr(numopt, case.name)(params, **kwargs))
                for _ in range(2):
                    for p in params:
                        p.grad = rng.standard_normal(p.shape).astype(dtype)
                    opt.step()
    params = [numopt.Parameter(rng.standard_normal(300).astype(np.float32))]
    opt = numopt.SGD(params, lr=0.1)
    ema = swa_utils.AveragedModel(params, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.9))
    swa = swa_utils.AveragedModel(params)
    for _ in range(2):
        params[0].grad = rng.standard_normal(300).astype(np.float32)
        utils.clip_grad_norm_(params, 0.01)
        utils.clip_grad_value_(params, 0.001)
        opt.step()
        ema.update_parameters(params)
        swa.update_parameters(params)


def loops() -> list[tuple[str, object, list]]:
    """``(name, CUDA loop's Python function, its CPU twins)`` for every generated CUDA loop."""
    rules = {id(c.rule.rule): c.rule.rule for c in registered(elementwise=True)}
    rules.update({id(k.rule): k.rule for k in (averaging.lerp_, averaging.running_mean_, clip.scale_, clip.clamp_)})
    out = []
    for rule in rules.values():
        out.append((rule.name, rule.cuda().kernel.py_func, [rule.parallel, rule.parallel.serial]))
    for cls in registered(elementwise=True):
        if "state_dtype" in inspect.signature(cls).parameters:
            rule = cls.rule.rule
            out.append(
                (f"{rule.name} bfloat16 state", _lowbit.storage_cuda(rule).kernel.py_func, _lowbit.storage_loops(rule))
            )
            for dtype in (np.float32, np.float64):
                kernel = _lowbit.blocked_cuda(rule, dtype).kernel.py_func
                out.append((f"{rule.name} int8 state {dtype.__name__}", kernel, [_lowbit.blocked_loop(rule)]))
    for block_pass in (lamb.MOMENTS, lamb.APPLY, lars.NORMS, lars.STEP, prodigy.MOMENTS, segments.SQUARES):
        out.append((block_pass.name, block_pass.cuda().py_func, [block_pass.parallel, block_pass.serial]))
    return out


def argument_types(fn: object, cpu_twins: list) -> list[tuple]:
    """The CUDA loop's argument types from each compiled signature of its CPU twins, matched by name."""
    names = list(inspect.signature(fn).parameters)
    found = []
    for twin in cpu_twins:
        twin_names = list(inspect.signature(twin.py_func).parameters)
        for sig in twin.signatures:
            by_name = dict(zip(twin_names, getattr(sig, "args", sig)))
            if all(n in by_name for n in names):
                types = tuple(by_name[n] for n in names)
                if types not in found:
                    found.append(types)
    return found


def main() -> int:
    host_steps()
    failed = untyped = done = 0
    for name, fn, twins in loops():
        signatures = argument_types(fn, twins)
        if "int8 state" in name:  # an 8-bit CUDA loop is generated per parameter dtype
            dtype = float64 if name.endswith("float64") else float32
            signatures = [s for s in signatures if s[0].dtype == dtype]
        if not signatures:
            print(f"UNTYPED {name}: no CPU signature to type it with")
            untyped += 1
        for types in signatures:
            try:
                compile_cuda(fn, void, types, cc=CC)
                done += 1
            except Exception as e:  # noqa: BLE001  (reported, then the run fails)
                print(f"FAILED {name}{types}: {type(e).__name__}: {str(e).splitlines()[-1][:300]}")
                failed += 1
    for grad in (float32, float64):  # the hand-written reduction
        compile_cuda(cuda_clip._norm_partials.py_func, void, (grad[::1], int64, float64, float64[::1]), cc=CC)
        done += 1
    print(f"lowered {done} loops")
    return 1 if failed or untyped else 0


if __name__ == "__main__":
    sys.exit(main())
