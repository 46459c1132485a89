"""Schedule-Free SGD and AdamW (``schedulefree.SGDScheduleFree``, ``schedulefree.AdamWScheduleFree``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._arguments import constructor
from .._validation import check_betas, check_bool, check_nonnegative, check_number
from ..flat import FlatBuffer, Run
from ..kernels.schedulefree import adamw_schedulefree_step, schedule_scalars, schedulefree_swap, sgd_schedulefree_step
from ..optimizer import Optimizer, StateTensor

__all__ = ["AdamWScheduleFree", "SGDScheduleFree"]

#: the per-group scalars the reference keeps in each group, with their initial values (its order)
_GROUP_SCALARS = {"k": 0, "train_mode": False, "weight_sum": 0.0, "lr_max": -1.0, "scheduled_lr": 0.0}


#: the constructor arguments both Schedule-Free classes document alike (``%(schedule_args)s``)
_SCHEDULE_ARGS = """warmup_steps : int, default 0
        Linear warmup of the learning rate over this many steps (>= 0).
    r : float, default 0
        Polynomial weighting of the average: step ``k`` weighs ``(k + 1)**r``.
    weight_lr_power : float, default 2
        The average's weights also scale with ``lr_max**weight_lr_power`` (>= 0; 0: no weighting).
    %(foreach)s"""


class _ScheduleFree(Optimizer):
    """What both Schedule-Free optimizers share: the group scalars, ``train()`` / ``eval()``, the step's schedule."""

    _tracks_step = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if cls.__doc__:
            cls.__doc__ = cls.__doc__.replace("%(schedule_args)s", _SCHEDULE_ARGS)
        super().__init_subclass__(**kwargs)

    def _construct(self, params: Any, arguments: dict[str, Any], **convert: Callable[[Any], Any]) -> None:
        """The groups also keep the reference's per-group scalars (``_GROUP_SCALARS``), before ``foreach``."""
        arguments = dict(arguments)
        foreach = arguments.pop("foreach")
        super()._construct(params, {**arguments, **_GROUP_SCALARS, "foreach": foreach}, **convert)

    def _beta(self, group: dict[str, Any]) -> float:
        """The interpolation constant of ``y`` between ``z`` and ``x`` (SGD's momentum, AdamW's beta1)."""
        raise NotImplementedError

    def _validate_schedule(self, h: dict[str, Any]) -> None:
        check_nonnegative(h, "lr", "weight_decay", "warmup_steps")
        check_number("r", h["r"], label="r value")
        check_number("weight_lr_power", h["weight_lr_power"], low=0.0, label="weight_lr_power value")
        check_bool("train_mode", h["train_mode"])

    def _record(self, group: dict[str, Any], **values: Any) -> None:
        """Set the group's own scalars (a count, not an edit: no re-validation at the next step)."""
        group.update(values)
        checked = self._checked_hparams.get(id(group))
        if checked is not None:
            checked.update(values)

    # -- modes ------------------------------------------------------------------------------------
    def train(self) -> None:
        """Put the parameters at ``y``, where gradients are taken; ``step()`` needs train mode.

        Groups already in train mode are left as they are; parameters without state
        (never stepped) do not move.
        """
        self._switch(True)

    def eval(self) -> None:
        """Put the parameters at the average ``x``, to evaluate or save the model.

        Groups already in eval mode are left as they are; parameters without state
        (never stepped) do not move.
        """
        self._switch(False)

    def _switch(self, to_train: bool) -> None:
        for group, flats in zip(self.param_groups, self._flats):
            if bool(group["train_mode"]) == to_train:
                continue
            beta = self._beta(group)
            weight = 1 - beta if to_train else 1 - 1 / beta
            for flat in flats:
                for run in _runs_with_state(flat):
                    run.pick(schedulefree_swap)(run.data, run.state["z"], weight)
            self._record(group, train_mode=to_train)

    # -- the step ---------------------------------------------------------------------------------
    def _check_hparam_edits(self) -> None:
        # the first thing a step does (before the closure): refuse a step in eval mode, as the reference does
        # (which reads the first group's mode alone)
        if not self.param_groups[0]["train_mode"]:
            raise RuntimeError(
                f"{type(self).__name__} was not in train mode when step() was called: call optimizer.train() "
                "before training steps and optimizer.eval() before evaluating or saving"
            )
        super()._check_hparam_edits()

    def _update_all(self) -> None:
        # the schedule advances for every group at every step, with or without gradients (as the reference)
        self._scalars: dict[int, dict[str, float]] = {}
        for group in self.param_groups:
            k = group["k"]
            lr, lr_max, weight_sum, ckp1 = schedule_scalars(
                float(group["lr"]),
                k,
                group["warmup_steps"],
                group["r"],
                group["weight_lr_power"],
                group["lr_max"],
                group["weight_sum"],
            )
            self._record(group, scheduled_lr=lr, lr_max=lr_max, weight_sum=weight_sum)
            self._scalars[id(group)] = {"lr": lr, "ckp1": ckp1, **self._extra_scalars(group, k)}
        try:
            super()._update_all()
        finally:
            del self._scalars
        for group in self.param_groups:
            self._record(group, k=group["k"] + 1)

    def _extra_scalars(self, group: dict[str, Any], k: Any) -> dict[str, float]:
        """The rule's other scalars that follow the schedule's step ``k`` (from 0)."""
        return {}

    def _step_scalars(self, group: dict[str, Any], step: float) -> dict[str, Any]:
        # the scheduled lr (not the group's) and the averaging weight, formed once per group and step
        return self._scalars[id(group)]


def _runs_with_state(flat: FlatBuffer) -> list[Run]:
    """The ranges of ``flat``'s parameters that have state (stepped at least once, or loaded), as runs."""
    if "z" not in flat.state:
        return []
    runs = []
    n = len(flat.params)
    i = 0
    while i < n:
        if not flat.stepped(i):
            i += 1
            continue
        j = i + 1
        while j < n and flat.stepped(j):
            j += 1
        runs.append(Run(flat, i, j))
        i = j
    return runs


class SGDScheduleFree(_ScheduleFree):
    r"""Schedule-Free SGD: no learning-rate schedule, an average of the iterates instead.

    Two sequences per parameter: ``z`` (plain SGD steps) and ``x`` (a weighted average
    of the ``z``\ s); gradients are taken at ``y = lerp(z, x, momentum)``, the value the
    parameters hold in train mode. At step ``k`` (from 0), with gradient :math:`g` at ``y``::

        lr_k   = lr * min(1, (k + 1) / warmup_steps)
        lr_max = max(lr_max, lr_k)
        w_k    = (k + 1)**r * lr_max**weight_lr_power;   ckp1 = w_k / sum(w_0..w_k)
        g      = g + weight_decay * y                   (weight_decay != 0)
        y      = lerp(y, z, ckp1) + lr_k * (momentum * (1 - ckp1) - 1) * g
        z      = z - lr_k * g

    ``eval()`` moves the parameters to ``x = lerp(y, z, 1 - 1/momentum)`` and ``train()``
    back to ``y = lerp(x, z, 1 - momentum)``. As in the reference, the optimizer starts
    in eval mode: call ``train()`` before the first ``step()`` (a step in eval mode
    raises), and ``eval()`` before evaluating the model or saving a checkpoint.

    Same names, defaults and arithmetic as ``schedulefree.SGDScheduleFree``
    (schedulefree 1.4.1), its reference in the tests. Unlike the reference, the
    gradients are left as they are (the reference adds the weight decay into them).

    Parameters
    ----------
    %(params)s
    lr : float, default 1.0
        Learning rate (>= 0); Schedule-Free SGD takes larger ones than SGD (1-10x).
    momentum : float, default 0.9
        Interpolation constant of ``y`` between ``z`` and ``x``, in (0, 1).
    weight_decay : float, default 0
        L2 penalty, taken at ``y`` (>= 0).
    %(schedule_args)s

    State
    -----
    ``'z'`` per parameter once it has been stepped. As in the reference, each group
    keeps the schedule's scalars: ``k`` (steps taken), ``train_mode``, ``weight_sum``,
    ``lr_max`` and ``scheduled_lr`` (the last step's learning rate, for logging), so
    ``state_dict()`` and pickles carry them.

    %(example_start)s
    >>> opt = numopt.SGDScheduleFree([w], lr=0.1)
    >>> opt.train()         # steps are taken in train mode
    >>> w.grad = np.ones(3, np.float32)
    >>> opt.step()
    >>> w.data.round(6)     # y moved by lr * (momentum * (1 - 1) - 1) = -0.1
    array([0.9, 0.9, 0.9], dtype=float32)
    >>> opt.eval()          # the average x (the first step's z) for evaluation
    >>> w.data.round(6)
    array([0.9, 0.9, 0.9], dtype=float32)

    References
    ----------
    Defazio, Yang, Mehta, Mishchenko, Khaled and Cutkosky, "The Road Less Scheduled",
    NeurIPS 2024.
    """

    rule = sgd_schedulefree_step
    state_tensors = (StateTensor("z"),)
    bench_kwargs = {"lr": 1e-3}
    reference = "schedulefree.SGDScheduleFree"

    __init__ = constructor(
        "lr=1.0, momentum=0.9, weight_decay=0, warmup_steps=0, r=0.0, weight_lr_power=2, foreach=True"
    )

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        self._validate_schedule(h)
        check_number("momentum", h["momentum"], low=0.0, high=1.0, low_open=True, high_open=True)

    def _beta(self, group: dict[str, Any]) -> float:
        return float(group["momentum"])


class AdamWScheduleFree(_ScheduleFree):
    r"""Schedule-Free AdamW: Adam-normalized steps, an average of the iterates instead of a schedule.

    As :class:`SGDScheduleFree`, with the gradient normalized by Adam's second moment
    and ``beta1`` as the interpolation constant. At step ``k`` (from 0)::

        lr_k   = lr * min(1, (k + 1) / warmup_steps)
        lr_max = max(lr_max, lr_k)
        w_k    = (k + 1)**r * lr_max**weight_lr_power;   ckp1 = w_k / sum(w_0..w_k)
        v      = beta2 * v + (1 - beta2) * g**2
        g      = g / (sqrt(v / (1 - beta2**(k + 1))) + eps)
        g      = g + weight_decay * y                   (weight_decay != 0: decay at y)
        y      = lerp(y, z, ckp1) + lr_k * (beta1 * (1 - ckp1) - 1) * g
        z      = z - lr_k * g

    ``eval()`` moves the parameters to ``x = lerp(y, z, 1 - 1/beta1)`` and ``train()``
    back to ``y = lerp(x, z, 1 - beta1)``. As in the reference, the optimizer starts
    in eval mode: call ``train()`` before the first ``step()`` (a step in eval mode
    raises), and ``eval()`` before evaluating the model or saving a checkpoint.

    Same names, defaults and arithmetic as ``schedulefree.AdamWScheduleFree``
    (schedulefree 1.4.1), its reference in the tests. Unlike the reference, the
    gradients are left as they are (the reference normalizes them in place), and
    ``betas[0] == 0`` is refused (the reference's ``eval()`` divides by it).

    Parameters
    ----------
    %(params)s
    %(lr)s
    betas : (float, float), default (0.9, 0.999)
        ``beta1``, the interpolation constant of ``y`` between ``z`` and ``x``, in (0, 1);
        ``beta2``, the decay rate of the second moment, in [0, 1).
    eps : float, default 1e-8
        Added to the denominator (>= 0).
    weight_decay : float, default 0
        Weight decay, taken at ``y`` and added to the normalized gradient (>= 0).
    %(schedule_args)s

    State
    -----
    ``'z'`` and ``'exp_avg_sq'`` per parameter once it has been stepped; each group
    keeps ``k``, ``train_mode``, ``weight_sum``, ``lr_max`` and ``scheduled_lr``, as in
    the reference.

    %(example_start)s
    >>> opt = numopt.AdamWScheduleFree([w], lr=0.1)
    >>> opt.train()
    >>> w.grad = np.array([1.0, -2.0, 0.0], np.float32)
    >>> opt.step()          # the first step moves each element by lr against the gradient's sign
    >>> w.data.round(6)
    array([0.9, 1.1, 1. ], dtype=float32)

    References
    ----------
    Defazio, Yang, Mehta, Mishchenko, Khaled and Cutkosky, "The Road Less Scheduled",
    NeurIPS 2024.
    """

    rule = adamw_schedulefree_step
    state_tensors = (StateTensor("z"), StateTensor("exp_avg_sq", signed=False))
    bench_kwargs = {"lr": 1e-3}
    reference = "schedulefree.AdamWScheduleFree"

    __init__ = constructor(
        "lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, warmup_steps=0, r=0.0, weight_lr_power=2.0,"
        " foreach=True",
        convert={"betas": tuple},
    )

    def _validate_hparams(self, h: dict[str, Any]) -> None:
        self._validate_schedule(h)
        beta1, _ = check_betas(h["betas"])
        if beta1 == 0:
            raise ValueError(
                f"Invalid beta parameter at index 0: {h['betas'][0]!r} (betas[0] must be > 0: eval() divides by it)"
            )
        check_nonnegative(h, "eps")

    def _beta(self, group: dict[str, Any]) -> float:
        return float(group["betas"][0])

    def _extra_scalars(self, group: dict[str, Any], k: Any) -> dict[str, float]:
        return {"bias_correction2": 1 - float(group["betas"][1]) ** (k + 1)}
