"""Distributed scenarios, run by tests/test_distributed.py as ``mpiexec -n N python tests/mpi_worker.py OUTDIR``.

Each rank pickles what it saw to ``OUTDIR/rank<r>.pkl``; the test compares that with
single-process runs it computes itself from the same cases. Importing this module
does not import MPI: the case definitions below (parameters, per-rank gradients,
the training schedule) are plain NumPy, shared by both sides.
"""

from __future__ import annotations

import pickle
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import numopt

#: the optimizers under test, those numopt has
OPTIMIZERS = [name for name in ("SGD", "Adam", "AdamW") if hasattr(numopt, name)]
CONFIGS: dict[str, dict[str, Any]] = {
    "SGD": {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    "Adam": {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01},
    "AdamW": {"lr": 0.01, "weight_decay": 0.1},
}
GROUP1_LR = {"SGD": 0.05, "Adam": 0.02, "AdamW": 0.02}
STEPS = 5  # steps on N ranks
RESUME_STEPS = 3  # steps after loading the consolidated state on a different number of ranks
BUCKET_MB = 100 / 2**20  # 100-byte all-reduce buckets: many buckets in flight

f32, f64 = np.float32, np.float64
#: (group, shape, dtype, gradient pattern); group 0 has a float32 and a float64 buffer,
#: sizes 73 / 17 / 28 elements: uneven shards for 2 and 3 ranks, parameters cut across ranks.
SPECS: list[tuple[int, tuple[int, ...], type, str]] = [
    (0, (7, 5), f32, "all"),
    (0, (14,), f32, "rank0"),  # a gradient on rank 0 only: None elsewhere counts as zeros
    (0, (0,), f32, "all"),  # an empty parameter
    (0, (4, 3), f64, "all"),
    (0, (3, 4, 2), f32, "never"),  # no gradient on any rank: untouched, no state
    (0, (5,), f64, "all"),
    (1, (11,), f32, "skip1"),  # None on every rank at step 1: per-parameter step counts differ
    (1, (2, 8), f32, "all"),
    (1, (), f32, "all"),  # a 0-d parameter
]


TINY_STEPS = 3


def tiny_grad(t: int, rank: int) -> np.ndarray:
    return np.array([t + rank, 1.0 - rank], np.float32)


def make_params() -> list[numopt.Parameter]:
    return [
        numopt.Parameter(np.random.default_rng(100 + j).standard_normal(shape).astype(dtype), name=f"p{j}")
        for j, (_, shape, dtype, _) in enumerate(SPECS)
    ]


def groups(params: list[numopt.Parameter], name: str) -> list[dict[str, Any]]:
    return [
        {"params": [p for p, s in zip(params, SPECS) if s[0] == 0]},
        {"params": [p for p, s in zip(params, SPECS) if s[0] == 1], "lr": GROUP1_LR[name]},
    ]


def local_grad(t: int, rank: int, j: int) -> np.ndarray | None:
    """Rank ``rank``'s gradient of parameter ``j`` at step ``t`` (``None``: no gradient)."""
    _, shape, dtype, pattern = SPECS[j]
    if pattern == "never" or (pattern == "rank0" and rank != 0) or (pattern == "skip1" and t == 1):
        return None
    return np.random.default_rng([t, rank, j]).standard_normal(shape).astype(dtype)


def mean_grad(t: int, size: int, j: int) -> np.ndarray | None:
    """The gradient a single process sees: the average over ``size`` ranks, ``None`` counted as zeros."""
    grads = [local_grad(t, r, j) for r in range(size)]
    if all(g is None for g in grads):
        return None
    total = sum(np.zeros(SPECS[j][1]) if g is None else g.astype(np.float64) for g in grads)
    return (total / size).astype(SPECS[j][2])


def drive(opt: Any, params: list[numopt.Parameter], grad_of: Callable, t0: int, t1: int, loss: float | None) -> Any:
    """Steps ``t0:t1``: the learning rates halve before step 2; the last step goes through a closure."""
    result = None
    for t in range(t0, t1):
        if t == 2:
            for group in opt.param_groups:
                group["lr"] *= 0.5

        def set_grads(t: int = t) -> None:
            for j, p in enumerate(params):
                p.grad = grad_of(t, j)

        if t == t1 - 1 and loss is not None:

            def closure(set_grads: Callable = set_grads) -> float:
                set_grads()
                return loss

            result = opt.step(closure)
        else:
            set_grads()
            opt.step()
    return result


def state_nbytes(opt: Any) -> int:
    """Bytes of the optimizer state arrays an optimizer holds (its flat state buffers)."""
    if opt is None:
        return 0
    return sum(a.nbytes for flats in opt._flats for f in flats for a in f.state.values())


def _perturbed(params: list[numopt.Parameter], rank: int) -> list[numopt.Parameter]:
    for p in params:  # every rank but the root starts elsewhere: broadcast_parameters must fix it
        p.data = p.data + np.asarray(rank, p.dtype)
    return params


def run(outdir: Path) -> None:
    from mpi4py import MPI

    from numopt.distributed import DistributedOptimizer, ZeroRedundancyOptimizer, broadcast_parameters

    comm = MPI.COMM_WORLD
    rank, size = comm.rank, comm.size
    out: dict[str, Any] = {"size": size, "rank": rank}

    for name in OPTIMIZERS:
        cls = getattr(numopt, name)
        cfg = CONFIGS[name]

        # -- DistributedOptimizer -------------------------------------------------
        params = _perturbed(make_params(), rank)
        dopt = DistributedOptimizer(cls(groups(params, name), **cfg), bucket_mb=BUCKET_MB)
        broadcast_parameters(dopt, root=0)
        loss = drive(dopt, params, lambda t, j: local_grad(t, rank, j), 0, STEPS, float(rank + 1))
        # synchronize(), an in-place edit of the averaged gradients, then a step that keeps them
        for j, p in enumerate(params):
            p.grad = local_grad(STEPS, rank, j)
        dopt.synchronize()
        for p in params:
            if p.grad is not None:
                p.grad *= np.asarray(0.5, p.dtype)
        dopt.step()
        out[f"ddp/{name}"] = {
            "params": [p.data.copy() for p in params],
            "loss": loss,
            "state_dict": dopt.state_dict(),
            "is_optimizer": isinstance(dopt, numopt.Optimizer),
        }

        # -- ZeroRedundancyOptimizer ----------------------------------------------
        params = _perturbed(make_params(), rank)
        zero = ZeroRedundancyOptimizer(groups(params, name), cls, **cfg)
        broadcast_parameters(params, root=0)
        loss = drive(zero, params, lambda t, j: local_grad(t, rank, j), 0, STEPS, float(rank + 1))
        res: dict[str, Any] = {
            "params": [p.data.copy() for p in params],
            "loss": loss,
            "state_nbytes": state_nbytes(zero.optim),
            "shard_sizes": [s.hi - s.lo for g in zero._shards for s in g],
        }
        zero.consolidate_state_dict(to=0)
        if rank == 0:
            res["state_dict_to0"] = zero.state_dict()
        else:
            try:
                zero.state_dict()
                res["non_root_error"] = None
            except RuntimeError as e:
                res["non_root_error"] = str(e)
        zero.consolidate_state_dict(to=None)
        sd = zero.state_dict()
        res["state_dict_all"] = sd
        # Load the N-rank state on fewer ranks: ranks 0..N-2 together, and rank N-1 alone.
        sub = comm.Split(0 if rank < max(size - 1, 1) else 1, rank)
        params2 = make_params()
        for p, q in zip(params2, params):
            p.data = q.data.copy()
        zero2 = ZeroRedundancyOptimizer(groups(params2, name), cls, comm=sub, **cfg)
        zero2.load_state_dict(sd)
        sub_rank, sub_size = sub.rank, sub.size
        drive(zero2, params2, lambda t, j, r=sub_rank: local_grad(t, r, j), STEPS, STEPS + RESUME_STEPS, None)
        res["resume"] = {"size": sub_size, "params": [p.data.copy() for p in params2]}
        sub.Free()
        out[f"zero/{name}"] = res

    # -- collective errors: raised on every rank, nobody hangs -----------------------
    errors: dict[str, str | None] = {}
    shape = (3 + rank % 2,)  # rank 0 and rank 1 disagree
    for what, build in (
        ("ddp_shapes", lambda: DistributedOptimizer(numopt.SGD([numopt.Parameter(shape)], lr=0.1))),
        ("zero_shapes", lambda: ZeroRedundancyOptimizer([numopt.Parameter(shape)], numopt.SGD, lr=0.1)),
        ("broadcast_shapes", lambda: broadcast_parameters([numopt.Parameter(shape)])),
    ):
        try:
            build()
            errors[what] = None
        except ValueError as e:
            errors[what] = str(e)

    class Local(numopt.Optimizer):  # not element-wise as far as ZeRO knows
        def __init__(self, params: Any, lr: float = 0.1) -> None:
            super().__init__(params, {"lr": lr})

    try:
        ZeroRedundancyOptimizer([numopt.Parameter((2,))], Local)
        errors["zero_not_elementwise"] = None
    except NotImplementedError as e:
        errors["zero_not_elementwise"] = str(e)
    w = numopt.Parameter((2,))
    dopt = DistributedOptimizer(numopt.SGD([w], lr=0.1))

    def mixed_closure() -> float | None:
        w.grad = np.ones(2, np.float32)
        return 1.0 if rank == 0 else None

    try:
        dopt.step(mixed_closure)
        errors["mixed_closure"] = None
    except ValueError as e:
        errors["mixed_closure"] = str(e)
    out["errors"] = errors

    # -- smaller cases ------------------------------------------------------------------
    extras: dict[str, Any] = {}
    # average=False sums the gradients
    w = numopt.Parameter(np.zeros(3, np.float32))
    dopt = DistributedOptimizer(numopt.SGD([w], lr=1.0), average=False)
    w.grad = np.full(3, rank + 1, np.float32)
    dopt.step()
    extras["sum"] = w.data.copy()
    # synchronize(), then a gradient reassigned on rank 0 only: every rank reduces again (no hang)
    w = numopt.Parameter(np.zeros(2, np.float32))
    dopt = DistributedOptimizer(numopt.SGD([w], lr=1.0))
    w.grad = np.full(2, rank + 1, np.float32)
    dopt.synchronize()
    if rank == 0:
        w.grad = np.zeros(2, np.float32)
    dopt.step()
    extras["resync"] = w.data.copy()
    # broadcast some of an optimizer's parameters (one by one: their buffer is not covered)
    a = numopt.Parameter(np.full(3, rank, np.float32))
    b = numopt.Parameter(np.array(rank + 0.5, np.float32))  # 0-d
    numopt.SGD([a, b], lr=0.1)
    broadcast_parameters([b], root=size - 1)
    extras["partial_broadcast"] = (a.data.copy(), b.data.copy())
    # ZeRO with more ranks than elements: some ranks hold no shard (and no local optimizer)
    w = numopt.Parameter(np.array([1.0, 2.0], np.float32))
    zero = ZeroRedundancyOptimizer([w], numopt.SGD, lr=0.1, momentum=0.9)
    for t in range(TINY_STEPS):
        w.grad = tiny_grad(t, rank)
        zero.step()
    zero.consolidate_state_dict(to=0)
    extras["tiny"] = {
        "params": w.data.copy(),
        "has_optim": zero.optim is not None,
        "state_dict": zero.state_dict() if rank == 0 else None,
    }
    # learning-rate schedulers drive both wrappers (they take them as Optimizers)
    from numopt.lr_scheduler import StepLR

    w = numopt.Parameter(np.zeros(3, np.float32))
    v = numopt.Parameter(np.zeros(5, np.float32))
    dopt = DistributedOptimizer(numopt.SGD([w], lr=1.0))
    zero = ZeroRedundancyOptimizer([v], numopt.SGD, lr=1.0)
    lrs: dict[str, list[float]] = {"ddp": [], "zero": []}
    scheds = [StepLR(dopt, step_size=1, gamma=0.5), StepLR(zero, step_size=1, gamma=0.5)]
    for _ in range(3):
        w.grad = np.ones(3, np.float32)
        v.grad = np.ones(5, np.float32)
        dopt.step()
        zero.step()
        lrs["ddp"].append(dopt.optimizer.param_groups[0]["lr"])
        lrs["zero"].append(zero.optim.param_groups[0]["lr"] if zero.optim is not None else None)
        for sched in scheds:
            sched.step()
    extras["lrs"] = lrs
    extras["scheduled"] = {"ddp": w.data.copy(), "zero": v.data.copy()}
    out["extras"] = extras

    with open(outdir / f"rank{rank}.pkl", "wb") as fh:
        pickle.dump(out, fh)


def main() -> None:
    from mpi4py import MPI

    try:
        run(Path(sys.argv[1]))
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(1)  # the other ranks may wait in a collective: end them all


if __name__ == "__main__":
    main()
