"""Drive numopt and a row's reference side by side on the same seeded problem.

The reference is the row's ``reference`` (``torch.optim``'s class of the same name
unless the row names another, see ``optim_db``), stepped on torch tensors: importing
this module without torch fails the test run (it must never be skipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import numopt

from .optim_db import OptimCase, prepared

torch.set_num_threads(1)

#: shapes of the parameters in the parity problems: matrices, vectors, 3-D, 0-d, empty
SHAPES: list[tuple[int, ...]] = [(5, 3), (7,), (2, 3, 4), (), (4, 1), (0, 3), (6,)]
#: parameters 0..3 form group 1, the rest group 2
SPLIT = 4


def grad_is_none(param_index: int, step: int) -> bool:
    """Which gradients are ``None`` on which steps (so per-parameter step counts differ)."""
    if param_index == 1:
        return step % 5 == 3  # skipped now and then
    if param_index == 4:
        return step < 4  # starts late
    if param_index == 6:
        return True  # never has a gradient: no state, never changes
    return False


@dataclass
class Pair:
    """A numopt optimizer and its reference (a torch-optimizer-like object) over equal initial parameters."""

    ours: numopt.Optimizer
    params: list[numopt.Parameter]
    ref: Any
    ref_params: list[torch.Tensor]
    dtype: np.dtype
    ref_name: str = "the reference"
    #: the parameters' shapes (``SHAPES`` unless the row names others)
    shapes: tuple[tuple[int, ...], ...] = tuple(SHAPES)

    def set_grads(self, grads: list[np.ndarray | None]) -> None:
        for p, tp, g in zip(self.params, self.ref_params, grads):
            if g is None:
                p.grad = None
                tp.grad = None
            else:
                p.grad = g.copy()
                tp.grad = torch.from_numpy(g.copy())

    def step(self) -> None:
        self.ours.step()
        self.ref.step()


def make_pair(case: OptimCase, seed: int = 0) -> Pair:
    rng = np.random.default_rng(seed)
    dtype = np.dtype(case.dtype)
    shapes = tuple(case.shapes or SHAPES)
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    params = [numopt.Parameter(a.copy()) for a in init]
    ref_params = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    ours = getattr(numopt, case.name)(
        [{"params": params[:SPLIT]}, {"params": params[SPLIT:], **case.group2}], **case.kwargs
    )
    ref = case.reference([{"params": ref_params[:SPLIT]}, {"params": ref_params[SPLIT:], **case.group2}], **case.kwargs)
    prepared(case, ours)  # the row's prepare call, if any (the Schedule-Free optimizers' train())
    prepared(case, ref)
    return Pair(ours, params, ref, ref_params, dtype, case.reference_name, shapes)


def random_grads(rng: np.random.Generator, step: int, dtype: np.dtype, shapes: Any = None) -> list[np.ndarray | None]:
    """Step ``step``'s gradients for parameters of ``shapes`` (default ``SHAPES``; pass a row's ``pair.shapes``)."""
    shapes = SHAPES if shapes is None else shapes
    return [None if grad_is_none(i, step) else rng.standard_normal(s).astype(dtype) for i, s in enumerate(shapes)]


def compare(pair: Pair, step: int, rtol: float, atol: float) -> float:
    """Assert params and every state entry match the reference; return the largest relative error seen."""
    worst = 0.0
    for i, (p, tp) in enumerate(zip(pair.params, pair.ref_params)):
        ref = tp.detach().numpy()
        worst = max(worst, _check(f"step {step}: param {i}", p.data, ref, rtol, atol))
        tstate = pair.ref.state.get(tp, {})
        ostate = pair.ours.state.get(p, {})
        assert set(ostate) == set(tstate), (
            f"step {step}: param {i} state keys {set(ostate)} != {pair.ref_name}'s {set(tstate)}"
        )
        for key, tv in tstate.items():
            ov = ostate[key]
            tv = tv.detach().numpy() if isinstance(tv, torch.Tensor) else np.asarray(tv)
            if key == "step":
                assert float(ov) == float(tv), f"step {step}: param {i} 'step' {float(ov)} != {float(tv)}"
            elif key in pair.ours._scalar_keys:
                # per-parameter scalar state (NAdam's mu_product, ...): a float64 number here, a 0-d
                # tensor of torch's default dtype there; compared as values in torch's dtype
                ov = np.asarray(ov, dtype=tv.dtype)
                worst = max(worst, _check(f"step {step}: param {i} state {key!r}", ov, tv, rtol, atol))
            else:
                worst = max(worst, _check(f"step {step}: param {i} state {key!r}", ov, tv, rtol, atol))
    return worst


def compare_displacement(pair: Pair, step: int, init: list[np.ndarray], tol: float = 1e-4) -> float:
    """Assert each parameter's displacement ``p_t - p_0`` (and each state entry, its change from 0) is within
    ``tol`` of the reference's, Frobenius-relative; return the largest relative error seen.

    For rows whose rule takes a sign or a threshold (``OptimCase.compare == "displacement"``): there a
    last-bit difference may flip one element's step, which an elementwise tolerance would report.
    """
    worst = 0.0
    for i, (p, tp, p0) in enumerate(zip(pair.params, pair.ref_params, init)):
        pairs = [(f"param {i} displacement", p.data - p0, tp.detach().numpy() - p0)]
        tstate = pair.ref.state.get(tp, {})
        ostate = pair.ours.state.get(p, {})
        assert set(ostate) == set(tstate), f"step {step}: param {i} state keys {set(ostate)} != {set(tstate)}"
        for key, tv in tstate.items():
            tv = tv.detach().numpy() if isinstance(tv, torch.Tensor) else np.asarray(tv)
            pairs.append((f"param {i} state {key!r}", np.asarray(ostate[key], dtype=tv.dtype), tv))
        for what, ours, ref in pairs:
            assert ours.shape == ref.shape, f"step {step}: {what}: shape {ours.shape} != reference {ref.shape}"
            diff = float(np.linalg.norm((ours.astype(np.float64) - ref).ravel()))
            scale = float(np.linalg.norm(ref.astype(np.float64).ravel()))
            err = diff / scale if scale > 0 else diff
            assert err <= tol, f"step {step}: {what} differs from {pair.ref_name}'s by {err:.3g} (Frobenius-relative)"
            worst = max(worst, err)
    return worst


def compare_row(pair: Pair, case: OptimCase, step: int, init: list[np.ndarray]) -> float:
    """``compare`` or ``compare_displacement``, as the row asks (``case.compare``)."""
    if case.compare == "displacement":
        return compare_displacement(pair, step, init)
    assert case.compare == "elementwise", case.compare
    return compare(pair, step, **case.tolerances)


def _check(what: str, ours: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> float:
    ours = np.asarray(ours)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != reference {ref.shape}"
    assert ours.dtype == ref.dtype, f"{what}: dtype {ours.dtype} != reference {ref.dtype}"
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=atol, err_msg=what)
    if ours.size == 0:
        return 0.0
    scale = np.maximum(np.abs(ref), atol / rtol)
    return float(np.max(np.abs(ours.astype(np.float64) - ref) / scale))
