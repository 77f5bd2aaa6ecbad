"""Buffered asynchronous updates (FedBuff: Nguyen et al. 2022, "Federated Learning with Buffered Asynchronous
Aggregation"), the strategy of `hyper.mode = "async"`: no barrier, no global round.

Every trainer loops on its own clock: it is sent the newest parameters and a work time, computes, and
answers with its result tagged with the version it started from; it is sent the newest parameters again
as soon as its result is taken in, unless the buffer its result joined is expected to fill within
HOLD_SHARE of the period (the results it still needs are the soonest due, each trainer's result due one
of its own cycles after its work went out): then it waits for that update, at most twice as long, and
computes on it. Without that wait, every trainer but the K-th started from the version before the update
its own result completed: with K = N nearly every result was a version stale, and delayed-gradient steps
(AdaGrad's included) are stable only at about half the step, so K = N took twice sync's time to target
(bench/async.py). Results are added to a buffer as they arrive, each weighted by its
sample count and by a staleness function of s = (the version the buffer will be applied to) − (the
version the trainer started from): `inverse_sqrt` 1/√(1+s), `constant` 1, or `hinge` (1 up to
`hinge_after` versions, then 1/(1+s−hinge_after)). As in FedBuff, the weights are not renormalised: the
update is Σ w·g / Σ samples, so a buffer of stale results makes a smaller step. The buffer is applied
through the server optimizer every K results exactly (K = `buffer_size`, or the number of connected trainers
if that is smaller: a fleet that shrank below K would otherwise wait out the flush time at every update;
results of a fast trainer may fill more than one place): results that arrive after the K-th
and before the update is applied fill the next buffer, whose staleness counts the update in between.
The project's aggregation rule runs per buffer (a robust rule sees the buffer's K results). A result
more than `max_staleness` versions old is refused with TOO_STALE and counted; its trainer goes on.

Nobody is held up by a trainer that goes silent: a trainer whose result is overdue (twice the period
after its work went out) is sent work again, and a buffer that cannot fill (trainers left) is applied as it is
after twice the period. Trackers are sent the parameters at most once per period, as in sync rounds.
"""

from __future__ import annotations

import asyncio
import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from mlitb.errors import ErrorCode, MlitbError
from mlitb.training.aggregate import GradientAccumulator, all_finite
from mlitb.training.rules import make_aggregator
from mlitb.training.strategies.base import Host, Result, UpdateStats

OVERDUE_PERIODS = 2.0  # a trainer silent this many periods past its work is sent work again
FLUSH_PERIODS = 2.0  # a buffer short of K results is applied after this many periods
TICK_SHARE = 0.25  # how often (share of the period) overdue trainers and the flush time are checked
HOLD_SHARE = 0.25  # a trainer is held for an update expected within this share of the period


def staleness_weight(kind: str, s: int, hinge_after: int = 4) -> float:
    """The weight of a result computed `s` versions before the one it is applied to."""
    if s < 0:
        raise ValueError("staleness is never negative")
    if kind == "inverse_sqrt":
        return 1.0 / math.sqrt(1.0 + s)
    if kind == "constant":
        return 1.0
    if kind == "hinge":
        return 1.0 if s <= hinge_after else 1.0 / (1.0 + s - hinge_after)
    raise ValueError(f"unknown staleness function {kind!r}")


class StalenessGroups:
    """One buffer's aggregate. With the "mean" rule it keeps one running sum per staleness weight and weights the
    sums once, in `mean()`: a result costs one checked add, as in sync rounds, however stale it is. Past
    MAX_GROUPS weights a result is scaled on its own and joins the weight-1 sum (the sum is linear). A robust rule
    sees every result scaled by its weight."""

    MAX_GROUPS = 4

    def __init__(self, hyper, size: int):
        self._robust = None if hyper.aggregation == "mean" else make_aggregator(hyper, size)
        self._groups: dict[float, GradientAccumulator] = {}
        self._size = size

    def add_finite(self, grad: np.ndarray, samples: int, loss_sum: float, weight: float) -> bool:
        if self._robust is not None:
            return self._robust.add_finite(grad if weight == 1.0 else grad * np.float32(weight), samples, loss_sum)
        groups = self._groups
        if weight not in groups and len(groups) >= self.MAX_GROUPS:
            if not all_finite(grad):
                return False
            grad, weight = grad * np.float32(weight), 1.0
        acc = groups.get(weight)
        if acc is None:
            acc = groups[weight] = GradientAccumulator(self._size)
        return acc.add_finite(grad, samples, loss_sum)

    @property
    def samples(self) -> int:
        return self._robust.samples if self._robust is not None else sum(a.samples for a in self._groups.values())

    @property
    def loss_sum(self) -> float:
        return self._robust.loss_sum if self._robust is not None else sum(a.loss_sum for a in self._groups.values())

    @property
    def contributions(self) -> int:
        if self._robust is not None:
            return self._robust.contributions
        return sum(a.contributions for a in self._groups.values())

    def mean(self) -> np.ndarray:
        if self._robust is not None:
            return self._robust.mean()
        total = np.zeros(self._size, np.float32)
        for weight, acc in self._groups.items():
            total += acc.sum if weight == 1.0 else np.float32(weight) * acc.sum
        return total / np.float32(self.samples)


@dataclass
class Buffer:
    """Results taken in for one update, and their telemetry."""

    acc: StalenessGroups
    staleness: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    late: int = 0  # results computed from an older version than the buffer's (s >= 1)

    @property
    def count(self) -> int:
        return len(self.staleness)


class AsyncBuffer:
    """FedBuff on the `Host` interface. `self.queue[i]` is applied to version `host.round + i`."""

    def __init__(self) -> None:
        self.host: Host | None = None
        self.open_version: int | None = None
        self.queue: list[Buffer] = []
        # trainer -> (clock when its work went out, its version, clock its result is expected: one cycle later)
        self._out: dict[int, tuple[float, int, float]] = {}
        self._due: list[tuple[float, int]] = []  # (expected clock, trainer) of the work out, sorted
        self._full = asyncio.Event()
        self._shared_at = -math.inf  # when trackers were last sent the parameters
        self._stopped = False
        self._stats: UpdateStats | None = None
        # trainers sent work once the update in the making is applied (or at their clock time, if it is late)
        self._held: dict[int, float] = {}
        self._cycle: dict[int, float] = {}  # trainer -> seconds from its last work going out to its result
        self._fleet = 0  # admitted trainers: it grows only as an update begins, and shrinks as one leaves
        self.refused_stale = 0

    def bind(self, host: Host) -> None:
        self.host = host

    def _new_buffer(self) -> Buffer:
        return Buffer(StalenessGroups(self.host.hyper, self.host.param_count))

    async def run_update(self) -> dict:
        host = self.host
        self._stopped = False
        size = host.param_count
        stats = self._stats = host.begin_update()
        if size != host.param_count:  # the model grew between updates: buffered and outstanding work is void
            self.queue.clear()
            self._out.clear()
            self._due.clear()
        if not self.queue:
            self.queue.append(self._new_buffer())
        self.open_version = stats.round
        self._share(stats.started)
        trainers = host.trainer_ids()
        self._fleet = len(trainers)
        for cid in trainers:
            # a trainer held between updates (its result came while the runtime checkpointed) waits for this one
            if cid not in self._out and cid not in self._held:
                self._send(cid)
        hyper = host.hyper
        tick = TICK_SHARE * hyper.period_s
        while not self._stopped and self.queue[0].count < self._k():
            self._full.clear()
            wait = tick if not self._held else max(0.0, min(tick, min(self._held.values()) - host.clock()))
            try:
                await asyncio.wait_for(self._full.wait(), timeout=wait)
                continue
            except asyncio.TimeoutError:
                pass
            now = host.clock()
            self._release_held(now)
            self._resend_overdue(now)
            if now - stats.started >= FLUSH_PERIODS * hyper.period_s:
                break  # trainers left or went silent: apply what there is, admit newcomers
        buffer = self.queue.pop(0)
        if not self.queue:
            self.queue.append(self._new_buffer())
        stats.trainers = len(host.trainer_ids())
        stats.latencies.extend(buffer.latencies)
        stats.staleness.extend(buffer.staleness)
        stats.late += buffer.late
        self.open_version = None
        record = host.finish_update(stats, buffer.acc)
        # the held trainers (no work out) are sent work of the new version as the next update begins: after its
        # allocations, and counted in its telemetry
        self._held.clear()
        return record

    def on_result(self, result: Result) -> None:
        host, cid = self.host, result.client_id
        out = self._out.get(cid)
        if out is None or out[1] != result.version:
            raise MlitbError(ErrorCode.DUPLICATE_RESULT, f"no work of version {result.version} is outstanding for "
                             f"this client")
        sent, version, _ = out
        self._forget(cid)
        now = host.clock()
        self._cycle[cid] = now - sent
        hyper = host.hyper
        # the buffer that is not yet full takes it; it is applied to version host.round + its place in the queue
        k = self._k()
        place = next((i for i, b in enumerate(self.queue) if b.count < k), len(self.queue))
        s = host.round + place - version
        latency = host.observe(result, sent)
        try:
            if s > hyper.max_staleness:
                self.refused_stale += 1
                if self._stats is not None:
                    self._stats.refused_stale += 1
                raise MlitbError(ErrorCode.TOO_STALE, f"computed from version {version}, {s} versions before the "
                                 f"update it would join; max_staleness is {hyper.max_staleness}")
            if place == len(self.queue):
                self.queue.append(self._new_buffer())
            buffer = self.queue[place]
            w = staleness_weight(hyper.staleness, s, hyper.hinge_after)
            # the sample count stays unscaled: sum(w g) / sum(samples) (FedBuff's damped step)
            if not buffer.acc.add_finite(result.grad, result.samples, result.loss_sum, w):
                raise MlitbError(ErrorCode.NON_FINITE, "gradient holds NaN or infinite values")
            buffer.staleness.append(s)
            buffer.latencies.append(latency)
            buffer.late += s > 0
            if place == 0 and buffer.count >= k:
                self._full.set()
                self._held[cid] = math.inf  # its next work starts from the update its result completes
            elif place == 0 and self._update_within(now, k, HOLD_SHARE * hyper.period_s):
                # the update is about to be applied: a short wait for it saves a version of staleness
                self._held[cid] = now + 2 * HOLD_SHARE * hyper.period_s
        finally:
            if not self._stopped and cid not in self._held:
                self._send(cid)  # its next work, from the newest parameters, whatever became of this result

    def on_refused(self, result: Result) -> None:
        out = self._out.get(result.client_id)
        if out is not None and out[1] == result.version:
            self._forget(result.client_id)
            if not self._stopped:
                self._send(result.client_id)  # its next work now, not when the result would have been overdue

    def on_leave(self, client_id: int) -> None:
        self._forget(client_id)
        self._held.pop(client_id, None)
        self._cycle.pop(client_id, None)
        self._fleet = len(self.host.trainer_ids())
        if self.open_version is not None and self.queue and self.queue[0].count >= self._k():
            self._full.set()  # the fleet shrank to what the buffer holds

    def stop(self) -> None:
        self._stopped = True
        self.open_version = None
        self._full.set()

    def _send(self, cid: int) -> None:
        host = self.host
        self._forget(cid)  # a re-sent overdue work replaces the old
        now = host.clock()
        due = now + self._cycle.get(cid, host.hyper.period_s)
        self._out[cid] = (now, host.round, due)
        bisect.insort(self._due, (due, cid))
        host.dispatch(cid)

    def _forget(self, cid: int) -> None:
        out = self._out.pop(cid, None)
        if out is not None:
            del self._due[bisect.bisect_left(self._due, (out[2], cid))]

    def _resend_overdue(self, now: float) -> None:
        """Work lost on the way (a trainer that skipped it, a reconnect) is sent again, so no trainer stays idle."""
        limit = OVERDUE_PERIODS * self.host.hyper.period_s
        for cid in self.host.trainer_ids():
            out = self._out.get(cid)
            if (out is None and cid not in self._held) or (out is not None and now - out[0] > limit):
                self._send(cid)
        self._share(now)

    def _k(self) -> int:
        """Results per update: K, or one per connected trainer when fewer are connected, so a fleet that shrank
        below K (a trainer left) is not left waiting out the flush time at every update."""
        return max(1, min(self.host.hyper.buffer_size, self._fleet))

    def _update_within(self, now: float, k: int, window: float) -> bool:
        """Whether the open buffer is expected to fill within `window` seconds: the results it still needs are the
        soonest of the outstanding ones, each expected one cycle (its trainer's last) after its work went out."""
        need = k - self.queue[0].count
        if need > len(self._due):
            return False
        return self._due[need - 1][0] - now <= window

    def _release_held(self, now: float) -> None:
        """Held trainers whose update did not come when expected (a trainer went silent) are sent work now."""
        for cid, until in list(self._held.items()):
            if until <= now:
                del self._held[cid]
                if not self._stopped:
                    self._send(cid)

    def _share(self, now: float) -> None:
        if now - self._shared_at >= self.host.hyper.period_s:
            self._shared_at = now
            self.host.publish()
