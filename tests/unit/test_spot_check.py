"""The spot-check wrapper's draw, budget and record: a result too big for the CPU budget is still checked (finished
later, struck out of band), a result that cannot be checked is taken on probation, a keyed volunteer's persisted record makes it established, the tolerance is the network's."""

import random

import numpy as np
import pytest

from mlitb.errors import ErrorCode, MlitbError
from mlitb.model import PAPER_NETWORK, parse_network
from mlitb.training.strategies.base import Result
from mlitb.trust.credit import CreditLedger, VolunteerCredit
from mlitb.trust.spot_check import SpotChecked, SpotCheckPolicy, tolerance_for
from tests.mnist_softmax import SOFTMAX_REGRESSION
from tests.networks import CIFAR


class Taken:
    open_version = None

    def __init__(self):
        self.results, self.refused = [], []

    def on_result(self, result):
        self.results.append(result)

    def on_refused(self, result):
        self.refused.append(result)

    def on_leave(self, client_id):
        pass


class Clocks:
    """Wall and CPU clocks the test moves: recomputing one example costs 1 ms of CPU."""

    def __init__(self):
        self.wall = self.cpu = 0.0


class Job:
    """A recomputation whose answer is `truth`, done in pieces as numpy_net.GradientJob is."""

    def __init__(self, truth: np.ndarray, examples: int, clocks: Clocks):
        self.truth, self.remaining, self.pieces, self.clocks = truth, examples, [], clocks

    def advance(self, examples):
        self.pieces.append(examples)
        self.remaining -= examples
        self.clocks.cpu += examples * 1e-3

    def expected(self):
        assert self.remaining == 0
        return self.truth, 1.0


TRUTH = np.ones(4, np.float32)


def wrapper(ledger, claims, late, policy=SpotCheckPolicy(), p_draw=0.0):
    jobs, clocks = [], Clocks()

    def recompute(result):
        jobs.append(Job(TRUTH, claims[result.client_id], clocks))
        return jobs[-1]

    rng = random.Random()
    rng.random = lambda: p_draw  # every draw below p checks
    spot = SpotChecked(Taken(), ledger, recompute, policy, rng, late_strike=lambda cid, err: late.append((cid, err)),
                       clock=lambda: clocks.wall, cpu_clock=lambda: clocks.cpu)
    return spot, jobs, clocks


def result(client, version, grad):
    return Result(client, version, np.asarray(grad, np.float32), 10, 1.0, 5)


def test_a_result_too_big_for_the_budget_is_finished_later_and_struck_out_of_band():
    ledger = CreditLedger()
    ledger.join(1, "vfaker")
    late = []
    policy = SpotCheckPolicy(cpu_share=0.25, burst_s=0.5, probe_examples=100)  # 1 ms per example: 500 a burst
    spot, jobs, clocks = wrapper(ledger, {1: 1200}, late, policy)
    spot.on_result(result(1, 0, -TRUTH))  # 1,200 examples: the burst pays for 500, the rest waits; taken meanwhile
    assert spot.stats.deferred == 1 and sum(jobs[0].pieces) == 500 and spot.pending == 1 and not late
    clocks.wall += 2.0  # 2 s at a quarter refills the burst (0.5 s); the queue takes it down to half: 250 more
    spot.on_result(result(1, 1, -TRUTH))  # drawn while its own check waits: taken on probation, at a tenth
    assert spot.stats.probation == 1 and sum(jobs[0].pieces) == 750 and not late
    assert [r.samples for r in spot.inner.results] == [10, 1]
    for version in (2, 3):
        clocks.wall += 2.0
        spot.on_result(result(1, version, -TRUTH))
    # the first check ended (1,200 examples): a strike, out of band; the next drawn result is deferred in its turn
    assert [e.code for _, e in late] == [ErrorCode.SPOT_CHECK_FAILED] and ledger.rows["vfaker"].strikes == 1
    refused = []
    for version in range(4, 12):
        clocks.wall += 10.0
        try:
            spot.on_result(result(1, version, TRUTH))
        except MlitbError as err:
            refused.append(err.code)
    # after the second late strike: quarantined, refused
    assert [e.code for _, e in late][:2] == [ErrorCode.SPOT_CHECK_FAILED, ErrorCode.QUARANTINED]
    assert refused and set(refused) == {ErrorCode.QUARANTINED}
    assert ledger.rows["vfaker"].quarantined and spot.stats.unchecked == 0
    assert clocks.cpu <= 0.5 + 0.25 * clocks.wall  # the CPU bound: burst + share of the wall time


def test_a_drawn_result_that_cannot_be_checked_is_taken_on_probation_and_a_small_check_passes_the_queue():
    ledger = CreditLedger()
    spot, jobs, clocks = wrapper(ledger, {1: 10_000, 2: 10_000, 3: 10_000, 4: 20}, [], SpotCheckPolicy(max_pending=2))
    spot.on_result(result(1, 0, TRUTH))
    spot.on_result(result(2, 0, TRUTH))
    spot.on_result(result(3, 0, TRUTH))  # the queue is full: taken at a tenth of its samples, its sum scaled alike
    assert spot.stats.probation == 1 and spot.pending == 2
    assert spot.inner.results[-1].samples == 1 and spot.inner.results[-1].grad == pytest.approx(TRUTH / 10)
    clocks.wall += 2.0  # the queue's head takes the refill down to half the burst; the rest is for checks that fit now
    spot.on_result(result(4, 0, TRUTH))  # a small check that fits the budget runs at once, past the queue
    assert spot.stats.checks == 1 and spot.pending == 2


def test_a_small_result_is_checked_at_once_and_an_honest_one_passes():
    ledger = CreditLedger()
    late = []
    spot, jobs, _ = wrapper(ledger, {1: 50, 2: 50}, late)
    spot.on_result(result(1, 0, TRUTH * (1 + 1e-6)))
    with pytest.raises(MlitbError) as err:
        spot.on_result(result(2, 0, TRUTH * 1.01))
    assert err.value.code == ErrorCode.SPOT_CHECK_FAILED and spot.stats.checks == 2 and spot.stats.deferred == 0
    assert [r.client_id for r in spot.inner.results] == [1] and [r.client_id for r in spot.inner.refused] == [2]
    assert not late and spot.stats.worst == pytest.approx(1e-6, rel=0.1)


def test_an_established_volunteer_is_drawn_as_often_as_a_newcomer():
    # a record used to lower the rate to 2%, which left a volunteer who turns faker once established nearly
    # unchecked; commit-and-sample makes checks cheap enough to draw everyone at 0.9
    ledger = CreditLedger()
    ledger.load([VolunteerCredit("vknown", results=5_000), VolunteerCredit("vstruck", results=500, strikes=1)])
    ledger.join(1, "vknown")
    ledger.join(2, "vstruck")
    ledger.join(3, "vnew")
    spot, jobs, _ = wrapper(ledger, {1: 10, 2: 10, 3: 10}, [], p_draw=0.85)  # just under the 0.9 rate
    for c in (1, 2, 3):
        spot.on_result(result(c, 0, TRUTH))
    assert len(jobs) == 3
    spot, jobs, _ = wrapper(ledger, {1: 10}, [], p_draw=0.95)  # above it: not drawn, whoever it is
    spot.on_result(result(1, 0, TRUTH))
    assert jobs == []


HIDDEN = [{"type": "input", "shape": [28, 28, 1]}, {"type": "flatten"}, {"type": "dense", "units": 8, "activation": "relu"},
          {"type": "dense", "units": 10, "activation": "softmax"}]


def test_the_tolerance_grows_with_the_networks_weighted_layers_and_pools_within_its_cap():
    assert tolerance_for(parse_network(SOFTMAX_REGRESSION)) == pytest.approx(1e-4)
    assert tolerance_for(parse_network(HIDDEN)) == pytest.approx(4e-4)
    assert tolerance_for(parse_network(PAPER_NETWORK)) == pytest.approx(2e-2)  # a pool: tie-breaks differ by engine
    assert tolerance_for(parse_network(CIFAR)) == pytest.approx(2.56e-2)
    deep = parse_network([{"type": "input", "shape": [4]}] + [{"type": "dense", "units": 4}] * 9 + [{"type": "softmax"}])
    assert tolerance_for(deep) == pytest.approx(5e-2)
