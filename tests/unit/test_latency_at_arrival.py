"""A result's round trip ends when its frame is taken in: a spot check the master runs on it (up to a burst of
its CPU) is not the trainer's latency. Counted as latency, a CIFAR-size project's checks cut its public
trainer's work time to 0.41 of T minus its round trip (bench/work_fill.py --public)."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from mlitb.config import Settings
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import ProjectSpec
from mlitb.protocol import MessageType, encode
from mlitb.trust import numpy_net, spot_check
from mlitb.workers.simulated import MemoryTrainer
from tests.helpers import TINY_NETWORK, tiny_dataset
from tests.integration.test_strategies import PlainSgd

CHECK_S = 0.3


async def test_the_time_a_spot_check_takes_is_not_counted_in_the_checked_trainers_latency(monkeypatch):
    real_advance = numpy_net.GradientJob.advance

    def slow_advance(job, examples):  # a check as long as a CIFAR-size batch's
        time.sleep(CHECK_S)
        real_advance(job, examples)

    monkeypatch.setattr(numpy_net.GradientJob, "advance", slow_advance)
    monkeypatch.setattr(spot_check, "difference", lambda *args: 0.0)  # the result passes its check
    spec = ProjectSpec(name="tiny", network=TINY_NETWORK,
                       hyper={"period_s": 2, "learning_rate": 0.1, "aggregation": "mean", "spot_checks": True})
    rt = ProjectRuntime(1, spec, spec.build_network(), tiny_dataset(30), Settings(), optimizer=PlainSgd())
    rt.spot.rng.random = lambda: 0.0  # every result is drawn for a check
    trainer = MemoryTrainer(rt, None, address="203.0.113.5")  # a public trainer: its results are checked
    await asyncio.sleep(0)
    task = asyncio.get_running_loop().create_task(rt.run_round())
    for _ in range(3):
        await asyncio.sleep(0)
    began = time.monotonic()
    assert trainer.send(encode(MessageType.GRADIENT, project=rt.id, round=0, count=4, aux=5, value=0.4,
                               payload=np.zeros(rt.param_count, np.float32))) is None
    assert time.monotonic() - began >= CHECK_S  # it was checked, on the spot
    record = await task
    assert rt.spot.stats.checks == 1 and record["contributions"] == 1
    client = trainer.client
    # the estimate starts at 100 ms and falls toward the sample (about 0 here); with the check it rose to ~300
    assert client.latency_ms < 100, client.latency_ms
