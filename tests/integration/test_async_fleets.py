"""Fleets with a 10x speed spread in both modes (in memory, real MNIST softmax-regression gradients): async
updates do not wait for the slowest trainer, learn, and a trainer that disappears mid-computation, or goes
silent, holds nobody up."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from mlitb.config import Settings
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import ProjectSpec
from mlitb.protocol import MessageType, decode
from mlitb.training.strategies.async_buffer import FLUSH_PERIODS
from mlitb.workers.simulated import MemoryTrainer
from tests.helpers import TINY_NETWORK, tiny_dataset
from tests.mnist_softmax import SOFTMAX_REGRESSION, error_rate, gradient_fn, mnist_subset

DELAYS = (0.06, 0.12, 0.25, 0.6)  # seconds per result: a 10x spread (under the 20 frames/s rate limit)


def runtime(data, **hyper) -> ProjectRuntime:
    spec = ProjectSpec(name="fleet", network=SOFTMAX_REGRESSION,
                       hyper={"period_s": 1, "learning_rate": 0.1, **hyper})
    return ProjectRuntime(1, spec, spec.build_network(), data, Settings(min_work_ms=10))


def fleet(rt, data, delays=DELAYS):
    return [MemoryTrainer(rt, gradient_fn(data.train, i, batch=50), delay_s=d) for i, d in enumerate(delays)]


@pytest.fixture(scope="module")
def data():
    return mnist_subset(3000, 1000)


async def run_for(rt, seconds):
    records, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        records.append(await rt.run_round())
    return records


async def test_a_speed_spread_fleet_learns_in_both_modes_and_async_updates_do_not_wait_for_the_slowest(data):
    sync_rt = runtime(data)
    trainers = fleet(sync_rt, data)
    await asyncio.sleep(0)
    sync = await run_for(sync_rt, 3)
    async_rt = runtime(data, mode="async", buffer_size=2)
    fleet(async_rt, data)
    await asyncio.sleep(0)
    fast = await run_for(async_rt, 3)
    # sync rounds wait for every trainer (the barrier): every round has all four, and lasts the slowest one's delay
    assert all(r["contributions"] == 4 and r["mode"] == "sync" for r in sync)
    assert min(r["duration_s"] for r in sync) >= 0.6
    # async: exactly K results per update, many more updates than rounds, the fast trainers answering most
    assert all(r["contributions"] == 2 and r["mode"] == "async" for r in fast)
    assert len(fast) > 3 * len(sync)
    assert all(r["staleness_max"] <= async_rt.hyper.max_staleness for r in fast)
    assert sum(r["staleness_mean"] for r in fast) > 0  # the slow trainer's results come from older versions
    assert error_rate(async_rt.params, data.test) < 0.25 and error_rate(sync_rt.params, data.test) < 0.35
    assert not any(t.errors for t in trainers)


async def test_a_trainer_that_disappears_mid_computation_or_goes_silent_holds_nobody_up(data):
    rt = runtime(data, mode="async", buffer_size=2)
    fast = fleet(rt, data, (0.06, 0.1))
    leaver = MemoryTrainer(rt, gradient_fn(data.train, 7), delay_s=30)  # still computing when it leaves
    silent = MemoryTrainer(rt, gradient_fn(data.train, 8), delay_s=3600)  # never answers, stays connected
    await asyncio.sleep(0)
    first = await run_for(rt, 1.0)
    leaver.leave()
    rest = await run_for(rt, 1.0)
    # updates kept coming from the two live trainers, before and after the leave, each far sooner than the silent
    # trainers (or the flush of a buffer that cannot fill, two periods) would allow
    assert len(first) >= 4 and len(rest) >= 4
    flush_s = FLUSH_PERIODS * rt.hyper.period_s  # what an update that waited for the silent trainer would take
    assert max(r["duration_s"] for r in first + rest) < flush_s, [r["duration_s"] for r in first + rest]
    assert all(r["contributions"] == 2 for r in first + rest)
    assert rest[-1]["trainers"] == 3 and not silent.rounds_answered
    assert {t.client.id for t in fast} >= {cid for cid in rt.trainer_ids() if cid != silent.client.id}


async def test_async_runs_on_after_a_restart_from_its_checkpoint_and_trackers_get_parameters_once_per_period(data):
    rt = runtime(data, mode="async", buffer_size=2)
    fleet(rt, data, (0.06, 0.1))
    tracker = MemoryTrainer(rt, None, role="tracker")
    sent, send = [], tracker.link.send
    tracker.link.send = lambda frame: sent.append(frame) or send(frame)
    await asyncio.sleep(0)
    before = await run_for(rt, 1.2)
    shared = tracker.params is not None
    version, params, history, metrics = rt.checkpoint_view()
    rt.stop()
    again = runtime(data, mode="async", buffer_size=2)
    again.restore(version, params, history, metrics)
    fleet(again, data, (0.06, 0.1))
    await asyncio.sleep(0)
    after = await run_for(again, 0.8)
    assert shared and len(before) >= 6
    # a tracker is sent the parameters at most once per period (T = 1 s), not at every update
    assert 1 <= len(sent) <= 3 and all(decode(f, 1 << 30).type == MessageType.PARAMS for f in sent)
    assert after[0]["round"] == version and all(r["contributions"] == 2 and r["mode"] == "async" for r in after)
    assert error_rate(again.params, data.test) <= error_rate(params, data.test) + 0.05


async def test_a_new_class_is_applied_between_async_updates_and_the_trainers_go_on_with_the_grown_model():
    from mlitb.data.examples import LabelledExample, with_examples
    from mlitb.model.grow import with_more_classes

    spec = ProjectSpec(name="tiny", network=TINY_NETWORK, hyper={"period_s": 1, "mode": "async", "buffer_size": 1})
    rt = ProjectRuntime(1, spec, spec.build_network(), tiny_dataset(30), Settings(min_work_ms=10))
    trainers = [MemoryTrainer(rt, lambda p, ids: (np.ones_like(p), max(1, len(ids)), 1.0), delay_s=0.06)
                for _ in range(2)]
    await asyncio.sleep(0)
    await run_for(rt, 0.3)
    grown = with_examples(rt.dataset, [LabelledExample("d", np.zeros((2, 2, 1), np.uint8))])
    for _ in range(100):  # catch an update open (one whose buffer was not already full when it began)
        task = asyncio.get_running_loop().create_task(rt.run_round())
        await asyncio.sleep(0)
        if rt.open_round is not None:
            break
        await task
    assert rt.open_round == rt.round  # mid-update: the change waits for the update to be applied
    assert rt.change_model_and_data(with_more_classes(rt.spec.network, 1), grown) == rt.round + 1
    assert (await task)["classes"] == 3
    records = await run_for(rt, 1.0)
    assert rt.param_count == rt.history.size == 20 and records[-1]["classes"] == 4
    assert all(t.params.size == 20 for t in trainers)
    assert sum(r["contributions"] for r in records[1:]) >= 5  # training went on with the grown model


async def test_volunteers_are_credited_for_the_results_an_async_project_takes_and_not_for_stale_refusals(data):
    """The trust wrappers (Credited(SpotChecked(AsyncBuffer))) around the async strategy: every result the buffer
    takes earns its volunteer its samples; one refused as too stale (max_staleness 0, a trainer 10x slower than
    the others) earns nothing."""
    import hashlib

    rt = runtime(data, mode="async", buffer_size=2, max_staleness=0)
    keys = ("f" * 24 + "-fast-key", "s" * 24 + "-slow-key")
    fast = MemoryTrainer(rt, gradient_fn(data.train, 1, batch=50), delay_s=0.06, volunteer=keys[0])
    slow = MemoryTrainer(rt, gradient_fn(data.train, 2, batch=50), delay_s=0.6, volunteer=keys[1])
    await asyncio.sleep(0)
    records = await run_for(rt, 2.5)
    rt.stop()
    await asyncio.sleep(0.8)  # a refusal's ERROR is queued behind the next WORK: the slow trainer reads it 0.6 s on
    board = {row["volunteer"]: row for row in rt.credit.board(5)}
    public = ["v" + hashlib.sha256(k.encode()).hexdigest()[:16] for k in keys]
    credited = {p: board[p]["results"] if p in board else 0 for p in public}
    refused = rt.core_strategy.refused_stale  # the records' counts, and any refusal after the last update
    assert refused >= sum(r["refused_stale"] for r in records)
    taken = sum(r["contributions"] for r in records)
    sent = len(fast.rounds_answered) + len(slow.rounds_answered)
    too_stale = sum(e.get("code") == "TOO_STALE" for t in (fast, slow) for e in t.errors)
    # every result sent was either taken (and credited at intake) or refused as too stale (and not credited)
    assert refused >= 2 and too_stale == refused
    assert sum(credited.values()) + refused == sent
    assert credited[public[0]] >= 10 and board[public[0]]["samples"] == 50 * credited[public[0]]
    # credit is given at intake: the applied updates' results, plus those of a buffer not yet applied
    assert 0 <= sum(credited.values()) - taken <= 4
    # the slow trainer computes from versions the fast one has moved past: refused, not credited
    assert credited[public[1]] < len(slow.rounds_answered)


@pytest.mark.parametrize("codec", ["delta_q8", "delta_q4"])
async def test_an_async_fleet_trains_through_a_download_codec_each_trainer_holding_the_masters_shadow(data, codec):
    """Trainers of a 10x speed spread skip versions between dispatches: each is sent the chain of shadow deltas
    since the version it holds (or the dense shadow), and computes on exactly the master's shadow of the version
    its work is tagged with."""
    rt = runtime(data, mode="async", buffer_size=2, download_codec=codec, aggregation="mean")
    shadows, start = {}, rt.params_out.start

    def recording_start(project, version, params):
        values = start(project, version, params)
        shadows[version] = values.copy()
        return values

    rt.params_out.start = recording_start
    trainers = fleet(rt, data)
    computed_on = []  # (version of the work, the parameters the trainer computed on)
    for t in trainers:
        fn = t.gradient_fn
        t.gradient_fn = lambda p, ids, fn=fn, t=t: computed_on.append((t.downlink.round, p.copy())) or fn(p, ids)
    await asyncio.sleep(0)
    records = await run_for(rt, 3)
    rt.stop()
    assert not any(t.errors for t in trainers) and all(not t.task.done() for t in trainers)
    assert len(computed_on) >= 20 and len({v for v, _ in computed_on}) >= 10
    for version, params in computed_on:
        np.testing.assert_array_equal(params, shadows[version])
    # the slow trainers skipped versions, so chains of deltas went out; far less than dense on the whole
    per_frame = [r["bytes_down_per_client"] for r in records if r["bytes_down_per_client"]]
    assert len(per_frame) >= 10 and np.mean(per_frame) < 0.6 * 4 * rt.param_count
    assert max(r["staleness_max"] for r in records) >= 2
    assert error_rate(rt.params, data.test) < 0.3


async def test_with_k_equal_to_an_equal_fleet_each_trainer_computes_on_the_update_its_result_completes(data):
    """Each result that arrives just before the K-th waits for the update (a quarter period at most) instead of
    starting from the version before it: without that wait the mean staleness here is 0.75 (every trainer but the
    K-th a version behind) and bench/async.py's K = N runs took twice sync's time to target."""
    rt = runtime(data, mode="async", buffer_size=4, staleness="constant")
    trainers = fleet(rt, data, (0.1, 0.1, 0.1, 0.1))
    await asyncio.sleep(0)
    records = (await run_for(rt, 2))[2:]  # after the first cycles have shown each trainer's timing
    rt.stop()
    assert len(records) >= 5 and all(r["contributions"] == 4 for r in records)
    assert np.mean([r["staleness_mean"] for r in records]) < 0.25
    assert not any(t.errors for t in trainers)
