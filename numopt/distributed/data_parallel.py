"""Data parallelism: ``DistributedOptimizer`` (all-reduced gradients) and ``broadcast_parameters``."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from numbers import Real
from typing import Any

import numpy as np

from .._validation import check_bool
from ..flat import FlatBuffer
from ..optimizer import Optimizer, RemovableHandle, WrapsOptimizer
from ..parameter import Parameter
from ._comm import (
    MPI,
    GradMasks,
    bind_reduced_grads,
    check_host_buffers,
    check_same,
    flat_signature,
    get_comm,
    reduce_loss,
)

__all__ = ["DistributedOptimizer", "broadcast_parameters"]


class DistributedOptimizer(WrapsOptimizer, Optimizer):
    """Data-parallel training over MPI: average the gradients across ranks, then step locally.

    Each rank computes gradients on its own share of the data; :meth:`step`
    all-reduces every flat gradient buffer in place (``MPI.IN_PLACE``), in
    buckets of ``bucket_mb`` megabytes started together as non-blocking
    ``Iallreduce`` requests so that their transfers overlap, divides by the
    number of ranks (``average=True``), then runs the wrapped optimizer's step.
    Started from identical parameters (see :func:`broadcast_parameters`), every
    rank then holds identical parameters and optimizer state after each step.

    Parameters
    ----------
    optimizer : Optimizer
        The local optimizer, built the same way on every rank.
    comm : mpi4py intracommunicator, optional
        ``MPI.COMM_WORLD`` by default.
    average : bool, default True
        Divide the summed gradients by the number of ranks (False: keep the sum).
    bucket_mb : float, default 25
        Size of one all-reduce (MiB); a flat buffer larger than this is reduced
        in several overlapping pieces.

    Notes
    -----
    - Construction, :meth:`step`, :meth:`synchronize` and :meth:`add_param_group`
      are collective: every rank of ``comm`` calls them in the same order. The
      parameter groups (shapes, dtypes, order) must be the same on every rank;
      a mismatch raises ``ValueError`` on all ranks instead of corrupting data.
    - Gradients that are ``None``: a parameter whose gradient is ``None`` on some
      ranks but not on others contributes zeros from the ranks without one (the
      average still divides by the number of ranks, like torch's
      ``DistributedDataParallel``), and gets the reduced gradient on every rank.
      A parameter whose gradient is ``None`` on every rank stays ``None`` and is
      skipped by the step, as in torch. Pending gradient arrays assigned to
      ``p.grad`` are copied into the flat buffer first, as a local step would.
    - With a ``closure``, it is called by the wrapped optimizer (possibly several
      times, e.g. by a line search) and the gradients are reduced after every
      call; the loss it returns is averaged (``average=True``) or summed across
      ranks, so decisions made on it agree on every rank, and that is what
      ``step`` returns.
    - Identical results on every rank rely on the MPI library returning the same
      all-reduce result to every rank, which MPICH and Open MPI do.
    - ``param_groups``, ``state`` and ``defaults`` are the wrapped optimizer's own
      objects, so schedulers and edits of ``group['lr']`` act on it directly;
      ``state_dict``/``load_state_dict``/``zero_grad``/``add_param_group`` are
      delegated to it. Its state is the same on every rank: save it from one.
    - Optimizers that read sparse gradients as they are (``SparseAdam``) are refused.

    Examples
    --------
    Run with ``mpiexec -n 2 python train.py``::

        from mpi4py import MPI
        import numopt
        from numopt.distributed import DistributedOptimizer, broadcast_parameters

        w = numopt.Parameter((10,))
        opt = DistributedOptimizer(numopt.Adam([w], lr=1e-2))
        broadcast_parameters(opt, root=0)          # start from rank 0's values
        for batch in my_shard_of_the_data(MPI.COMM_WORLD.rank):
            w.grad = gradient(w.data, batch)
            opt.step()                              # averaged over the ranks
    """

    #: marks the optimizers that communicate themselves (not to be wrapped again)
    _distributed = True
    _clip_refused = (
        "the gradients are averaged across ranks inside step(), after which the norm would have to be "
        "taken; clip the local gradients with numopt.utils.clip_grad_norm_ before step() instead"
    )

    #: the wrapped optimizer's step runs the global step hooks; this one runs only its own
    _global_step_hooks = False

    def __init__(self, optimizer: Optimizer, comm: Any = None, average: bool = True, bucket_mb: float = 25) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a numopt Optimizer, got {type(optimizer).__name__}")
        if isinstance(optimizer, DistributedOptimizer) or getattr(optimizer, "_distributed", False):
            raise TypeError(f"{type(optimizer).__name__} already communicates; wrap the local optimizer instead")
        if getattr(optimizer, "_sparse_grads", False):
            raise NotImplementedError(
                f"{type(optimizer).__name__} reads sparse gradients as they are; DistributedOptimizer "
                "reduces dense flat gradient buffers only"
            )
        for flats in optimizer._flats:
            check_host_buffers(flats)
        check_bool("average", average)
        if isinstance(bucket_mb, bool) or not isinstance(bucket_mb, Real) or not math.isfinite(bucket_mb):
            raise TypeError(f"bucket_mb must be a finite positive number, got {bucket_mb!r}")
        if bucket_mb <= 0:
            raise ValueError(f"bucket_mb must be > 0, got bucket_mb={bucket_mb!r}")
        self._share(optimizer)
        self.comm = get_comm(comm)
        self.average = bool(average)
        self.bucket_mb = bucket_mb
        # The wrapped optimizer's bookkeeping, shared (not copied).
        self.defaults = optimizer.defaults
        self.state = optimizer.state
        self._step_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._step_post_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._masks = GradMasks()
        self._synced: list[Any] | None = None
        check_same(self.comm, flat_signature(self._flats), "parameter groups")

    # -- communication ----------------------------------------------------------
    def _bucket_elems(self, flat: FlatBuffer) -> int:
        return max(1, int(self.bucket_mb * 2**20) // flat.dtype.itemsize)

    def synchronize(self) -> None:
        """All-reduce the gradients now (collective).

        Use it to work on the averaged gradients before stepping, e.g. to clip
        them by their global norm; the following :meth:`step` does not reduce
        them again, unless a gradient was assigned (or set to ``None``) since on
        some rank: then every rank reduces its gradients again. In-place edits of
        ``p.grad[...]`` are kept.
        """
        self._reduce_grads()
        self._synced = [f.runs() for flats in self._flats for f in flats]

    def _still_synced(self) -> bool:
        """Whether the gradients reduced by :meth:`synchronize` are still in place on every rank."""
        if self._synced is None:  # synchronize() is collective: the same answer on every rank
            return False
        flats = [f for flats in self._flats for f in flats]
        mine = len(flats) == len(self._synced) and all(f._runs is r for f, r in zip(flats, self._synced))
        # One rank's reassigned gradient makes every rank reduce again (else the collectives would not match).
        return bool(self.comm.allreduce(mine, op=MPI.LAND)) if self.comm.size > 1 else mine

    def _reduce_grads(self) -> None:
        comm = self.comm
        flats = [f for group in self._flats for f in group]
        local = [self._masks.local(f) for f in flats]
        if comm.size == 1:
            return
        check_same(comm, flat_signature(self._flats), "parameter groups")
        mask = np.concatenate(local) if local else np.zeros(0, np.uint8)
        requests = [comm.Iallreduce(MPI.IN_PLACE, mask, op=MPI.MAX)] if mask.size else []
        buckets = []
        for flat in flats:
            step = self._bucket_elems(flat)
            for lo in range(0, flat.size, step):
                bucket = flat.grad[lo : lo + step]
                buckets.append(bucket)
                requests.append(comm.Iallreduce(MPI.IN_PLACE, bucket, op=MPI.SUM))
        # Every request is in flight; finish them in order, scaling each bucket as it lands.
        first = 1 if mask.size else 0
        if mask.size:
            requests[0].Wait()
        for request, bucket in zip(requests[first:], buckets):
            request.Wait()
            if self.average:
                np.divide(bucket, bucket.dtype.type(comm.size), out=bucket)
        start = 0
        for flat in flats:
            n = len(flat.params)
            bind_reduced_grads(flat, mask[start : start + n])
            start += n

    # -- stepping ---------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Reduce the gradients across ranks, then run the wrapped optimizer's step (collective).

        Returns the closure's loss, averaged (or summed) across ranks, or ``None``.
        """
        return super().step(closure)

    def _step(self, closure: Callable[[], Any] | None) -> Any:
        if closure is None:
            if not self._still_synced():
                self._reduce_grads()
            self._synced = None
            return self.optimizer.step()

        def reduced_closure() -> Any:
            loss = closure()
            self._reduce_grads()
            return reduce_loss(self.comm, loss, self.average)

        self._synced = None
        return self.optimizer.step(reduced_closure)

    # -- delegated --------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """The wrapped optimizer's ``zero_grad``."""
        self.optimizer.zero_grad(set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the wrapped optimizer (collective: every rank adds the same group)."""
        self.optimizer.add_param_group(param_group)
        check_host_buffers(self._flats[-1])
        check_same(self.comm, flat_signature(self._flats), "parameter groups")

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimizer's state dict (the same on every rank)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load into the wrapped optimizer; give every rank the same state dict."""
        self.optimizer.load_state_dict(state_dict)

    def register_state_dict_pre_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        return self.optimizer.register_state_dict_pre_hook(hook, prepend)

    def register_state_dict_post_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        return self.optimizer.register_state_dict_post_hook(hook, prepend)

    def register_load_state_dict_pre_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        return self.optimizer.register_load_state_dict_pre_hook(hook, prepend)

    def register_load_state_dict_post_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        return self.optimizer.register_load_state_dict_post_hook(hook, prepend)

    def __repr__(self) -> str:
        return self._repr_around(
            f"DistributedOptimizer(ranks={self.comm.size}, average={self.average}, bucket_mb={self.bucket_mb}"
        )


def _collect_parameters(params: Any) -> list[Parameter]:
    if isinstance(params, Parameter):
        return [params]
    out: list[Parameter] = []
    for item in params:
        if isinstance(item, dict):
            out.extend(_collect_parameters(item["params"]))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            out.append(item[1])
        elif isinstance(item, Parameter):
            out.append(item)
        else:
            raise TypeError(f"broadcast_parameters takes Parameters, groups or an Optimizer, got {type(item).__name__}")
    return out


def broadcast_parameters(params: Any, root: int = 0, comm: Any = None) -> None:
    """Copy ``root``'s parameter values to every rank, in place (collective).

    Parameters
    ----------
    params : Optimizer, iterable of Parameter, of ``(name, Parameter)`` or of groups
        With an optimizer (or distributed wrapper), each of its flat data buffers
        is broadcast in one message. Parameters packed in a flat buffer of which
        all are given are sent with the buffer too; others one by one.
    root : int, default 0
        The rank whose values everyone gets.
    comm : mpi4py intracommunicator, optional
        ``MPI.COMM_WORLD`` by default.

    Raises
    ------
    ValueError
        On every rank, if the ranks do not pass the same shapes and dtypes in
        the same order, or ``root`` is not a rank of ``comm``.
    """
    comm = get_comm(comm)
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or not 0 <= root < comm.size:
        raise ValueError(f"root must be a rank of the communicator (0 to {comm.size - 1}), got root={root!r}")
    arrays: list[np.ndarray] = []
    if isinstance(params, Optimizer):
        arrays = [f.data for group in params._flats for f in group]
    else:
        plist = _collect_parameters(params)
        given = {id(p) for p in plist}
        done: set[int] = set()
        for p in plist:
            flat = p._flat
            if flat is not None and all(id(q) in given for q in flat.params):
                if id(flat) not in done:
                    done.add(id(flat))
                    arrays.append(flat.data)
            else:
                arrays.append(p.data)
    arrays = [a for a in arrays if a.size]
    check_same(comm, tuple((a.dtype.str, a.size) for a in arrays), "parameters to broadcast")
    if comm.size == 1:
        return
    requests = [comm.Ibcast(a, root=int(root)) for a in arrays]
    MPI.Request.Waitall(requests)
