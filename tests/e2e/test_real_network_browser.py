"""A CIFAR-size network (issue 14) trains in a real headless browser, and its slow trainer fills its work time.

One wasm trainer computes about a third of a 2 s period per 32-batch on this machine: a slow trainer. It
checks its clock between sub-batches, so the master gives it nearly all of T minus its round trip.
"""

from __future__ import annotations

import statistics

import pytest

from project_run import CIFAR_SIZE_NETWORK, Run, colour_zip, create_project, run_trainers

pytestmark = pytest.mark.browser

ROUNDS = 20


@pytest.fixture(scope="module")
def cifar_run(server) -> Run:
    p = create_project(server.url, "cifar-size", CIFAR_SIZE_NETWORK,
                       {"period_s": 2, "learning_rate": 0.001, "batch_size": 32}, colour_zip(60))
    return run_trainers(server.url, p, trainers=1, rounds=ROUNDS)


def test_a_cifar_size_project_trains_in_a_real_browser_and_its_loss_falls(cifar_run):
    losses = [r["loss"] for r in cifar_run.metrics]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.8 * first, losses


def test_a_slow_trainer_works_most_of_t_minus_its_round_trip_and_is_rarely_late(cifar_run):
    # After the start-up rounds (kernels compiled, speed first measured). The target: >= 90%. Measured
    # here: 0.945-0.949 in every round of two runs, since the vote bound's reference gradient no longer stops the
    # server's loop at every update (before, the round trip swung by 100-300 ms and medians were 0.85-0.99; the
    # scheduler before issue 14 gave this trainer ~1% and was late in 3 of 16 rounds: bench/work_fill.py).
    fill = cifar_run.work_fill(skip=5)
    assert len(fill) >= ROUNDS - 6
    assert statistics.median(fill) >= 0.9, fill
    assert sum(r["late"] for r in cifar_run.metrics[2:]) <= 1, [r["late"] for r in cifar_run.metrics]
