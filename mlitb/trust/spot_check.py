"""Spot-check verification: a strategy wrapper that recomputes a random share of results and strikes fakes.

Trainers of a verifiable project (numpy_net.supports: every layer type but dropout above rate 0) from
addresses other than the server's own (`address_limits_exempt`: the demo, local workers and simulated
fleets are trusted) train on the example order the seed in their WORK frame gives (example_order.py) and
report how many examples they used, so the master can recompute any result from the parameters it sent,
the trainer's held ids and the seed. Which results are checked is drawn when the result arrives, so a
trainer cannot know. BOINC's adaptive replication checks new volunteers often and established ones rarely,
because a check costs a whole result; that leaves a volunteer who turns faker once established nearly unchecked
(caught within 50 rounds with probability ~0.09 at a 2% rate). Commit-and-sample (below) makes a check cost one
batch, so every result is drawn at the newcomer's rate whatever the volunteer's record:
- a committed result is drawn with probability `p_committed`, an uncommitted one with `p_uncommitted` (both 0.9)
  and checked whole. Every trainer we ship commits in a verifiable project, so a client that does not pays the
  full rate for it. A keyed volunteer's record (its credit row, credit.py: results, strikes) persists with its key
  across connections and restarts; an anonymous connection starts new every time;
- the check recomputes the summed gradient and loss in NumPy (float32). A relative L2 difference of
  the gradient (or a relative difference of the loss) above the network's tolerance (`tolerance_for`,
  measured across engines) is a strike and the result is refused (SPOT_CHECK_FAILED); `quarantine_after`
  strikes quarantine the volunteer (its results are refused from then on, it is shown on the page and
  recorded with its credit);
- the master's CPU is bounded: recomputation spends at most `cpu_share` of its wall-clock time (a budget
  refilled continuously, up to a burst of `burst_s` CPU seconds), so a round of period T costs at most
  cpu_share x T + burst_s CPU seconds whatever the network or fleet. A drawn result whose recomputation
  does not fit what is left is still checked: it is queued and continued with later budget, in order, and
  a mismatch found then is a strike delivered to the volunteer out of band (`late_strike`: an ERROR
  frame; the connection closed on quarantine). So claiming a huge count delays a check but never escapes
  it. At most `max_pending` checks wait, one per volunteer, and a small check that fits the budget runs
  at once rather than behind a big one. A result drawn while it cannot be checked (the queue is full, or
  its volunteer's previous check still waits) is taken on probation: at `probation_weight` of its
  samples (its sum and loss scaled alike, as a cut claim is), and it does not count toward the
  volunteer's record. So claiming big counts or filling the queue with a swarm buys no unchecked weight,
  while an honest newcomer whose checks outrun the master's budget still contributes. Only a result whose WORK cannot be recomputed at all (an exempt or deterministic
  trainer, a newer WORK sent before it arrived) is counted `unchecked`.
Commit-and-sample (commitments.py): a result that carries per-batch commitments (payload kind 6: K projections
of each batch's summed gradient onto +-1 directions from the WORK seed, and its loss) is checked in two steps.
Its commitments are checked against its sum on arrival, every time (O(K P), no recomputation: a mismatch is a
strike like any other), and it is drawn with probability `p_committed` (0.9), whatever the volunteer's record;
a drawn result's check recomputes ONE batch, drawn then, and compares its projections and loss with the
commitment. A check thus costs 1/B of a whole one, so every volunteer can be checked at the newcomer's rate.
Results without commitments (older clients, raw sockets) are checked whole at `p_uncommitted`.
Why 0.9 (bench/spot_checks.py): a volunteer faking a share f of its results is caught within R rounds with
probability 1 - (1 - f p)^R; for f = 10% and R = 50 that is >= 99% only if p >= 0.88.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Callable, Protocol

import numpy as np

from mlitb.errors import ErrorCode, MlitbError
from mlitb.model import Network
from mlitb.training.strategies.base import Result, Strategy, StrategyWrapper
from mlitb.trust.commitments import CommittedWork
from mlitb.trust.credit import CreditLedger


@dataclass(frozen=True)
class SpotCheckPolicy:
    p_committed: float = 0.9  # any volunteer's committed result: a check recomputes one batch (commitments.py)
    p_uncommitted: float = 0.9  # checked whole: what a client that could commit and did not pays
    tolerance: float = 1e-4  # relative, for a wrapper given no per-network tolerance (tolerance_for)
    quarantine_after: int = 2
    cpu_share: float = 0.25  # of the master's wall-clock time, at most, spent recomputing
    burst_s: float = 0.5  # CPU seconds the budget holds at most
    max_pending: int = 32  # checks queued for later budget
    probe_examples: int = 64  # the first piece of recomputation, before the cost per example is measured
    probation_weight: float = 0.1  # of a drawn result's samples while it cannot be checked


@dataclass
class CheckStats:
    checks: int = 0
    failed: int = 0
    unchecked: int = 0  # drawn but not recomputable (no seeded WORK for it)
    deferred: int = 0  # checks that did not fit the budget left and were finished later
    probation: int = 0  # drawn results taken at probation weight: they could not be checked then
    samples: int = 0  # examples recomputed
    cpu_s: float = 0.0  # master thread CPU time spent recomputing
    worst: float = 0.0  # largest relative difference of a passed check
    quarantined: int = 0  # volunteers (or anonymous connections) quarantined
    committed: int = 0  # committed results whose commitments were checked against their sum
    batch_checks: int = 0  # checks of one committed batch (also counted in `checks`)
    commit_cpu_s: float = 0.0  # master CPU checking commitments against sums (directions, projections): O(K P) each


def tolerance_for(network: Network) -> float:
    """The relative L2 difference an honest result of this network may show: 1e-4 for one weighted (dense or conv)
    layer, 4x more per further one, and 2e-2 at least with a maxpool2d; at most 5e-2. Measured honest
    differences (bench/spot_check_tolerance.py, tests/e2e/test_torch_parity.py, test_spot_checks_browser.py):
    softmax regression 4e-7 wasm, 2e-7 torch (tolerance 1e-4); a 256-relu hidden layer 2e-5 wasm, 2e-7 torch
    (4e-4). With pools the engines differ more, and now and then: windows whose values tie exactly in exact
    arithmetic (a saturated stroke of a digit) round differently in another engine's summation order, so the
    window's gradient goes to another cell: a small conv net up to 5.4e-4 wasm (usually ~1e-6), the CIFAR-size
    net up to 8e-4 torch (2e-2: 25x the worst seen). A fake that matters differs by more (the bench prints
    results computed on 90% of the claimed examples and on the previous round's weights)."""
    weighted = sum(layer.type in ("dense", "conv2d") for layer in network.layers)
    tolerance = 1e-4 * 4.0 ** max(weighted - 1, 0)
    if any(layer.type == "maxpool2d" for layer in network.layers):
        tolerance = max(tolerance, 2e-2)
    return min(5e-2, tolerance)


def relative_difference(got: np.ndarray, expected: np.ndarray) -> float:
    scale = max(float(np.linalg.norm(expected)), 1e-12)
    return float(np.linalg.norm(got.astype(np.float64) - expected.astype(np.float64))) / scale


class Recomputation(Protocol):
    """A result's recomputation, done in pieces: `advance(n)` recomputes up to n more examples."""

    remaining: int

    def advance(self, examples: int) -> None: ...

    def expected(self) -> tuple[np.ndarray, float]:
        """(summed gradient, summed loss), once `remaining` is 0."""


# result -> its recomputation, or None: it cannot be recomputed (exempt trainer, or from an older WORK)
Recompute = Callable[[Result], Recomputation | None]


def difference(job: Recomputation, got: np.ndarray, got_loss: float) -> float:
    """The relative difference of a result from its recomputation: the job's own measure where it has one (a
    committed batch, commitments.BatchCheck), else the gradient's relative L2 difference or the loss's."""
    measure = getattr(job, "difference", None)
    if measure is not None:
        return measure(got, got_loss)
    grad, loss = job.expected()
    return max(relative_difference(got, grad), abs(got_loss - loss) / max(abs(loss), 1e-12))


@dataclass
class _Pending:
    job: Recomputation
    client_id: int
    who: object
    grad: np.ndarray
    loss: float
    tolerance: float


class SpotChecked(StrategyWrapper):
    def __init__(self, inner: Strategy, ledger: CreditLedger, recompute: Recompute,
                 policy: SpotCheckPolicy = SpotCheckPolicy(), rng: random.Random | None = None,
                 tolerance: Callable[[], float] | None = None,
                 late_strike: Callable[[int, MlitbError], None] | None = None,
                 committed: Callable[[Result], CommittedWork | None] | None = None,
                 clock: Callable[[], float] = time.monotonic, cpu_clock: Callable[[], float] = time.thread_time):
        self.inner, self.ledger, self.recompute, self.policy = inner, ledger, recompute, policy
        self.rng = rng or random.SystemRandom()  # the trainer must not predict the draw
        self.tolerance = tolerance or (lambda: policy.tolerance)
        self.late_strike = late_strike or (lambda client_id, err: None)
        self.committed = committed or (lambda result: None)  # a committed result's checks (commitments.py)
        self.clock, self.cpu_clock = clock, cpu_clock
        self.stats = CheckStats()
        self._strikes: dict[int, int] = {}  # anonymous clients' strikes
        self._budget_s, self._refilled = policy.burst_s, clock()
        self._s_per_example: float | None = None  # measured CPU cost of one recomputed example
        self._queue: deque[_Pending] = deque()  # checks continued with later budget

    def on_leave(self, client_id: int) -> None:
        self._strikes.pop(client_id, None)
        self.inner.on_leave(client_id)

    def _who(self, client_id: int) -> object:
        row = self.ledger.volunteer_of(client_id)
        return row.volunteer if row is not None else ("client", client_id)

    def quarantined(self, client_id: int) -> bool:
        return self.ledger.quarantined(client_id) or self._strikes.get(client_id, 0) >= self.policy.quarantine_after

    @property
    def pending(self) -> int:
        return len(self._queue)

    def on_result(self, result: Result) -> None:
        self._drain()
        if self.quarantined(result.client_id):
            raise MlitbError(ErrorCode.QUARANTINED, "this volunteer's results failed spot checks; they are ignored")
        who = self._who(result.client_id)
        p = self.policy.p_uncommitted
        started = self.cpu_clock()
        work = self.committed(result) if result.commitment is not None else None
        try:
            if work is not None:  # its commitments against its sum, always; then one batch, at one rate for all
                self.stats.committed += 1
                consistency = work.consistency(result.grad, result.loss_sum)
                self.stats.commit_cpu_s += self.cpu_clock() - started
                self._judge(consistency, self.tolerance(), result.client_id, who,
                            "commitments differ from the result's sum")
                p = self.policy.p_committed
            on_probation = self.rng.random() < p and not self._check(result, who, work)
        except MlitbError as err:  # struck: the wrapped strategy never sees the result, but its work is answered
            if not err.code.value.close:  # (a quarantined volunteer's connection closes: no more work for it)
                self.inner.on_refused(result)
            raise
        if on_probation:
            self.stats.probation += 1
            share = self.policy.probation_weight
            samples = max(1, int(result.samples * share))
            share = samples / result.samples
            self.inner.on_result(replace(result, grad=result.grad * np.float32(share), samples=samples,
                                         loss_sum=result.loss_sum * share))
            return
        self.inner.on_result(result)

    def _drain(self) -> None:
        """Spend the budget refilled since the last result on the queued checks, oldest first."""
        now = self.clock()
        self._budget_s = min(self.policy.burst_s, self._budget_s + (now - self._refilled) * self.policy.cpu_share)
        self._refilled = now
        while self._queue:
            pending = self._queue[0]
            self._advance(pending.job, keep=self.policy.burst_s / 2)  # half the burst stays for checks that fit now
            if pending.job.remaining:
                return
            self._queue.popleft()
            try:
                self._compare(pending.job, pending.grad, pending.loss, pending.client_id, pending.who, pending.tolerance)
            except MlitbError as err:
                self.late_strike(pending.client_id, err)

    def _affordable(self, keep: float = 0.0) -> int:
        """Examples the budget left above `keep` pays for (a probe's worth while the cost per example is unknown)."""
        budget = self._budget_s - keep
        if budget <= 0:
            return 0
        if self._s_per_example is None:
            return self.policy.probe_examples
        return int(budget / max(self._s_per_example, 1e-9))

    def _advance(self, job: Recomputation, keep: float = 0.0) -> None:
        n = min(job.remaining, self._affordable(keep))
        if n <= 0:
            return
        started = self.cpu_clock()
        job.advance(n)
        spent = self.cpu_clock() - started
        self._budget_s -= spent
        self.stats.cpu_s += spent
        self.stats.samples += n
        per = spent / n
        self._s_per_example = per if self._s_per_example is None else 0.7 * self._s_per_example + 0.3 * per

    def _check(self, result: Result, who: object, work: CommittedWork | None = None) -> bool:
        """Check the drawn result now, or queue its check; False: it can be neither (taken on probation). A
        committed result's check is one batch, drawn now, compared with that batch's commitment."""
        got, got_loss = result.grad, result.loss_sum
        if work is not None:
            b = self.rng.randrange(work.batches)
            job, got, got_loss = work.batch(b), work.commitment.projections[b], float(work.commitment.losses[b])
            self.stats.batch_checks += 1
        else:
            job = self.recompute(result)
        if job is None:
            self.stats.unchecked += 1
            return True
        fits = self._s_per_example is not None and job.remaining * self._s_per_example <= self._budget_s
        waiting = sum(p.who == who for p in self._queue)
        if not fits and (waiting or len(self._queue) >= self.policy.max_pending):
            return False  # one waiting check per volunteer: a big claimer waits for its own, and cannot crowd out others
        if not self._queue or fits:  # a small check does not wait behind a big one
            self._advance(job)  # a probe while the cost per example is unknown, else what the budget pays for
            self._advance(job)  # the rest the measured cost says the budget still pays for
            if not job.remaining:
                self._compare(job, got, got_loss, result.client_id, who, self.tolerance())
                return True
        # too big for the budget left: finished later, struck then if it is wrong
        self.stats.deferred += 1
        self._queue.append(_Pending(job, result.client_id, who, np.array(got, np.float32), got_loss, self.tolerance()))
        return True

    def _compare(self, job: Recomputation, got: np.ndarray, got_loss: float, client_id: int, who: object,
                 tolerance: float) -> None:
        self.stats.checks += 1
        diff = difference(job, got, got_loss)
        if diff <= tolerance:
            self.stats.worst = max(self.stats.worst, diff)
            return
        self._judge(diff, tolerance, client_id, who, "recomputed result differs")

    def _judge(self, diff: float, tolerance: float, client_id: int, who: object, what: str) -> None:
        """Nothing when `diff` is within tolerance; else a strike (SPOT_CHECK_FAILED, or QUARANTINED)."""
        if diff <= tolerance:
            return
        self.stats.failed += 1
        if isinstance(who, str):  # a keyed volunteer's row, even when a late check finds it gone
            quarantined = self.ledger.strike_volunteer(who, self.policy.quarantine_after)
        else:
            self._strikes[client_id] = self._strikes.get(client_id, 0) + 1
            quarantined = self._strikes[client_id] >= self.policy.quarantine_after
        detail = f"{what} by {diff:.3g} (relative; tolerance {tolerance:g})"
        if quarantined:  # QUARANTINED closes the connection: no round waits for it again
            self.stats.quarantined += 1
            raise MlitbError(ErrorCode.QUARANTINED, f"{detail}: {self.policy.quarantine_after} strikes")
        raise MlitbError(ErrorCode.SPOT_CHECK_FAILED, f"{detail}: a strike")
