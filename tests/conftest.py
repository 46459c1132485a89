from __future__ import annotations


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    """Print the largest error against the references seen by the parity tests, per comparison kind."""
    try:
        from .optim_db import OPTIM_DB
        from .test_parity import MAX_REL_ERR
    except ImportError:
        return
    kinds = {c.id: c.compare for c in OPTIM_DB}
    for kind, what in (("elementwise", "relative error"), ("displacement", "Frobenius-relative displacement error")):
        errors = {k: v for k, v in MAX_REL_ERR.items() if kinds.get(k, "elementwise") == kind}
        if errors:
            worst = max(errors.items(), key=lambda kv: kv[1])
            terminalreporter.write_line(
                f"parity vs the references ({kind}): {len(errors)} rows, max {what} {worst[1]:.3g} ({worst[0]})"
            )
