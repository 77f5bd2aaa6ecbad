"""The master's reference gradient (the bound on public votes) is computed in a helper thread started as the
update opens, and only where a public vote may need it: computed when the update closed, it stopped the server's
event loop (every project's frames) for up to a second per update on a CIFAR-size network (bench/work_fill.py)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from mlitb.config import Settings
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import ProjectSpec
from mlitb.protocol import MessageType, encode
from mlitb.training.rules import make_aggregator
from mlitb.trust import reference
from mlitb.workers.simulated import MemoryTrainer
from tests.helpers import TINY_NETWORK, tiny_dataset
from tests.integration.test_strategies import PlainSgd

STRANGER = "203.0.113.5"  # not exempt: a public trainer, whose vote the master bounds
SLOW_S = 0.3  # the reference's computing time in these tests (a CIFAR-size network's is of this order)


@pytest.fixture
def calls(monkeypatch):
    """Each reference computed: (thread name, seed); each takes SLOW_S."""
    made, real = [], reference.reference_gradient

    def slow(network, params, train, seed):
        made.append((threading.current_thread().name, list(seed)))
        time.sleep(SLOW_S)
        return real(network, params, train, seed)

    monkeypatch.setattr(reference, "reference_gradient", slow)
    return made


def runtime(**hyper) -> ProjectRuntime:
    spec = ProjectSpec(name="tiny", network=TINY_NETWORK,
                       hyper={"period_s": 1, "learning_rate": 0.1, "aggregation": "centered_clip",
                              "spot_checks": False, **hyper})
    return ProjectRuntime(7, spec, spec.build_network(), tiny_dataset(30), Settings(), optimizer=PlainSgd())


def gradient(rt: ProjectRuntime, trainer: MemoryTrainer, scale: float) -> None:
    payload = np.full(rt.param_count, scale, np.float32)
    assert trainer.send(encode(MessageType.GRADIENT, project=rt.id, round=rt.round, count=4, aux=5, value=0.4,
                               payload=payload)) is None


async def one_round(rt: ProjectRuntime, trainer: MemoryTrainer, answer_after_s: float, scale: float = 1.0):
    """Run one round whose trainer answers after `answer_after_s`; returns (its record, the longest the event
    loop was stopped meanwhile, in seconds)."""
    loop = asyncio.get_running_loop()
    longest, beating = [0.0], [True]

    async def heartbeat():
        last = loop.time()
        while beating[0]:
            await asyncio.sleep(0.01)
            longest[0] = max(longest[0], loop.time() - last)
            last = loop.time()

    beat = loop.create_task(heartbeat())
    task = loop.create_task(rt.run_round())
    await asyncio.sleep(answer_after_s)
    gradient(rt, trainer, scale)
    record = await task
    beating[0] = False
    await beat
    return record, longest[0]


async def test_a_public_trainers_update_takes_the_reference_started_in_a_helper_thread_as_it_opened(calls):
    rt = runtime()
    trainer = MemoryTrainer(rt, None, address=STRANGER)
    await asyncio.sleep(0)
    record, stopped_s = await one_round(rt, trainer, answer_after_s=SLOW_S + 0.2, scale=1e3)
    assert calls == [("mlitb-reference_0", [7, 0])]  # one reference, of this project and version, off the loop
    assert stopped_s < SLOW_S / 2, f"the event loop stopped for {stopped_s:.3f} s"
    assert record["votes_bounded"] == 1  # and it did its job: the huge vote was scaled to the bound


async def test_trusted_trainers_updates_compute_no_reference(calls):
    rt = runtime()
    trainer = MemoryTrainer(rt, None)  # in memory: exempt, like the demo's and a local worker's trainers
    await asyncio.sleep(0)
    for _ in range(2):
        record, stopped_s = await one_round(rt, trainer, answer_after_s=0.05, scale=1e3)
        assert record["votes_bounded"] == 0
    assert calls == []


async def test_the_mean_rule_computes_no_reference_even_for_public_trainers(calls):
    rt = runtime(aggregation="mean")
    trainer = MemoryTrainer(rt, None, address=STRANGER)
    await asyncio.sleep(0)
    await one_round(rt, trainer, answer_after_s=0.05)
    assert calls == []


def test_an_aggregate_counts_only_public_votes():
    rt = runtime()
    agg = make_aggregator(rt.hyper, 3)
    agg.add(np.ones(3, np.float32), 1, group=("client", 1))
    agg.add(np.ones(3, np.float32), 1, group=("address", STRANGER))
    agg.add(np.ones(3, np.float32), 1, group=("address", STRANGER))  # one address, one vote
    agg.add(np.ones(3, np.float32), 1, group=("address", "198.51.100.9"))
    assert agg.public_votes == 2


def test_an_update_whose_reference_still_waits_behind_other_projects_computes_its_own_instead_of_waiting():
    from mlitb.trust.reference import ReferenceGradients, _helper, reference_gradient

    rt = runtime()
    train, seed = rt.dataset.train, [7, 0]
    busy, release = threading.Event(), threading.Event()
    _helper().submit(lambda: (busy.set(), release.wait(5)))  # another project's reference holds the helper thread
    assert busy.wait(5)
    try:
        refs = ReferenceGradients()
        refs.start("v0", rt.network, rt.params, train, seed)
        began = time.monotonic()
        mean = refs.take("v0", rt.network, rt.params, train, seed)
        assert time.monotonic() - began < 1.0  # not the 5 s the other project's work would hold it
        np.testing.assert_array_equal(mean, reference_gradient(rt.network, rt.params, train, seed))
    finally:
        release.set()
