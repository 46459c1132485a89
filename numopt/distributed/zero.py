"""ZeRO stage 1: ``ZeroRedundancyOptimizer`` shards the optimizer state across MPI ranks."""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from ..flat import FlatBuffer
from ..optimizer import Optimizer, registered
from ..parameter import Parameter
from ._comm import (
    MPI,
    GradMasks,
    check_host_buffers,
    check_same,
    flat_signature,
    get_comm,
    mpi_type,
    reduce_loss,
    shard_bounds,
)

__all__ = ["ZeroRedundancyOptimizer"]

_NOT_HYPERPARAMS = ("params", "param_names")


def _check_shardable(cls: type) -> None:
    # optimizers whose update of an element reads only that element's data, gradient and state
    # (plus per-parameter scalars): a parameter may be cut anywhere between ranks
    known = tuple(registered(elementwise=True))
    if (
        not issubclass(cls, known)
        or getattr(cls, "_sparse_grads", False)
        or cls._state_layout is not Optimizer._state_layout
    ):
        raise NotImplementedError(
            f"ZeroRedundancyOptimizer cuts parameters anywhere between ranks, which is exact only for "
            f"element-wise optimizers ({', '.join(c.__name__ for c in known)}); {cls.__name__} is not one. "
            "Use DistributedOptimizer (full state on every rank) for it."
        )


class _Shard:
    """This rank's part ``lo:hi`` of one flat buffer of the full parameter groups.

    ``pieces`` lists ``(i, s, e)``: elements ``s:e`` (buffer coordinates) of
    parameter ``i`` held here, in order, tiling ``lo:hi``. ``grad`` receives the
    reduced gradient of the shard. ``inner`` is the index of the local
    optimizer's group over the pieces (``None``: no pieces on this rank).
    """

    __slots__ = ("flat", "counts", "displs", "lo", "hi", "grad", "pieces", "inner")

    def __init__(self, flat: FlatBuffer, rank: int, size: int) -> None:
        self.flat = flat
        self.counts, self.displs = shard_bounds(flat.size, size)
        self.lo = self.displs[rank]
        self.hi = self.lo + self.counts[rank]
        self.inner: int | None = None
        # With one rank the reduced gradient is the gradient itself.
        self.grad = flat.grad[self.lo : self.hi] if size == 1 else np.zeros(self.hi - self.lo, flat.dtype)
        pieces = []
        for i in range(len(flat.params)):
            a, b = flat.offsets[i], flat.offsets[i + 1]
            if a == b:  # an empty parameter goes to the rank whose shard holds its offset (the last at the end)
                if self.lo <= a < self.hi or (a == flat.size and rank == size - 1):
                    pieces.append((i, a, a))
            elif max(a, self.lo) < min(b, self.hi):
                pieces.append((i, max(a, self.lo), min(b, self.hi)))
        self.pieces = pieces


class ZeroRedundancyOptimizer(Optimizer):
    """ZeRO stage 1 over MPI: each rank keeps the optimizer state of one shard only.

    Every parameter group's flat buffer is cut into ``N`` contiguous shards
    (``N`` the number of ranks; the first ``size % N`` shards are one element
    longer). A step reduce-scatters the gradients (``Ireduce_scatter``: each
    rank receives the sum over ranks of its shard, divided by ``N``), runs
    ``optimizer_class``'s update on the shard only, then all-gathers the
    parameters in place (``Iallgatherv``), so every rank ends with the full,
    identical parameters while holding ``1/N`` of the optimizer state. Results
    equal a single-process run of ``optimizer_class`` on the averaged gradients.

    Parameters
    ----------
    params : iterable of Parameter, of ``(name, Parameter)`` or of dicts
        The parameters or parameter groups, the same on every rank.
    optimizer_class : type
        An element-wise numopt optimizer (SGD, the Adam family, Adagrad,
        ...: those declared with an elementwise rule); others raise ``NotImplementedError``.
    comm : mpi4py intracommunicator, optional
        ``MPI.COMM_WORLD`` by default.
    **kwargs
        The optimizer's hyperparameters (``lr=...``), as for ``optimizer_class``.

    Attributes
    ----------
    optim : Optimizer or None
        The local ``optimizer_class`` over this rank's shards (``None`` on a rank
        whose shards are all empty). Its parameters are pieces of the real ones:
        1-D views into their flat buffers, one per parameter overlapping the shard,
        so per-parameter ``'step'`` counts and skipped (``None``-gradient)
        parameters behave exactly as in a single process.

    Notes
    -----
    - Construction, :meth:`step`, :meth:`add_param_group` and
      :meth:`consolidate_state_dict` are collective. Groups must match across
      ranks (shapes, dtypes, order), else ``ValueError`` on every rank.
    - Start from identical parameters on every rank (:func:`broadcast_parameters`).
    - Memory per rank: the full parameters and gradients, ``1/N`` of the optimizer
      state, and a ``1/N`` buffer that receives the reduced gradient shard.
    - Gradients: ``None`` on some ranks counts as zeros there; ``None`` on every
      rank skips the parameter, as in torch. ``p.grad`` keeps each rank's own
      gradient: the reduced shard is kept apart. A ``closure`` is called once
      and its loss averaged over the ranks.
    - ``param_groups`` are the full groups; editing a hyperparameter (or using a
      scheduler) takes effect at the next step. ``state`` is empty except on the
      rank that received :meth:`consolidate_state_dict` (until the next step);
      this rank's live shard state is ``optim.state``.
    - :meth:`state_dict` returns the full state in torch's layout, the same as a
      single-process ``optimizer_class`` would give, so it loads into either, on
      any number of ranks; :meth:`load_state_dict` takes that full dict on every
      rank and keeps each rank's shard of it.

    Examples
    --------
    Run with ``mpiexec -n 4 python train.py``::

        zero = ZeroRedundancyOptimizer(model_params, numopt.AdamW, lr=1e-3)
        ...
        zero.step()
        zero.consolidate_state_dict(to=0)
        if MPI.COMM_WORLD.rank == 0:
            numopt.save(zero.state_dict(), "optim.ckpt")
    """

    #: marks the optimizers that communicate themselves (not to be wrapped again)
    _distributed = True
    _clip_refused = (
        "the gradients are averaged across ranks inside step(), after which the norm would have to be "
        "taken; clip the local gradients with numopt.utils.clip_grad_norm_ before step() instead"
    )

    #: the shards are cut from the groups at construction: build a new optimizer over other parameters
    _repackable = False

    def __init__(self, params: Any, optimizer_class: type, comm: Any = None, **kwargs: Any) -> None:
        if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)):
            raise TypeError(f"optimizer_class must be a numopt Optimizer class, got {optimizer_class!r}")
        _check_shardable(optimizer_class)
        self.comm = get_comm(comm)
        self.optimizer_class = optimizer_class
        self._kwargs = dict(kwargs)
        # A throwaway instance on an empty parameter: checks kwargs and gives the defaults.
        self._proto = optimizer_class([Parameter(np.zeros(0, np.float32))], **kwargs)
        self._tracks_step = self._proto._tracks_step
        self._state_keys = self._proto._state_keys
        self._scalar_keys = self._proto._scalar_keys
        self.optim: Optimizer | None = None
        self._shards: list[list[_Shard]] = []
        self._inner_shards: list[tuple[int, _Shard]] = []  # (outer group, shard) of each group of `optim`
        self._masks = GradMasks()
        self._bound_mask: np.ndarray | None = None  # which parameters' pieces have a gradient bound
        self._consolidated = False
        self._initializing = True
        super().__init__(params, dict(self._proto.defaults))
        self._initializing = False
        check_same(self.comm, flat_signature(self._flats), "parameter groups")

    def _validate_hparams(self, hparams: dict[str, Any]) -> None:
        self._proto._validate_hparams(hparams)

    # -- groups and shards --------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (collective: every rank adds the same group); its state is sharded too."""
        super().add_param_group(param_group)
        gi = len(self.param_groups) - 1
        group = self.param_groups[gi]
        check_host_buffers(self._flats[gi])
        rank, size = self.comm.rank, self.comm.size
        shards = []
        for flat in self._flats[gi]:
            shard = _Shard(flat, rank, size)
            if shard.pieces:
                pieces = [Parameter(flat.data[s:e], name=flat.params[i].name) for i, s, e in shard.pieces]
                inner_group = {k: v for k, v in group.items() if k not in _NOT_HYPERPARAMS}
                inner_group["params"] = pieces
                if self.optim is None:
                    self.optim = self.optimizer_class([inner_group], **self._kwargs)
                else:
                    self.optim.add_param_group(inner_group)
                shard.inner = len(self.optim.param_groups) - 1
                (inner_flat,) = self.optim._flats[shard.inner]
                # The local optimizer packed copies of the pieces: make it work on the shard itself.
                inner_flat.adopt(flat.data[shard.lo : shard.hi], shard.grad)
                self._inner_shards.append((gi, shard))
            shards.append(shard)
        self._shards.append(shards)
        if not self._initializing:
            check_same(self.comm, flat_signature(self._flats), "parameter groups")

    def _inner_flat(self, shard: _Shard) -> FlatBuffer:
        assert self.optim is not None and shard.inner is not None
        return self.optim._flats[shard.inner][0]

    # -- stepping -----------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Reduce-scatter the gradients, update this rank's shard, all-gather the parameters (collective).

        Returns the closure's loss averaged over the ranks, or ``None``.
        """
        return super().step(closure)

    def _step(self, closure: Callable[[], Any] | None) -> Any:
        self._check_hparam_edits()  # invalid edits of group hyperparameters raise before anything moves
        loss = closure() if closure is not None else None
        loss = reduce_loss(self.comm, loss, True)
        self._reduce_scatter_grads()
        self._local_step()
        self._allgather_params()
        return loss

    def _reduce_scatter_grads(self) -> None:
        comm = self.comm
        shards = [s for group in self._shards for s in group]
        local = [self._masks.local(s.flat) for s in shards]
        mask = np.concatenate(local) if local else np.zeros(0, np.uint8)
        if comm.size > 1:
            check_same(comm, flat_signature(self._flats), "parameter groups")
            requests = [comm.Iallreduce(MPI.IN_PLACE, mask, op=MPI.MAX)] if mask.size else []
            for s in shards:
                if s.flat.size:
                    requests.append(comm.Ireduce_scatter(s.flat.grad, s.grad, s.counts, op=MPI.SUM))
            MPI.Request.Waitall(requests)
            for s in shards:
                np.divide(s.grad, s.grad.dtype.type(comm.size), out=s.grad)
        if self._bound_mask is not None and np.array_equal(mask, self._bound_mask):
            return  # the pieces' gradients are bound as they were last step
        self._bound_mask = mask.copy()
        start = 0
        for s in shards:
            has_any = mask[start : start + len(s.flat.params)]
            start += len(s.flat.params)
            if s.inner is None:
                continue
            inner_flat = self._inner_flat(s)
            for j, (i, _, _) in enumerate(s.pieces):
                piece = inner_flat.params[j]
                want = inner_flat.grad_view(j) if has_any[i] else None
                if piece._grad is not want:
                    piece.grad = want

    def _local_step(self) -> None:
        self._consolidated = False
        if self.state:
            self.state = defaultdict(dict)  # a consolidated state is out of date from now on
        opt = self.optim
        if opt is None:
            return
        for gi, shard in self._inner_shards:
            dst = opt.param_groups[shard.inner]
            for k, v in self.param_groups[gi].items():
                if k not in _NOT_HYPERPARAMS:
                    dst[k] = v
        # The local optimizer's step without its hooks: this optimizer's step runs them.
        opt._update_all()

    def _allgather_params(self) -> None:
        comm = self.comm
        if comm.size == 1:
            return
        requests = [
            comm.Iallgatherv(MPI.IN_PLACE, [s.flat.data, s.counts, s.displs, mpi_type(s.flat.dtype)])
            for group in self._shards
            for s in group
            if s.flat.size
        ]
        MPI.Request.Waitall(requests)

    # -- state dicts ----------------------------------------------------------------
    def consolidate_state_dict(self, to: int | None = 0) -> None:
        """Gather the full optimizer state onto rank ``to`` (collective).

        Afterwards, on rank ``to`` (on every rank for ``to=None``), :meth:`state_dict`
        returns it and ``state[p]`` holds it, until the next step. The gathered
        state needs the memory of the full state on the receiving rank(s).
        """
        comm = self.comm
        if to is not None and (
            isinstance(to, bool) or not isinstance(to, (int, np.integer)) or not 0 <= to < comm.size
        ):
            raise ValueError(f"to must be a rank of the communicator (0 to {comm.size - 1}) or None, got to={to!r}")
        receive = to is None or comm.rank == to
        shards = [s for group in self._shards for s in group]
        meta = []
        for s in shards:
            if s.inner is None:
                meta.append(((), {}))
                continue
            inner_flat = self._inner_flat(s)
            entries = {}
            for j, (i, _, _) in enumerate(s.pieces):
                st = self.optim.state.get(inner_flat.params[j]) if self.optim is not None else None
                if st:
                    scalars = {k: float(v) for k, v in st.items() if np.ndim(v) == 0}
                    entries[i] = (list(st), scalars)
            meta.append((tuple(inner_flat.state), entries))
        everyone = comm.allgather(meta) if comm.size > 1 else [meta]

        index: dict[int, int] = {}
        for group in self.param_groups:
            for p in group["params"]:
                index.setdefault(id(p), len(index))
        state: defaultdict[Parameter, dict[str, Any]] = defaultdict(dict)
        for k, s in enumerate(shards):
            names = list(dict.fromkeys(name for rank_meta in everyone for name in rank_meta[k][0]))
            full = {}
            for name in names:
                mine = self._inner_flat(s).state.get(name) if s.inner is not None else None
                send = mine if mine is not None else np.zeros(s.hi - s.lo, s.flat.dtype)
                recv = np.empty(s.flat.size, s.flat.dtype) if receive else None
                if comm.size == 1:
                    recv[...] = send
                elif to is None:
                    comm.Allgatherv(send, [recv, s.counts, s.displs, mpi_type(s.flat.dtype)])
                else:
                    comm.Gatherv(send, [recv, s.counts, s.displs, mpi_type(s.flat.dtype)] if receive else None, to)
                full[name] = recv
            if not receive:
                continue
            owners: dict[int, tuple[list[str], dict[str, float]]] = {}
            for rank_meta in everyone:
                for i, entry in rank_meta[k][1].items():
                    owners.setdefault(i, entry)
            for i in sorted(owners):
                keys, scalars = owners[i]
                p = s.flat.params[i]
                a, b = s.flat.offsets[i], s.flat.offsets[i + 1]
                state[p] = {
                    key: np.array(scalars[key]) if key in scalars else full[key][a:b].reshape(p.shape) for key in keys
                }
        self.state = state if receive else defaultdict(dict)
        self._consolidated = receive

    def state_dict(self) -> dict[str, Any]:
        """The full state, in torch's layout, as gathered by :meth:`consolidate_state_dict`.

        With one rank it consolidates by itself; otherwise call
        ``consolidate_state_dict(to=r)`` on every rank first, then this on rank ``r``.
        """
        if not self._consolidated:
            if self.comm.size == 1:
                self.consolidate_state_dict(to=0)
            else:
                raise RuntimeError(
                    f"rank {self.comm.rank} holds no consolidated state: call consolidate_state_dict(to=rank) on "
                    "every rank first (after the last step), then state_dict() on that rank"
                )
        return super().state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a full state dict (from :meth:`state_dict`, or a single-process optimizer's).

        Every rank passes the same full dict and keeps its shard of it; it may
        come from any number of ranks. Everything is validated before anything
        changes. No communication.
        """
        state_dict = self._run_load_pre_hooks(state_dict)
        for key in ("state", "param_groups"):
            if key not in state_dict:
                raise ValueError(f"state_dict is missing the key {key!r}")
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)) or not isinstance(saved_state, dict):
            raise ValueError("state_dict['param_groups'] must be a list and state_dict['state'] a dict")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has a different number of parameter groups "
                f"({len(saved_groups)} saved, {len(self.param_groups)} in this optimizer)"
            )
        id_map: dict[Any, Parameter] = {}
        new_groups = []
        for gi, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if not isinstance(saved, dict) or "params" not in saved:
                raise ValueError(f"param_groups[{gi}] must be a dict with a 'params' entry")
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"loaded state dict contains a parameter group that doesn't match the size of "
                    f"optimizer's group: param_groups[{gi}] has {len(saved['params'])} params saved, "
                    f"{len(group['params'])} here"
                )
            for k, p in zip(saved["params"], group["params"]):
                id_map[k] = p
            new_group = copy.deepcopy({k: v for k, v in saved.items() if k != "params"})
            for name, default in self.defaults.items():
                if name not in new_group:
                    new_group[name] = group.get(name, default)
            try:
                self._validate_hparams(new_group)
            except (TypeError, ValueError) as e:
                raise ValueError(f"param_groups[{gi}] of the loaded state dict: {e}") from None
            new_groups.append(new_group)

        # Validate every entry (the same checks on every rank); keep only this rank's pieces.
        wanted = {id(s.flat.params[i]) for _, s in self._inner_shards for i, _, _ in s.pieces}
        staged: dict[int, dict[str, Any]] = {}
        for k, entry in saved_state.items():
            if k not in id_map:
                raise ValueError(f"state_dict['state'] has an entry for parameter {k!r}, which no group lists")
            p = id_map[k]
            if not isinstance(entry, dict):
                raise ValueError(f"state of parameter {k!r} must be a dict, got {type(entry).__name__}")
            values = {name: self._import_state_value(k, p, name, v) for name, v in entry.items()}
            if id(p) in wanted:
                staged[id(p)] = values

        if self.optim is not None:
            inner_state: dict[int, dict[str, Any]] = {}
            inner_groups = []
            n = 0
            for gi, s in self._inner_shards:
                ids = []
                for i, lo, hi in s.pieces:
                    values = staged.get(id(s.flat.params[i]))
                    if values:
                        a = s.flat.offsets[i]
                        inner_state[n] = {
                            name: v if name == "step" or name in self._scalar_keys else v.reshape(-1)[lo - a : hi - a]
                            for name, v in values.items()
                        }
                    ids.append(n)
                    n += 1
                inner_group = {k: v for k, v in new_groups[gi].items() if k not in _NOT_HYPERPARAMS}
                inner_group["params"] = ids
                inner_groups.append(inner_group)
            self.optim.load_state_dict({"state": inner_state, "param_groups": inner_groups})
        for group, new_group in zip(self.param_groups, new_groups):
            params, names = group["params"], group.get("param_names")
            group.clear()
            group.update(new_group)
            group["params"] = params
            if names is not None and "param_names" not in group:
                group["param_names"] = names
        self.state = defaultdict(dict)
        self._consolidated = False
        self._run_load_post_hooks()

    def __repr__(self) -> str:
        body = super().__repr__().split("\n", 1)[1]
        return f"ZeroRedundancyOptimizer ({self.optimizer_class.__name__}, ranks={self.comm.size}\n{body}"
