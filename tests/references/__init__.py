"""References for optimizers torch does not have.

A row of ``tests/optim_db.py`` is checked against its ``reference``: ``torch.optim``'s
class of the same name unless it names another. Where torch has no such optimizer,
the reference is either a class of a third-party package pinned in the ``test``
extras of ``pyproject.toml`` (``reference="package.Class"``), or a small class here,
written with plain torch ops after the paper or the authors' code, and named by
``reference=in_tests("Class")``. A class here works like a ``torch.optim`` optimizer
(``step``, ``param_groups``, ``state``, ``state_dict``) and keeps the state entries
numopt keeps, so the parity tests can compare them entry by entry.
"""
