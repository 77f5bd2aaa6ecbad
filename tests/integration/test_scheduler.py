"""The scheduler (MLitB §3.3 d): work time from each trainer's latency and processing rate, and the
late-gradient policy. In memory: the same round loop the WebSocket server runs."""

import asyncio

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mlitb.errors import ErrorCode
from mlitb.training.strategies.sync_rounds import LATE_ROUNDS_REMEMBERED as ROUNDS_REMEMBERED
from mlitb.master.transport import MemoryLink
from mlitb.protocol import MessageType, decode, encode
from tests.helpers import make_runtime


class ScriptedTrainer:
    """Answers each WORK frame after `delay_s` with `samples` samples that took `compute_ms` (all adjustable),
    so its latency is about `delay_s - compute_ms` and its rate `samples / compute_ms`. With `overshoot_ms`
    set it reports its work time plus that instead (a trainer whose compute ran past the work time). With a
    ManualClock (the runtime's too) the delay moves that clock instead of passing, so the latency is exact
    however loaded the machine is."""

    def __init__(self, runtime, samples=64, compute_ms=100, delay_s=0.0, answer=True, overshoot_ms=None, clock=None):
        self.runtime, self.samples, self.compute_ms, self.delay_s, self.answer = runtime, samples, compute_ms, delay_s, answer
        self.overshoot_ms = overshoot_ms
        self.clock = clock
        self.link = MemoryLink(max_queue=1000)
        self.client = runtime.add_client(self.link, "trainer", "scripted")
        self.work: list[tuple[int, int]] = []  # (round, work ms) of every WORK frame
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self):
        while (data := await self.link.inbox.get()) is not None:
            frame = decode(data, 1 << 30)
            if frame.type == MessageType.WORK:
                self.work.append((frame.round, frame.aux))
                if self.overshoot_ms is not None:
                    self.compute_ms = frame.aux + self.overshoot_ms
                if self.answer:
                    if self.clock is not None:
                        self.clock.now += self.delay_s
                    else:
                        await asyncio.sleep(self.delay_s)
                    self.send(frame.round)

    def gradient(self, round_, samples=None):
        n = samples or self.samples
        return encode(MessageType.GRADIENT, project=1, round=round_, count=n, aux=int(self.compute_ms), value=float(n),
                      payload=np.full(self.runtime.param_count, 1.0, np.float32) * n)

    def send(self, round_, samples=None):
        try:
            self.runtime.on_frame(self.client.id, decode(self.gradient(round_, samples), self.runtime.max_frame_bytes))
        except Exception as err:  # noqa: BLE001 - the test reads the error
            return err
        return None


async def rounds(rt, n):
    return [await rt.run_round() for _ in range(n)]


async def test_before_its_first_result_a_trainer_keeps_back_one_batch_at_its_rate_and_five_percent_of_t():
    rt = make_runtime(period_s=4)
    t = ScriptedTrainer(rt, answer=False)
    t.client.rate_sps, t.client.latency_ms = 40.0, 50.0  # a 32-batch takes 800 ms
    assert rt.work_ms_for(t.client) == 4000 - 50 - 800 - 200


async def test_a_trainer_that_fills_its_work_time_loses_no_mini_batch_however_slow_it_is():
    rt = make_runtime(period_s=4)
    fast = ScriptedTrainer(rt, samples=3200, overshoot_ms=2)  # 3,200 samples/s: a 32-batch takes 10 ms
    slow = ScriptedTrainer(rt, samples=40, overshoot_ms=2)  # 40 samples/s: a 32-batch takes 800 ms
    await rounds(rt, 5)
    assert slow.client.rate_sps * 50 < fast.client.rate_sps
    # both checked the clock between sub-batches: the same latency and margin, no batch held back
    assert fast.work[-1][1] == slow.work[-1][1] > 4000 - 100 - 2 - 200 - 10  # the floor: 5% of T


class ManualClock:
    """A runtime clock that moves only when a test moves it."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_trainer_whose_latency_grows_is_given_less_work():
    clock = ManualClock()
    rt = make_runtime(period_s=4, clock=clock)
    t = ScriptedTrainer(rt, samples=3200, compute_ms=1, delay_s=0.01, clock=clock)
    await rounds(rt, 12)  # the estimate settles from its initial 100 ms to about 10
    before = t.work[-1][1]
    t.delay_s = 0.4
    await rounds(rt, 1)  # this round measures the growth ...
    t.delay_s = 0.01
    await rounds(rt, 1)  # ... and the next one is shorter by at least as much, at once
    after = t.work[-1][1]
    assert before - after >= 390 - 20
    assert rt.settings.min_work_ms < after
    await rounds(rt, 6)  # the latency is back down: the work time recovers over a few rounds
    assert after + 100 < t.work[-1][1] < before


async def test_trainers_are_told_to_arrive_one_ingest_time_apart_in_the_order_the_parameters_went_out():
    rt = make_runtime(period_s=4)
    trainers = [ScriptedTrainer(rt, samples=3200, compute_ms=1000) for _ in range(5)]
    await rounds(rt, 2)
    rt.ingest.seconds = 0.02  # the server needs 20 ms per gradient
    for t in trainers:
        t.client.latency_ms = 50.0
    await rounds(rt, 1)
    work = [t.work[-1][1] for t in trainers]
    assert [b - a for a, b in zip(work, work[1:])] == pytest.approx([20] * 4, abs=1)
    assert work[-1] == 4000 - 50 - 200  # the last: T - latency - 5% of T (too few results for their spread yet)


async def test_the_staggered_arrivals_span_at_most_half_the_period():
    rt = make_runtime(period_s=2)
    trainers = [ScriptedTrainer(rt, samples=3200, compute_ms=1000) for _ in range(10)]
    await rounds(rt, 1)
    rt.ingest.seconds = 5.0  # an overloaded server: the spread is capped, not the whole period
    await rounds(rt, 1)
    work = [t.work[-1][1] for t in trainers]
    assert work[-1] - work[0] == pytest.approx(1000 * 9 / 10, abs=2)
    assert min(work) > rt.settings.min_work_ms


@settings(max_examples=200, deadline=None)
@given(period=st.floats(1, 30), latency=st.floats(0, 1e7), rate=st.one_of(st.none(), st.floats(1e-6, 1e9)),
       batch=st.integers(1, 4096))
def test_work_time_is_never_negative_nor_longer_than_the_period(period, latency, rate, batch):
    rt = make_runtime(period_s=period, batch_size=batch)
    client = rt.add_client(MemoryLink(), "trainer", "x")
    client.latency_ms, client.rate_sps = latency, rate
    work = rt.work_ms_for(client)
    assert rt.settings.min_work_ms <= work <= period * 1000


async def test_a_trainer_that_never_answers_leaves_the_others_a_round_of_exactly_the_period():
    rt = make_runtime(period_s=1)
    answering = [ScriptedTrainer(rt, compute_ms=10) for _ in range(20)]
    silent = ScriptedTrainer(rt, answer=False)
    records = await asyncio.wait_for(rounds(rt, 2), timeout=30)  # closes without the silent one (generous bound)
    assert all(r["duration_s"] >= 0.95 for r in records)  # and not before its deadline: it waited for it
    assert [r["contributions"] for r in records] == [20, 20] and [r["trainers"] for r in records] == [21, 21]
    assert all(len(t.work) == 2 for t in answering) and len(silent.work) == 2  # still given work each round


async def test_by_default_a_late_gradient_is_dropped_and_counted():
    rt = make_runtime(period_s=1)
    ScriptedTrainer(rt, samples=10, compute_ms=10)  # answers on time
    late = ScriptedTrainer(rt, samples=8, compute_ms=10, answer=False)
    await rounds(rt, 1)  # `late` misses round 0
    task = asyncio.create_task(rt.run_round())
    await asyncio.sleep(0.05)
    err = late.send(0)
    assert err.code == ErrorCode.STALE_ROUND
    assert late.send(1) is None
    record = await task
    assert record["late"] == 1 and record["late_applied"] == 0
    assert record["samples"] == 10 + 8 and record["contributions"] == 2
    assert rt.late_total == 1 and rt.late_applied_total == 0


async def test_with_stale_weighting_a_late_gradient_joins_the_open_round_with_its_share_scaled():
    rt = make_runtime(period_s=1, late_policy="stale_weighted", staleness_weight=0.5, learning_rate=0.5)
    ScriptedTrainer(rt, samples=10, compute_ms=10)  # answers on time
    late = ScriptedTrainer(rt, samples=8, compute_ms=10, answer=False)
    await rounds(rt, 1)
    task = asyncio.create_task(rt.run_round())
    await asyncio.sleep(0.05)
    assert late.send(0) is None  # accepted into round 1 with weight 0.5: 4 samples' worth
    assert late.send(0).code == ErrorCode.DUPLICATE_RESULT  # once only
    assert late.send(1) is None  # and its own round-1 gradient still counts
    record = await task
    assert record["late"] == 1 and record["late_applied"] == 1
    assert record["samples"] == 10 + 8 + 4 and record["contributions"] == 3
    assert rt.late_total == 1 and rt.late_applied_total == 1


async def test_a_stale_weighted_gradient_moves_the_mean_by_its_weighted_share():
    rt = make_runtime(period_s=1, late_policy="stale_weighted", staleness_weight=0.25, aggregation="mean")
    a = ScriptedTrainer(rt, answer=False)
    b = ScriptedTrainer(rt, answer=False)
    await asyncio.sleep(0)
    await rounds(rt, 1)  # nobody answers round 0
    task = asyncio.create_task(rt.run_round())
    await asyncio.sleep(0.05)
    P = rt.param_count
    send = lambda t, r, n, v: rt.on_frame(t.client.id, decode(encode(  # noqa: E731
        MessageType.GRADIENT, project=1, round=r, count=n, aux=10, value=0.0, payload=np.full(P, v * n, np.float32)),
        rt.max_frame_bytes))
    send(b, 0, 40, 3.0)  # late by one round: per-sample mean 3 over 40 samples -> weight 0.25 -> 10 samples' worth
    send(a, 1, 10, 1.0)
    send(b, 1, 10, 1.0)
    assert rt.strategy.aggregate.samples == 30
    np.testing.assert_allclose(rt.strategy.aggregate.mean(), (10 * 3 + 10 + 10) / 30, rtol=1e-6)
    await task


async def test_gradients_older_than_the_remembered_rounds_are_refused_without_counting():
    rt = make_runtime(period_s=1)
    t = ScriptedTrainer(rt, samples=4, compute_ms=10)
    await rounds(rt, ROUNDS_REMEMBERED + 1)
    t.answer = False
    task = asyncio.create_task(rt.run_round())
    await asyncio.sleep(0.05)
    assert t.send(0).code == ErrorCode.STALE_ROUND
    assert t.send(ROUNDS_REMEMBERED + 1) is None
    assert (await task)["late"] == 0


async def test_each_round_record_has_cpu_time_bytes_and_the_latency_percentile():
    rt = make_runtime(period_s=1)
    ScriptedTrainer(rt, samples=4, compute_ms=10, delay_s=0.02)
    record = (await rounds(rt, 2))[-1]
    for key in ("round", "trainers", "samples", "samples_per_s", "latency_ms_mean", "latency_ms_max", "loss",
                "test_error", "late", "rejected"):
        assert key in record
    assert record["latency_ms_mean"] <= record["latency_ms_p95"] <= record["latency_ms_max"]
    assert record["cpu_s"] >= 0 and record["bytes_in"] == 0 and record["bytes_out"] == 0  # in memory: no bytes
