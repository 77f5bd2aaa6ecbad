"""Synchronous time-boxed rounds (MLitB §3.3), the first strategy: a barrier, a deadline and a late policy.

Each round: the host admits trainers and sends the parameters and each trainer's work time; every
result of the open round is added into one aggregator as it arrives; the round closes when every
trainer that was sent work answered (the barrier) or at the deadline T, and the host applies the
aggregate through the server optimizer. A result for a round that already closed is counted as late
and still tells how slow its client is; it is refused with STALE_ROUND unless the project's
`late_policy` is "stale_weighted" and a round is open: then it joins that round's aggregate with its
sample count (and so its share) scaled by `staleness_weight ** rounds_late`.
"""

from __future__ import annotations

import asyncio

import numpy as np

from mlitb.errors import ErrorCode, MlitbError
from mlitb.training.aggregate import all_finite
from mlitb.training.rules import make_aggregator
from mlitb.training.strategies.base import Host, Result, UpdateStats

LATE_ROUNDS_REMEMBERED = 8  # late results older than this many rounds are refused without a look


class SyncRounds:
    """Today's rounds. Per client it keeps only the newest round answered and the newest round applied."""

    def __init__(self) -> None:
        self.host: Host | None = None
        self.open_version: int | None = None
        self._stats: UpdateStats | None = None
        self._acc = None
        self._deterministic = False  # the open round records its contributions for a replay
        self._pending: set[int] = set()  # trainers sent work in the open round that have not answered yet
        self._all_answered = asyncio.Event()
        self._round_starts: dict[int, float] = {}
        self._answered: dict[int, int] = {}  # client id -> newest round it answered on time
        self._applied: dict[int, int] = {}  # client id -> newest round whose result was applied (on time or late)

    def bind(self, host: Host) -> None:
        self.host = host

    @property
    def aggregate(self):
        """The open round's aggregator (samples, loss_sum, contributions, mean())."""
        return self._acc

    async def run_update(self) -> dict:
        host = self.host
        stats = host.begin_update()
        version = stats.round
        self._round_starts[version] = stats.started
        self._round_starts.pop(version - LATE_ROUNDS_REMEMBERED, None)
        self._stats, self._acc = stats, make_aggregator(host.hyper, host.param_count)
        self._deterministic = host.hyper.deterministic
        self._all_answered.clear()
        self.open_version = version
        self._pending = set(host.trainer_ids())
        host.broadcast(self._pending)
        stats.trainers = len(host.trainer_ids())  # a trainer dropped while sending is no longer counted
        self._check_all_answered()
        try:
            await asyncio.wait_for(self._all_answered.wait(), timeout=host.hyper.period_s)
        except asyncio.TimeoutError:
            pass
        self.open_version = None
        return host.finish_update(stats, self._acc)

    def on_result(self, result: Result) -> None:
        version, stats = self.open_version, self._stats
        if version is None or result.version != version or stats is None:
            self._on_late(result, stats)
            return
        cid = result.client_id
        if self._answered.get(cid) == version:
            raise MlitbError(ErrorCode.DUPLICATE_RESULT, f"already have this client's gradient for round {version}")
        host = self.host
        record = host.record_contribution(result) if self._deterministic else None
        # the aggregator checks every value before the add that could change it (block by block for large
        # gradients, so each comes from memory once) and is left unchanged by a gradient it refuses
        if not self._acc.add_finite(result.grad, result.samples, result.loss_sum, result.group):
            raise MlitbError(ErrorCode.NON_FINITE, "gradient holds NaN or infinite values")
        if record is not None:
            host.record_reduced(record)
        self._answered[cid] = self._applied[cid] = version
        host.observe(result, stats.started, stats)
        pending = self._pending
        pending.discard(cid)
        if not pending:
            self._all_answered.set()

    def _on_late(self, result: Result, stats: UpdateStats | None) -> None:
        host, version = self.host, result.version
        started = self._round_starts.get(version)
        if started is None or stats is None or version >= host.round:
            raise MlitbError(ErrorCode.STALE_ROUND, f"gradient for round {version}; open round is {self.open_version}")
        if version <= self._applied.get(result.client_id, -1):
            raise MlitbError(ErrorCode.DUPLICATE_RESULT, f"already have this client's gradient for round {version}")
        hyper = host.hyper
        apply = hyper.late_policy == "stale_weighted" and self.open_version is not None
        if apply and not all_finite(result.grad):
            raise MlitbError(ErrorCode.NON_FINITE, "gradient holds NaN or infinite values")
        stats.late += 1
        host.observe(result, started)
        if not apply:
            host.count_late(applied=False)
            raise MlitbError(ErrorCode.STALE_ROUND, f"gradient for round {version}; open round is {self.open_version}")
        weight = hyper.staleness_weight ** (self.open_version - version)
        samples = max(1, round(result.samples * weight))
        scale = samples / result.samples
        self._acc.add(result.grad * np.float32(scale), samples, result.loss_sum * scale, result.group)
        self._applied[result.client_id] = version
        stats.late_applied += 1
        host.count_late(applied=True)

    def on_refused(self, result: Result) -> None:
        if self.open_version is None or result.version != self.open_version:
            return  # a late result: the round it answered is closed
        cid = result.client_id
        self._answered[cid] = result.version  # answered: a second result for this round is a duplicate
        self._pending.discard(cid)
        self._check_all_answered()

    def on_leave(self, client_id: int) -> None:
        self._answered.pop(client_id, None)
        self._applied.pop(client_id, None)
        self._pending.discard(client_id)
        self._check_all_answered()

    def stop(self) -> None:
        self.open_version = None
        self._all_answered.set()

    def _check_all_answered(self) -> None:
        if self.open_version is not None and not self._pending:
            self._all_answered.set()
