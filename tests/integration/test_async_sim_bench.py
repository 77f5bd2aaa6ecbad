"""bench/async.py's simulated fleets (bench/async_sim.py) on the virtual clock: both networks learn in both modes,
and a run reports its error curve, so the bench's figures come from training that really happened."""

from __future__ import annotations

import pytest

from bench import async_sim
from tests.mnist_softmax import mnist_subset


@pytest.mark.parametrize("network", ["softmax", "paper"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_simulated_mixed_fleet_learns_and_reports_its_curve(network, mode):
    data = mnist_subset(4000, 300)
    hyper = {"period_s": 1, "learning_rate": 0.05, "mode": mode, **({"buffer_size": 1} if mode == "async" else {})}
    # two trainers of a 10x spread at a median of 150 samples/s: a few thousand NumPy gradients of wall time
    run = async_sim.run(async_sim.sim_run(hyper, data, 10.0, 0.2, 6.0, 0.0, clients=2, median_sps=150.0,
                                          network=network), "virtual")
    first, last = run["points"][0][1], min(e for _, e in run["points"])
    assert first > 0.6 and last < 0.5, run["points"]  # the untrained model is near chance; six updates learn
    assert run["elapsed"] == pytest.approx(6.0, abs=1.01)  # simulated seconds, not wall time
    assert run["updates_per_s"] >= (0.8 if mode == "sync" else 1.5)  # async: an update per result of either trainer
    assert run["staleness"] == 0 if mode == "sync" else run["staleness"] > 0


def test_given_speeds_replace_the_drawn_fleet():
    data = mnist_subset(4000, 300)
    run = async_sim.run(async_sim.sim_run({"period_s": 1, "learning_rate": 0.05}, data, 10.0, 0.0, 4.0, 0.0,
                                          clients=16, network="softmax", speeds=[600.0, 60.0]), "virtual")
    # two trainers (not 16) whose work fills most of each period: 660 samples/s at most
    assert 400 < run["samples_per_s"] <= 660, run


def test_a_trainer_faster_than_its_held_examples_goes_round_them_again():
    data = mnist_subset(4000, 300)  # one trainer holds at most 3,000 (the paper's capacity)
    run = async_sim.run(async_sim.sim_run({"period_s": 1, "learning_rate": 0.05}, data, 1.0, 0.0, 4.0, 0.0,
                                          network="softmax", speeds=[6000.0]), "virtual")
    assert run["samples_per_s"] > 3500, run  # not capped at the 3,000 it holds (a browser trainer is not)
