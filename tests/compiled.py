"""Signatures compiled for a kernel, counting its serial twin (used for small runs)."""

from __future__ import annotations


def signatures(kernel) -> list:
    twin = getattr(kernel, "serial", None)
    return [*kernel.signatures, *(twin.signatures if twin is not None else [])]
