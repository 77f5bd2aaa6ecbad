"""Fleets with a 10x speed spread in both modes (in memory, real MNIST softmax-regression gradients): async
updates do not wait for the slowest trainer, learn, and a trainer that disappears mid-computation, or goes
silent, holds nobody up."""

from __future__ import annotations

import asyncio
import time

import pytest

from mlitb.config import Settings
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import ProjectSpec
from mlitb.workers.simulated import MemoryTrainer
from tests.mnist_softmax import SOFTMAX_REGRESSION, error_rate, gradient_fn, mnist_subset

DELAYS = (0.01, 0.02, 0.04, 0.1)  # seconds per result: a 10x spread


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
    sync = await run_for(sync_rt, 1.5)
    async_rt = runtime(data, mode="async", buffer_size=2)
    fleet(async_rt, data)
    await asyncio.sleep(0)
    fast = await run_for(async_rt, 1.5)
    # sync rounds wait for every trainer (the barrier): every round has all four, and lasts the slowest one's delay
    assert all(r["contributions"] == 4 and r["mode"] == "sync" for r in sync)
    assert min(r["duration_s"] for r in sync) >= 0.1
    # async: exactly K results per update, many more updates than rounds, the fast trainers answering most
    assert all(r["contributions"] == 2 and r["mode"] == "async" for r in fast)
    assert len(fast) > 3 * len(sync)
    assert all(r["staleness_max"] <= async_rt.hyper.max_staleness for r in fast)
    assert sum(r["staleness_mean"] for r in fast) > 0  # the slow trainer's results come from older versions
    assert error_rate(async_rt.params, data.test) < 0.25 and error_rate(sync_rt.params, data.test) < 0.35
    assert not any(t.errors for t in trainers)


async def test_a_trainer_that_disappears_mid_computation_or_goes_silent_holds_nobody_up(data):
    rt = runtime(data, mode="async", buffer_size=2)
    fast = fleet(rt, data, (0.01, 0.02))
    leaver = MemoryTrainer(rt, gradient_fn(data.train, 7), delay_s=30)  # still computing when it leaves
    silent = MemoryTrainer(rt, gradient_fn(data.train, 8), delay_s=3600)  # never answers, stays connected
    await asyncio.sleep(0)
    first = await run_for(rt, 0.5)
    leaver.leave()
    rest = await run_for(rt, 0.5)
    # updates kept coming every few tens of milliseconds from the two live trainers, before and after the leave
    assert len(first) >= 8 and len(rest) >= 8
    assert all(r["contributions"] == 2 for r in first + rest)
    assert rest[-1]["trainers"] == 3 and not silent.rounds_answered
    assert {t.client.id for t in fast} >= {cid for cid in rt.trainer_ids() if cid != silent.client.id}
