"""The torch side of ``python -m numopt bench``, in a process of its own.

Two OpenMP pools in one process slow torch down, which would flatter numopt, so
torch.optim is timed here (and, next to the ``+int8`` rows, bitsandbytes' 8-bit
optimizers on CPU torch parameters, when bitsandbytes is installed):

* ``python -m numopt.bench._torch_worker THREADS``: driven by
  :class:`numopt.bench._torch.TorchWorker`, one JSON job a line on stdin and one
  JSON reply a line on stdout (``setup``, ``time``, ``mixed``; anything else ends it);
* ``python -m numopt.bench._torch_worker --cuda``: one JSON job on stdin (tasks and
  timing), torch.optim timed on CUDA tensors with CUDA events, one JSON reply.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
from collections.abc import Iterable
from typing import Any

import torch

from ._timing import sample_times, time_events
from ._torch import EIGHT_BIT, TORCH_ERRORS, TORCH_MODES, error_text, torch_optimizer, torch_params


def reply(obj: Any) -> None:
    print(json.dumps(obj), flush=True)


def build(
    algo: str,
    shapes: list[list[int]],
    kwargs: dict[str, Any],
    reference: str | None = None,
    clip: float | None = None,
    eight_bit: str | None = None,
    dtype: str | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """One step function per mode over the same parameters (each run twice), and the modes torch refused.

    ``reference``: for an optimizer torch.optim lacks, the import path of the implementation numopt
    follows (``"pytorch_optimizer.Lion"``), built as the one mode ``"reference"``. ``clip``: each
    step clips the gradient norm first (``torch.nn.utils.clip_grad_norm_``, ``foreach=True``).
    ``eight_bit``: the name of a bitsandbytes 8-bit optimizer (``"AdamW8bit"``), built as one more
    mode, ``"bitsandbytes"``, when bitsandbytes imports and steps on the CPU. ``dtype``: the parameters'
    and gradients' torch dtype by name (``"bfloat16"``: a bfloat16 model, whose state torch keeps in
    bfloat16 too); default float32.
    """
    opts: dict[str, Any] = {}
    errors: dict[str, str] = {}
    builders: dict[str, tuple[Any, str]] = {}
    if reference is not None:
        module, _, attr = reference.rpartition(".")
        try:
            builders["reference"] = (getattr(importlib.import_module(module), attr), "default")
        except (ImportError, AttributeError) as e:
            return opts, {"reference": error_text(e)}
    elif hasattr(torch.optim, algo):
        builders.update({mode: (getattr(torch.optim, algo), mode) for mode in TORCH_MODES})
    if eight_bit is not None:
        try:
            builders[EIGHT_BIT] = (getattr(_bitsandbytes().optim, eight_bit), "default")
        except Exception as e:  # any failure to import a third-party package: no column
            errors[EIGHT_BIT] = error_text(e)
    if not builders:
        return opts, errors
    params = torch_params(shapes, dtype=dtype)
    for name, (cls, mode) in builders.items():
        # bitsandbytes refusing the CPU may raise anything (an old build: AttributeError on its missing library)
        refused = Exception if name == EIGHT_BIT else TORCH_ERRORS
        try:
            opt = torch_optimizer(cls, params, kwargs, mode)
            prepare = getattr(opt, "train", None)  # schedule-free optimizers step in train mode only
            if callable(prepare):
                prepare()
            step = opt.step if clip is None else _clipped(opt, params, clip)
            with torch.no_grad():
                for _ in range(2):
                    step()
            opts[name] = step
        except refused as e:
            errors[name] = error_text(e)
    return opts, errors


def _bitsandbytes() -> Any:
    """``import bitsandbytes``, anything it prints at import going to stderr (stdout carries the replies)."""
    with contextlib.redirect_stdout(sys.stderr):
        import bitsandbytes
    return bitsandbytes


def _clipped(opt: Any, params: list[Any], max_norm: float) -> Any:
    def step() -> None:
        torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
        opt.step()

    return step


def mixed(job: dict[str, Any]) -> dict | None:
    """numopt's step in a process that also runs torch (two thread pools): the "one process" row."""
    from ._cpu import bench_numopt
    from ._workloads import Workload

    x = torch.randn(256, 256)
    for _ in range(3):
        (x @ x).sum()
    return bench_numopt(job["algo"], Workload("mixed", [tuple(s) for s in job["shapes"]]), **job["timing"])


def serve(threads: int, lines: Iterable[str]) -> None:
    """Answer the jobs of :class:`~numopt.bench._torch.TorchWorker`, one a line, until one is not known."""
    torch.set_num_threads(threads)
    reply({"torch": torch.__version__})
    opts: dict[str, Any] = {}
    for line in lines:
        job = json.loads(line)
        if job["cmd"] == "setup":
            opts = {}  # free the last row's optimizers before building this row's
            opts, errors = build(
                job["algo"],
                job["shapes"],
                job["kwargs"],
                job.get("reference"),
                job.get("clip"),
                job.get("eight_bit"),
                job.get("dtype"),
            )
            out = {"modes": sorted(opts), "errors": errors}
            if EIGHT_BIT in opts:
                out[EIGHT_BIT] = sys.modules["bitsandbytes"].__version__
            reply(out)
        elif job["cmd"] == "time":  # each mode in turn: one hand-over between the processes per round
            with torch.no_grad():
                reply({m: sample_times(opts[m], **job["timing"]) for m in job["modes"]})
        elif job["cmd"] == "mixed":
            opts = {}
            reply(mixed(job))
        else:
            break


def time_cuda_task(task: dict[str, Any], timing: dict[str, Any]) -> dict[str, Any]:
    """GPU times of torch's ``task["algo"]`` in every mode, on CUDA parameters of ``task["shapes"]``."""
    res: dict[str, Any] = {"algo": task["algo"], "workload": task["workload"], "modes": {}}
    cls = getattr(torch.optim, task["algo"], None)
    if cls is None:
        return res
    params = torch_params(task["shapes"], device="cuda")
    for mode in TORCH_MODES:
        try:
            opt = torch_optimizer(cls, params, task["kwargs"], mode)
            with torch.no_grad():
                t = time_events(
                    opt.step,
                    lambda: torch.cuda.Event(enable_timing=True),
                    torch.cuda.synchronize,
                    min_repeats=timing["min_repeats"],
                    budget_s=timing["budget_s"],
                )
        except TORCH_ERRORS as e:
            t = {"error": error_text(e)}
        res["modes"][mode] = t
    return res


def run_cuda(job: dict[str, Any]) -> dict[str, Any]:
    """torch's side of ``bench --device cuda``: every task of ``job``, or ``"cuda": False`` without a GPU."""
    out: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "results": []}
    if out["cuda"]:
        out["device"] = torch.cuda.get_device_name()
        for task in job["tasks"]:
            out["results"].append(time_cuda_task(task, job["timing"]))
            torch.cuda.empty_cache()
    return out


def main(argv: list[str]) -> None:
    if argv[:1] == ["--cuda"]:
        print(json.dumps(run_cuda(json.loads(sys.stdin.read()))))
    else:
        serve(int(argv[0]), sys.stdin)


if __name__ == "__main__":
    main(sys.argv[1:])
