"""A tracker's report counts for closures only while the parameters it measured are kept: at least the 8 newest
rounds, and every round of the last minute within a byte budget, so a slow tracker's reports still count."""

from __future__ import annotations

import numpy as np

from mlitb.master import closure_record
from mlitb.master.closure_record import ClosureRecord


def rounds_sent(record: ClosureRecord, now: list[float], count: int, period_s: float, floats: int) -> None:
    for r in range(count):
        now[0] = r * period_s
        record.broadcast(r, np.full(floats, r, np.float32))


def test_a_report_of_weights_sent_many_short_rounds_ago_still_counts():
    now = [0.0]
    record = ClosureRecord(0, np.zeros(1000, np.float32), np.zeros(1000, np.float32), clock=lambda: now[0])
    rounds_sent(record, now, 40, period_s=1.0, floats=1000)  # a tracker 30 rounds behind at T = 1 s
    assert record.params_of(9)[0] == 9
    record.evaluation(9, 0.2, 10_000)
    assert record.evaluated is not None and record.evaluated[0] == 9 and record.evaluated[3][0] == 9


def test_rounds_older_than_the_time_window_are_forgotten_but_never_the_newest_eight():
    now = [0.0]
    record = ClosureRecord(0, np.zeros(10, np.float32), np.zeros(10, np.float32), clock=lambda: now[0])
    rounds_sent(record, now, 100, period_s=10.0, floats=10)  # 10 s rounds: the minute holds 7 of them
    kept = [r for r in range(100) if record.params_of(r) is not None]
    assert kept == list(range(100 - closure_record.ROUNDS_REMEMBERED, 100))


def test_the_byte_budget_bounds_what_a_large_network_keeps():
    now = [0.0]
    floats = closure_record.BYTES_REMEMBERED // 4 // 4  # a quarter of the budget per round
    record = ClosureRecord(0, np.zeros(1, np.float32), np.zeros(1, np.float32), clock=lambda: now[0])
    rounds_sent(record, now, 30, period_s=0.5, floats=floats)
    kept = [r for r in range(30) if record.params_of(r) is not None]
    assert kept == list(range(30 - closure_record.ROUNDS_REMEMBERED, 30))  # the minimum, not the minute's 30
    small = ClosureRecord(0, np.zeros(1, np.float32), np.zeros(1, np.float32), clock=lambda: now[0])
    rounds_sent(small, now, 30, period_s=0.5, floats=floats // 8)  # 1/32 of the budget each: all 30 fit
    assert all(small.params_of(r) is not None for r in range(30))
