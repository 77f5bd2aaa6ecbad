"""Fuzz tests' shared tallies, printed in pytest's terminal summary (with or without -s)."""

from __future__ import annotations

from collections import Counter

import pytest

TALLIES: dict[str, Counter] = {}


@pytest.fixture(scope="session")
def tally():
    """`tally(name)` is a Counter of outcomes for one fuzz target, reported at the end of the run."""
    return lambda name: TALLIES.setdefault(name, Counter())


def pytest_terminal_summary(terminalreporter):
    if not TALLIES:
        return
    terminalreporter.section("fuzz counts")
    for name, counts in TALLIES.items():
        total = sum(counts.values())
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        terminalreporter.write_line(f"{name}: {total} ({detail})")
