"""Muon: momentum orthogonalized by Newton–Schulz (``torch.optim.Muon``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Integral
from typing import Any

import numpy as np

from .._arguments import constructor
from .._jit import CHUNK
from .._validation import check_flags, check_nonnegative, check_number
from ..flat import FlatBuffer, Run
from ..kernels.muon import muon_apply, muon_momentum, ns_epilogue, ns_matmul, ns_scale, sum_squares
from ..optimizer import Optimizer
from ..parameter import Parameter, SparseGrad

__all__ = ["Muon"]

#: Keller Jordan's quintic coefficients and defaults (torch 2.13's ``_muon.py``)
DEFAULT_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
DEFAULT_EPS = 1e-7
DEFAULT_NS_STEPS = 5
_ADJUST_LR_FNS = (None, "original", "match_rms_adamw")
_NS_DTYPES = ("bfloat16", "float32")
#: multiply-adds of a Newton–Schulz product under which it runs on one thread
_PARALLEL_MATMUL_WORK = 1 << 20


def _adjusted_lr(lr: float, adjust_lr_fn: str | None, shape: tuple[int, ...]) -> float:
    """torch's ``_adjust_lr``: scale ``lr`` so rectangular updates have a consistent RMS."""
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return lr * math.sqrt(max(1.0, rows / cols))
    return lr * 0.2 * math.sqrt(max(rows, cols))  # "match_rms_adamw"


def _bf16(v: np.float32) -> np.float32:
    """A float32 scalar rounded to bfloat16 (nearest, ties to even), as a float32."""
    bits = np.array([v], np.float32).view(np.uint32).astype(np.uint64)
    if (bits[0] & 0x7FFFFFFF) > 0x7F800000:
        return np.float32(np.nan)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32)[0]


def _blas_product(
    a: np.ndarray, b: np.ndarray, out: np.ndarray, other: np.ndarray, alpha: Any, beta: Any, round_bf16: bool
) -> None:
    """:func:`ns_matmul`'s contract without the rounding: ``out <- alpha * (a @ b) + beta * other`` by BLAS
    (``ns_dtype='float32'``), the combine by :func:`ns_epilogue` (no temporary)."""
    np.matmul(a, b, out=out)
    ns_epilogue(out.reshape(-1), other.reshape(-1), alpha, beta)


class _NSWork:
    """Reusable float32 buffers for the Newton–Schulz iteration of an ``m x n`` matrix (``m <= n``)."""

    def __init__(self, m: int, n: int) -> None:
        self.x = np.empty((m, n), np.float32)
        self.t = np.empty((m, n), np.float32)
        self.xt = np.empty((n, m), np.float32)
        self.a = np.empty((m, m), np.float32)
        self.b = np.empty((m, m), np.float32)
        self.partials = np.empty(max(1, (m * n + CHUNK - 1) // CHUNK), np.float64)


class Muon(Optimizer):
    r"""Muon: SGD momentum whose update is orthogonalized by a Newton–Schulz iteration.

    For each 2-D parameter :math:`\theta` (shape ``A x B``) with gradient :math:`g_t`::

        B_t   = lerp(B_{t-1}, g_t, 1 - momentum)          = momentum * B_{t-1} + (1 - momentum) * g_t
        U_t   = lerp(g_t, B_t, momentum)  if nesterov  else  B_t
        O_t   = NS(U_t)                                   (ns_steps Newton–Schulz iterations)
        theta = theta * (1 - lr * weight_decay)           (decoupled weight decay)
        theta = theta - adjusted_lr * O_t

    ``NS`` works on ``X = U^T`` if ``A > B`` (so ``X`` is wide), else on ``X = U``::

        X = X / max(||X||_F, eps)
        repeat ns_steps times:   S = X X^T;   X = a X + (b S + c S S) X        ((a, b, c) = ns_coefficients)

    and ``adjusted_lr = lr * sqrt(max(1, A / B))`` (``adjust_lr_fn=None`` or
    ``"original"``, Keller Jordan's) or ``0.2 * lr * sqrt(max(A, B))``
    (``"match_rms_adamw"``, Moonshot's, which lets Muon reuse AdamW's lr and
    weight decay). In the default bfloat16 mode the matrix products are Numba
    loops that add the products in torch's order (below), one thread per
    output row; on this 2-core machine a 1024 x 1024 step takes about 2x
    (3-4x on a quiet machine) the time of the float32 mode, whose products
    are NumPy's BLAS ``sgemm`` (it follows no reference's order).

    **Precision.** torch 2.13 runs the iteration in bfloat16 on every device,
    CPU float32 and float64 parameters included (``grad.bfloat16()`` in
    ``_zeropower_via_newtonschulz``). NumPy has no bfloat16, so:

    * ``ns_dtype='bfloat16'`` (default) computes each product in float32 and
      rounds it to bfloat16 (nearest, ties to even), as torch's bfloat16
      ``matmul``/``addmm`` do, adding the products in the order of torch's
      CPU kernel (oneDNN with AVX512-BF16: one float32 accumulator per entry,
      two products at a time, the odd ``k`` first; ``addmm``'s
      ``beta * C`` added by one fused multiply-add, see
      ``numopt.kernels.muon.ns_matmul``); the momentum step reproduces
      torch's fused ``lerp`` bit for bit. Measured against torch 2.13 on an
      AVX512-BF16 CPU (float32, Gaussian gradients, 10 steps, default and
      other ``ns_steps``/``ns_coefficients``, 4 x 64 to 512 x 512):
      bit-identical parameters. One remaining difference: products with
      ``m * n * k <= 16**3`` (matrices up to 16 x 16, or thinner) go to
      torch's own fallback GEMM, which sums in yet another order; there one
      Newton–Schulz call in 100 differed at 16 x 16 (relative Frobenius
      2e-3). On CPUs whose bfloat16 GEMM sums otherwise (AMX, no
      AVX512-BF16) expect the earlier agreement: about 1e-4 of a product's
      entries round to the neighbouring bfloat16 value, and after 10 steps
      the displacement ``p_t - p_0`` differs by up to 3e-3 (relative
      Frobenius).
    * ``ns_dtype='float32'`` runs the same iteration in float32 (no
      rounding, products by BLAS): a more exact polynomial iteration, never bit-equal to
      torch: 2-7% of the largest entry from torch's output per call
      (relative Frobenius 1.2e-2 to 5e-2).

    Parameters
    ----------
    params : iterable
        2-D parameters, or groups of them (dicts). Optimize biases, embeddings
        and other non-matrix parameters with another optimizer (e.g. AdamW).
    %(lr)s
    weight_decay : float, default 0.1
        Decoupled weight decay (>= 0): each step multiplies the parameter by
        ``1 - lr * weight_decay``.
    momentum : float, default 0.95
        Momentum factor (>= 0).
    nesterov : bool, default True
        Nesterov momentum.
    ns_coefficients : (float, float, float), default (3.4445, -4.7750, 2.0315)
        ``(a, b, c)`` of the quintic Newton–Schulz polynomial.
    eps : float, default 1e-7
        Floor of the Frobenius norm the update is divided by (>= 0).
    ns_steps : int, default 5
        Newton–Schulz iterations, ``0 <= ns_steps < 100``.
    adjust_lr_fn : None, "original" or "match_rms_adamw", default None
        The learning-rate adjustment for the matrix shape (None means "original").
    ns_dtype : "bfloat16" or "float32", default "bfloat16"
        numopt only: the precision of the Newton–Schulz iteration (see above).

    State
    -----
    ``'momentum_buffer'`` per parameter once it has a gradient (no ``'step'``, as torch).

    References
    ----------
    K. Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024,
    https://kellerjordan.github.io/posts/muon/ ; J. Liu et al., "Muon is Scalable for
    LLM Training", arXiv:2502.16982.

    Examples
    --------
    >>> import numpy as np, numopt
    >>> w = numopt.Parameter(np.zeros((2, 2), np.float32))
    >>> opt = numopt.Muon([w], lr=0.1, weight_decay=0.0)
    >>> w.grad = np.eye(2, dtype=np.float32)
    >>> opt.step()
    >>> print(w.data)  # NS(0.0975 I) = 1.125 I, in bfloat16
    [[-0.1125  0.    ]
     [ 0.     -0.1125]]
    """

    _tracks_step = False
    _state_keys = ("momentum_buffer",)

    __init__ = constructor(
        "lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True, ns_coefficients=DEFAULT_NS_COEFFICIENTS,"
        " eps=1e-7, ns_steps=5, adjust_lr_fn=None, *, ns_dtype='bfloat16'"
    )

    def _construct(self, params: Any, arguments: dict[str, Any], **convert: Callable[[Any], Any]) -> None:
        """Also start the Newton–Schulz scratch (per matrix shape) empty."""
        self._ns_work: dict[tuple[int, int], _NSWork] = {}
        self._ns_input: dict[int, np.ndarray] = {}
        super()._construct(params, arguments, **convert)

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        check_nonnegative(h, "lr", "momentum", "weight_decay", "eps")
        check_flags(h, "nesterov")
        coefs = h["ns_coefficients"]
        if not isinstance(coefs, (tuple, list)) or len(coefs) != 3:
            raise ValueError(f"ns_coefficients must be a tuple of exactly 3 values (a, b, c), got {coefs!r}")
        for name, v in zip("abc", coefs):
            check_number(f"ns_coefficients {name}", v, label="Newton-Schulz coefficient")
        steps = h["ns_steps"]
        if isinstance(steps, bool) or not isinstance(steps, Integral):
            raise TypeError(f"ns_steps must be an int, got {type(steps).__name__} {steps!r}")
        if not 0 <= steps < 100:
            raise ValueError(
                f"Invalid ns_steps: {steps!r} (the number of Newton-Schulz steps must be >= 0 and less than 100)"
            )
        if h["adjust_lr_fn"] not in _ADJUST_LR_FNS:
            raise ValueError(
                f"Adjust learning rate function {h['adjust_lr_fn']!r} is not supported "
                "(adjust_lr_fn must be None, 'original' or 'match_rms_adamw')"
            )
        if h["ns_dtype"] not in _NS_DTYPES:
            raise ValueError(f"ns_dtype must be 'bfloat16' or 'float32', got {h['ns_dtype']!r}")

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of 2-D parameters (any other shape raises ``ValueError``, as in torch)."""
        raw = param_group.get("params", ()) if isinstance(param_group, dict) else ()
        items = [raw] if isinstance(raw, Parameter) else raw if isinstance(raw, (list, tuple)) else ()
        for item in items:
            p = item[1] if isinstance(item, tuple) and len(item) == 2 else item
            if not isinstance(p, Parameter):
                continue  # malformed entries get Optimizer.add_param_group's error
            if p.ndim != 2:
                raise ValueError(f"Muon only supports 2D parameters whereas we found a parameter with size: {p.shape}")
            if getattr(p, "is_cuda", False):
                raise TypeError("Muon works on host (NumPy) parameters; CUDA parameters are not supported")
        super().add_param_group(param_group)

    def _state_spec(self, group: dict[str, Any]) -> tuple[tuple[str, float], ...]:
        return (("momentum_buffer", 0.0),)

    def step(self, closure: Any = None) -> Any:
        """Perform one optimization step (see :meth:`Optimizer.step`); sparse gradients are refused."""
        for p in self.parameters():
            if isinstance(p.grad, SparseGrad):
                raise RuntimeError("Muon does not support sparse gradients")
        return super().step(closure)

    def _update(self, group: dict[str, Any], flat: FlatBuffer, run: Run) -> None:
        t = flat.dtype.type
        round_bf16 = group["ns_dtype"] == "bfloat16"
        momentum = group["momentum"]
        ns_input = self._ns_input.get(id(flat))
        if ns_input is None:
            ns_input = self._ns_input[id(flat)] = np.empty(flat.size, np.float32)
        update = ns_input[run.lo : run.hi]
        muon_momentum(
            run.grad,
            run.state["momentum_buffer"],
            update,
            t(momentum),
            t(1.0 - float(momentum)),
            bool(group["nesterov"]),
            round_bf16,
        )

        lr = float(group["lr"])
        decay = t(1.0 - lr * float(group["weight_decay"]))
        a, b, c = (np.float32(v) for v in group["ns_coefficients"])
        for i in range(run.p0, run.p1):
            shape = flat.params[i].shape
            lo, hi = flat.offsets[i] - run.lo, flat.offsets[i + 1] - run.lo
            if hi == lo:
                continue
            u = update[lo:hi].reshape(shape)
            self._newton_schulz(u, a, b, c, int(group["ns_steps"]), float(group["eps"]), round_bf16)
            alpha = t(-_adjusted_lr(lr, group["adjust_lr_fn"], shape))
            muon_apply(run.data[lo:hi], update[lo:hi], decay, alpha)

    def _newton_schulz(
        self, u: np.ndarray, a: np.float32, b: np.float32, c: np.float32, steps: int, eps: float, round_bf16: bool
    ) -> None:
        """Orthogonalize the float32 matrix ``u`` in place (torch's ``_zeropower_via_newtonschulz``)."""
        rows, cols = u.shape
        tall = rows > cols
        m, n = (cols, rows) if tall else (rows, cols)
        work = self._ns_work.get((m, n))
        if work is None:
            work = self._ns_work[(m, n)] = _NSWork(m, n)
        x, tmp, xt, s, p = work.x, work.t, work.xt, work.a, work.b
        x[...] = u.T if tall else u
        xf = x.reshape(-1)
        norm = np.float32(math.sqrt(sum_squares(xf, work.partials)))
        floor = np.float32(eps)
        if round_bf16:
            norm, floor = _bf16(norm), _bf16(floor)
        ns_scale(xf, np.float32(max(norm, floor)), round_bf16)
        if not round_bf16:
            matmul = _blas_product  # float32 mode: no reference order to follow, BLAS is faster
        else:
            matmul = ns_matmul if m * m * n >= _PARALLEL_MATMUL_WORK else ns_matmul.serial
        one, zero = np.float32(1), np.float32(0)
        for _ in range(steps):
            xt[...] = x.T
            matmul(x, xt, s, s, one, zero, round_bf16)  # S = X X^T
            matmul(s, s, p, s, c, b, round_bf16)  # P = b S + c S S
            matmul(p, x, tmp, x, one, a, round_bf16)  # X = a X + P X
            x, tmp = tmp, x
        u[...] = x.T if tall else x
