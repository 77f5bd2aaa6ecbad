"""Work-time margins follow each trainer's measured timing (issue 14): its latency estimate, and the median and
spread of how far its compute ran past its work time; before its first result, one mini-batch at its rate and
5% of T."""

import pytest

from mlitb.master import scheduler
from mlitb.master.scheduler import Client
from mlitb.master.transport import MemoryLink

PERIOD_S = 2.0


def trainer() -> Client:
    return Client(id=1, role="trainer", backend="x", link=MemoryLink())


def answer(c: Client, overshoot_ms: float, latency_ms: float, samples: int = 64) -> int:
    """One round: the trainer gets its work time, computes it plus `overshoot_ms` and answers `latency_ms`
    later; returns the work time it was given."""
    c.work_ms = scheduler.work_ms_for(c, PERIOD_S, 32, 50)
    compute = c.work_ms + overshoot_ms
    scheduler.observe(c, samples, int(compute), compute + latency_ms, 10**6)
    return c.work_ms


def test_a_trainer_that_checks_its_clock_between_sub_batches_works_over_90_percent_of_t_minus_its_round_trip():
    c = trainer()
    works = [answer(c, overshoot_ms=3, latency_ms=40) for _ in range(12)]
    assert works[-1] >= 0.9 * (2000 - 40)
    assert works[-1] == pytest.approx(2000 - 40 - 3 - 100, abs=2)  # latency, its overshoot, the floor (5% of T)


def test_a_slow_trainer_that_fills_its_work_time_loses_no_mini_batch():
    slow, fast = trainer(), trainer()
    for _ in range(12):
        w_slow = answer(slow, overshoot_ms=5, latency_ms=40, samples=4)  # 2 samples/s: one batch would be 16 s
        w_fast = answer(fast, overshoot_ms=5, latency_ms=40, samples=4000)
    assert w_slow == w_fast >= 0.9 * (2000 - 40)


def test_a_trainer_that_finishes_whole_batches_keeps_back_enough_that_no_result_is_late():
    c = trainer()
    pattern = [50, 350, 200, 400, 0, 300, 100, 250]  # up to one 400 ms batch past its work time
    for _ in range(scheduler.TIMING_WINDOW):
        answer(c, pattern[_ % 8], latency_ms=40)
    for k in range(24):
        overshoot = pattern[k % 8]
        assert answer(c, overshoot, latency_ms=40) + overshoot + 40 <= 2000


def test_one_slow_first_round_does_not_cost_the_following_rounds_their_work_time():
    c = trainer()
    answer(c, overshoot_ms=700, latency_ms=300)  # kernels compiled, data still arriving
    works = [answer(c, overshoot_ms=3, latency_ms=40) for _ in range(6)]
    assert works[-1] >= 0.9 * (2000 - 40)


def test_a_trainer_that_slows_for_good_gets_less_work_within_half_the_window():
    c = trainer()
    for _ in range(scheduler.TIMING_WINDOW):
        before = answer(c, overshoot_ms=3, latency_ms=40)
    works = [answer(c, overshoot_ms=300, latency_ms=40) for _ in range(scheduler.TIMING_WINDOW // 2 + 1)]
    assert works[-1] <= before - 290


def test_jittery_latency_costs_its_peaks_and_one_spike_is_taken_in_at_once_but_only_once():
    steady, jittery, spiky = trainer(), trainer(), trainer()
    for k in range(16):
        w_steady = answer(steady, 3, 40)
        w_jittery = answer(jittery, 3, 40 + (60 if k % 2 else 0))
        answer(spiky, 3, 400 if k == 15 else 40)
    w_spiky = scheduler.work_ms_for(spiky, PERIOD_S, 32, 50)
    assert w_jittery < w_steady - 40  # its latency estimate rises to each 100 ms peak at once
    # the spike raised the latency estimate at once, and nothing else
    assert w_steady - 400 < w_spiky < w_steady - 300


def test_before_the_first_result_one_batch_at_the_measured_rate_and_five_percent_of_t_are_kept_back():
    c = trainer()
    c.rate_sps, c.latency_ms = 40.0, 50.0
    assert scheduler.work_ms_for(c, PERIOD_S, 32, 50) == 2000 - 50 - 800 - 100


def test_the_margin_never_pushes_work_below_the_minimum_nor_above_t():
    c = trainer()
    for overshoot in (0, 1e6):
        for _ in range(3):
            w = answer(c, overshoot_ms=overshoot, latency_ms=0)
            assert 50 <= w <= 2000
