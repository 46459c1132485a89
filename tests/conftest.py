from __future__ import annotations


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    """Print the largest relative error against torch seen by the parity tests."""
    try:
        from .test_parity import MAX_REL_ERR
    except ImportError:
        return
    if MAX_REL_ERR:
        worst = max(MAX_REL_ERR.items(), key=lambda kv: kv[1])
        terminalreporter.write_line(
            f"parity vs the references: {len(MAX_REL_ERR)} rows, max relative error {worst[1]:.3g} ({worst[0]})"
        )
