"""``python -m numopt info``: what numopt runs on."""

from __future__ import annotations

import importlib.metadata
import os
import platform


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _simd_level() -> str:
    try:
        import llvmlite.binding as ll

        features = ll.get_host_cpu_features()
        name = ll.get_host_cpu_name()
    except Exception:  # pragma: no cover - depends on llvmlite internals
        return "unknown"
    for level in ("avx512f", "avx2", "avx", "sse4.2", "neon", "asimd"):
        if features.get(level, False):
            return f"{level} (LLVM cpu {name})"
    return f"baseline (LLVM cpu {name})"


def _cuda_status() -> str:
    try:
        from numba import cuda

        if cuda.is_available():
            name = cuda.get_current_device().name
            return f"yes ({name.decode() if isinstance(name, bytes) else name})"
        return "no (no CUDA driver or device found)"
    except Exception as e:  # pragma: no cover - depends on the machine
        return f"no ({type(e).__name__}: {e})"


def _installed_version(package: str) -> str:
    """The installed version of ``package`` (read from its metadata: nothing is imported)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def info() -> dict[str, str]:
    """Versions, threading and hardware facts, as strings."""
    import numba
    import numpy as np

    from . import __version__

    try:
        layer = numba.threading_layer()
    except ValueError:
        # The layer is chosen at the first parallel call; make one.
        from .kernels.sgd import sgd_step

        x = np.zeros(1, np.float32)
        sgd_step(x, x.copy(), x.copy(), 0.0, 0.0, 0.0, 0.0, False, False, True)  # the signature SGD compiles
        layer = numba.threading_layer()
    return {
        "numopt": __version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "torch": _installed_version("torch"),
        "threads": str(numba.get_num_threads()),
        "threading layer": layer,
        "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS", "(unset)"),
        "cpu": _cpu_model(),
        "simd": _simd_level(),
        "cores": str(os.cpu_count()),
        "cuda": _cuda_status(),
    }


def print_info() -> None:
    items = info()
    width = max(map(len, items))
    for k, v in items.items():
        print(f"{k:<{width}}  {v}")
