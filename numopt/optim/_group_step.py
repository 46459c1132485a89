"""A step count kept per parameter group, as pytorch-optimizer's classes keep it."""

from __future__ import annotations

from typing import Any


class GroupStepCount:
    """Mixin for an :class:`~numopt.optimizer.Optimizer` whose reference counts steps per group.

    pytorch-optimizer's ``Lion``, ``ADOPT`` and ``AdEMAMix`` keep no per-parameter ``'step'``: a ``step()``
    call adds one to ``param_groups[i]['step']`` (created at the first call) and the rule reads the
    new count. ``_update`` reads it through :meth:`_count_step`, which also notes the group as
    updated (``self._stepped``); the counts move once every group has
    been updated, so a step that raises leaves them as they were.

    One difference, numopt's rule for every optimizer: a ``step()`` in
    which a group has no gradient at all changes nothing, its count included; the reference counts
    that call for the group. The counts differ only after such a call.
    Classes using this set ``_tracks_step = False``.
    """

    param_groups: list[dict[str, Any]]
    _checked_hparams: dict[int, dict[str, Any]]

    @staticmethod
    def _group_step(group: dict[str, Any]) -> int:
        """The group's step count during this step (from 1)."""
        return group.get("step", 0) + 1

    def _count_step(self, group: dict[str, Any], run: Any) -> int:
        """The group's count for this step (see ``Optimizer._count_step``); the group is noted as updated."""
        self._stepped.add(id(group))
        if run.bf16:  # bfloat16 parameters count their own steps too (stochastic rounding reads them)
            run.advance()
        return self._group_step(group)

    def _update_all(self) -> None:
        self._stepped: set[int] = set()  # the groups updated by this step (their _update ran)
        super()._update_all()  # type: ignore[misc]
        for group in self.param_groups:
            if id(group) in self._stepped:
                group["step"] = group.get("step", 0) + 1
                checked = self._checked_hparams.get(id(group))
                if checked is not None:  # a count, not an edit: no re-validation at the next step
                    checked["step"] = group["step"]
