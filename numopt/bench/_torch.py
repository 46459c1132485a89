"""torch.optim next to numopt: its parameters and modes, and the worker process that times it.

torch is imported inside the functions here, never at import: the benchmark's own
process keeps one thread pool (numba's); torch runs in :mod:`numopt.bench._torch_worker`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

#: torch.optim's implementations: its default, then ``foreach=True``, then ``fused=True``.
TORCH_MODES = ("default", "foreach", "fused")
#: the column of bitsandbytes' CPU 8-bit optimizers, timed next to the ``+int8`` rows
EIGHT_BIT = "bitsandbytes"
#: the columns timed in the worker: torch.optim's modes, then ``"reference"``, the third-party
#: implementation an optimizer torch.optim lacks follows (``Optimizer.reference``), then
#: bitsandbytes' 8-bit counterpart of an ``+int8`` row's optimizer (:data:`BITSANDBYTES`)
WORKER_MODES = (*TORCH_MODES, "reference", EIGHT_BIT)

#: numopt's optimizers -> their counterparts among bitsandbytes' 8-bit optimizers (``bitsandbytes.optim``:
#: block-wise 8-bit state, 256-element blocks, state kept in 32 bits under ``min_8bit_size=4096`` elements,
#: as numopt's ``state_dtype="int8"``), timed on CPU float32 torch parameters when bitsandbytes is importable.
#: bitsandbytes is a measurement aid, not a dependency of numopt.
BITSANDBYTES = {
    "Adam": "Adam8bit",
    "AdamW": "AdamW8bit",
    "Lion": "Lion8bit",
    "SGD": "SGD8bit",
    "RMSprop": "RMSprop8bit",
    "Adagrad": "Adagrad8bit",
    "AdEMAMix": "AdEMAMix8bit",
}

#: What torch raises for a mode it lacks for an optimizer or a device.
TORCH_ERRORS = (RuntimeError, TypeError, ValueError)

#: The command line of the worker process (its arguments follow).
WORKER = [sys.executable, "-m", "numopt.bench._torch_worker"]


def torch_params(
    shapes: list[tuple[int, ...]],
    *,
    seed: int = 0,
    device: str = "cpu",
    scale: float = 0.01,
    grad_scale: float = 0.01,
    dtype: str | None = None,
) -> list[Any]:
    """``torch.nn.Parameter`` tensors of ``shapes`` (normal, times ``scale``), each with a gradient.

    ``dtype``: a torch dtype's name (``"bfloat16"``: a bfloat16 model, the same values rounded, with
    bfloat16 gradients); default float32."""
    import torch

    to = getattr(torch, dtype or "float32")
    gen = torch.Generator(device=device).manual_seed(seed)
    params = [torch.nn.Parameter((torch.randn(*s, generator=gen, device=device) * scale).to(to)) for s in shapes]
    for p in params:
        p.grad = (torch.randn(*p.shape, generator=gen, device=device) * grad_scale).to(to)
    return params


def torch_optimizer(cls: type, params: list[Any], kwargs: dict[str, Any], mode: str) -> Any:
    """``cls(params, **kwargs)`` in torch's ``mode``: ``"default"``, or ``"foreach"`` / ``"fused"`` set to True."""
    kw = dict(kwargs)
    if mode != "default":
        kw[mode] = True
    return cls(params, **kw)


def error_text(e: BaseException) -> str:
    """One short line for a mode torch refused."""
    return f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"


#: Seconds to let one process's thread pool go idle before the other process runs (libgomp spins
#: for a while after each parallel region before it sleeps).
_HANDOVER_S = 0.02


class TorchWorker:
    """torch.optim timed in its own process, driven turn by turn from the benchmark's process.

    The worker stays alive for the whole run: for each row it builds torch's
    optimizers once, then times them when asked, so that rounds of numopt and
    torch alternate and a slow spell of the machine hits both sides alike.
    Only one of the two processes works at a time.
    """

    def __init__(self, threads: int) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        self._err = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen(
            [*WORKER, str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            env=env,
        )
        self.version = self._recv()["torch"]
        self.modes: list[str] = []
        self.errors: dict[str, str] = {}
        #: bitsandbytes, once a row asked for it: ``{"version": ...}`` when it stepped on the CPU,
        #: ``{"error": ...}`` when it is not importable or refused (the first such error)
        self.eight_bit: dict[str, str] = {}

    @classmethod
    def start(cls, threads: int) -> TorchWorker | None:
        """A running worker, or ``None`` if torch is not importable."""
        try:
            return cls(threads)
        except RuntimeError as e:
            if "No module named 'torch'" in str(e):
                return None
            raise

    def _recv(self) -> Any:
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait()
            self._err.seek(0)
            raise RuntimeError(f"torch benchmark worker failed:\n{self._err.read()[-2000:]}")
        return json.loads(line)

    def ask(self, **job: Any) -> Any:
        time.sleep(_HANDOVER_S)
        self._proc.stdin.write(json.dumps(job) + "\n")
        self._proc.stdin.flush()
        out = self._recv()
        time.sleep(_HANDOVER_S)
        return out

    def setup(
        self,
        algo: str,
        shapes: list[tuple[int, ...]],
        kwargs: dict[str, Any],
        reference: str | None = None,
        clip: float | None = None,
        eight_bit: str | None = None,
        dtype: str | None = None,
    ) -> None:
        """Build torch's ``algo`` in every mode over one set of parameters of ``shapes``, or, given
        ``reference`` (an import path), that implementation instead (mode ``"reference"``). ``clip``:
        each step is ``torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)`` then ``step()``.
        ``eight_bit``: also ``bitsandbytes.optim.<eight_bit>`` over the same parameters (mode
        :data:`EIGHT_BIT`), if bitsandbytes is importable and steps on the CPU. ``dtype``: the
        parameters' and gradients' torch dtype by name (``"bfloat16"``; default float32)."""
        out = self.ask(
            cmd="setup",
            algo=algo,
            shapes=shapes,
            kwargs=kwargs,
            reference=reference,
            clip=clip,
            eight_bit=eight_bit,
            dtype=dtype,
        )
        self.modes, self.errors = out["modes"], out["errors"]
        if eight_bit is not None and "error" not in self.eight_bit:
            if EIGHT_BIT in self.errors:
                self.eight_bit = {"error": self.errors[EIGHT_BIT]}
            elif EIGHT_BIT in self.modes:
                self.eight_bit = {"version": out[EIGHT_BIT]}

    def time(self, **timing: Any) -> dict[str, list[float]]:
        """Step times of every mode that :meth:`setup` built, one mode after the other."""
        return self.ask(cmd="time", modes=self.modes, timing=timing)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
            self._proc.stdin.close()
            self._proc.wait(timeout=60)
        self._err.close()
