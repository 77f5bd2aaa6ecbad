"""Spot-check verification: a strategy wrapper that recomputes a random share of results and strikes fakes.

Trainers of a verifiable project (numpy_net.supports: dense networks) from addresses other than the
server's own (`address_limits_exempt`: the demo, local workers and simulated fleets are trusted) train
on the example order the seed in their WORK frame gives (example_order.py) and report how many examples they used, so the
master can recompute any result from the parameters it sent, the trainer's held ids and the seed.
Which results are checked is drawn when the result arrives, so a trainer cannot know. As BOINC's
adaptive replication does, new volunteers are checked often and established ones rarely:
- a volunteer (or anonymous connection) with fewer than `new_results` accepted results is checked with
  probability `p_new`; after that with `p_known`; a strike makes it new again;
- the check recomputes the summed gradient and loss in NumPy (float32); a relative L2 difference of the
  gradient (or a relative difference of the loss) above `tolerance` is a strike, and the result is
  refused (SPOT_CHECK_FAILED); `quarantine_after` strikes quarantine the volunteer (its results are
  refused from then on, it is shown on the page and recorded with its credit);
- at most `max_checks_per_round` checks per round and `max_samples` examples per check bound the
  master's CPU; a result past either bound is taken unchecked and counted (`unchecked`).
Why these rates (measured in bench/spot_checks.py): a volunteer faking a share f of its results is
caught within R rounds with probability 1 - (1 - f p)^R; for f = 10% and R = 50 that is >= 99% only
if p >= 0.88, so the new-volunteer rate is 0.9 for a volunteer's first 50 results; the fleet's
extra compute is then dominated by the established rate p_known (3%) plus the newcomers' share.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from mlitb.errors import ErrorCode, MlitbError
from mlitb.training.strategies.base import Result, Strategy, StrategyWrapper
from mlitb.trust.credit import CreditLedger


@dataclass(frozen=True)
class SpotCheckPolicy:
    p_new: float = 0.9
    p_known: float = 0.03
    new_results: int = 50
    tolerance: float = 1e-4  # relative; wasm vs NumPy float32 measured <= 3.2e-7 (tests/e2e/test_spot_checks_browser.py)
    quarantine_after: int = 2
    max_checks_per_round: int = 8
    max_samples: int = 50_000


@dataclass
class CheckStats:
    checks: int = 0
    failed: int = 0
    unchecked: int = 0  # drawn but past the per-round or per-check bound
    samples: int = 0  # examples recomputed
    cpu_s: float = 0.0  # master thread CPU time spent recomputing
    worst: float = 0.0  # largest relative difference of a passed check
    quarantined: int = 0  # volunteers (or anonymous connections) quarantined


def relative_difference(got: np.ndarray, expected: np.ndarray) -> float:
    scale = max(float(np.linalg.norm(expected)), 1e-12)
    return float(np.linalg.norm(got.astype(np.float64) - expected.astype(np.float64))) / scale


# (result, claimed samples) -> (expected summed gradient, expected summed loss), or None: cannot be recomputed
Recompute = Callable[[Result], tuple[np.ndarray, float] | None]


class SpotChecked(StrategyWrapper):
    def __init__(self, inner: Strategy, ledger: CreditLedger, recompute: Recompute,
                 policy: SpotCheckPolicy = SpotCheckPolicy(), rng: random.Random | None = None):
        self.inner, self.ledger, self.recompute, self.policy = inner, ledger, recompute, policy
        self.rng = rng or random.SystemRandom()  # the trainer must not predict the draw
        self.stats = CheckStats()
        self._standing: dict[object, int] = {}  # volunteer (or client) -> accepted results since its last strike
        self._strikes: dict[int, int] = {}  # anonymous clients' strikes
        self._round_checks = (-1, 0)

    def on_leave(self, client_id: int) -> None:
        self._strikes.pop(client_id, None)
        self.inner.on_leave(client_id)

    def _who(self, client_id: int) -> object:
        row = self.ledger.volunteer_of(client_id)
        return row.volunteer if row is not None else ("client", client_id)

    def quarantined(self, client_id: int) -> bool:
        return self.ledger.quarantined(client_id) or self._strikes.get(client_id, 0) >= self.policy.quarantine_after

    def on_result(self, result: Result) -> None:
        if self.quarantined(result.client_id):
            raise MlitbError(ErrorCode.QUARANTINED, "this volunteer's results failed spot checks; they are ignored")
        who = self._who(result.client_id)
        standing = self._standing.get(who, 0)
        p = self.policy.p_new if standing < self.policy.new_results else self.policy.p_known
        if self.rng.random() < p:
            self._check(result, who)
        self.inner.on_result(result)
        self._standing[who] = standing + 1

    def _check(self, result: Result, who: object) -> None:
        version, done = self._round_checks
        if version != result.version:
            done = 0
        if done >= self.policy.max_checks_per_round:
            self.stats.unchecked += 1
            return
        started = time.thread_time()
        expected = self.recompute(result)  # None: not checkable (too large, exempt, or from an older WORK)
        self.stats.cpu_s += time.thread_time() - started
        if expected is None:
            self.stats.unchecked += 1
            return
        self._round_checks = (result.version, done + 1)
        grad, loss = expected
        self.stats.checks += 1
        self.stats.samples += result.samples
        diff = max(relative_difference(result.grad, grad),
                   abs(result.loss_sum - loss) / max(abs(loss), 1e-12))
        if diff <= self.policy.tolerance:
            self.stats.worst = max(self.stats.worst, diff)
            return
        self.stats.failed += 1
        self._standing[who] = 0  # checked as a newcomer again
        if self.ledger.volunteer_of(result.client_id) is not None:
            self.ledger.strike(result.client_id, self.policy.quarantine_after)
        else:
            self._strikes[result.client_id] = self._strikes.get(result.client_id, 0) + 1
        detail = f"recomputed result differs by {diff:.3g} (relative; tolerance {self.policy.tolerance:g})"
        if self.quarantined(result.client_id):  # QUARANTINED closes the connection: no round waits for it again
            self.stats.quarantined += 1
            raise MlitbError(ErrorCode.QUARANTINED, f"{detail}: {self.policy.quarantine_after} strikes")
        raise MlitbError(ErrorCode.SPOT_CHECK_FAILED, f"{detail}: a strike")
