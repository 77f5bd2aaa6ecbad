"""Churn: every few rounds 30% of the trainers leave and new ones join; training goes on,
no id stays unallocated while there is room, and the test error keeps falling."""

import asyncio

import numpy as np

from mlitb.config import Settings
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import ProjectSpec
from mlitb.workers.simulated import MemoryTrainer
from tests.mnist_softmax import SOFTMAX_REGRESSION, error_rate, gradient_fn, mnist_subset

TRAINERS, CHURN, EPOCHS, ROUNDS_PER_EPOCH = 10, 0.3, 6, 4


async def test_training_survives_30_percent_churn_every_epoch():
    data = mnist_subset(6000, 2000)
    spec = ProjectSpec(name="churn", network=SOFTMAX_REGRESSION, hyper={"period_s": 1, "learning_rate": 0.05})
    rt = ProjectRuntime(1, spec, spec.build_network(), data, Settings(trainer_capacity=1000))
    seeds = iter(range(10_000))
    trainers = [MemoryTrainer(rt, gradient_fn(data.train, next(seeds))) for _ in range(TRAINERS)]
    errors, records = [], []
    for epoch in range(EPOCHS):
        for _ in range(ROUNDS_PER_EPOCH):
            records.append(await rt.run_round())
        errors.append(error_rate(rt.params, data.test))
        leaving = trainers[: int(CHURN * TRAINERS)]
        for t in leaving:
            t.leave()
        trainers = trainers[len(leaving):] + [MemoryTrainer(rt, gradient_fn(data.train, next(seeds)))
                                               for _ in leaving]
        await asyncio.sleep(0)
    # 10 trainers x capacity 1000 >= 6000 ids: after each round's admission nothing is left unallocated
    assert all(r["unallocated"] == 0 for r in records), [r["unallocated"] for r in records]
    assert all(r["contributions"] == TRAINERS for r in records)
    assert errors[-1] < errors[0] and errors[-1] < 0.2, errors
    assert sum(e1 <= e0 + 0.02 for e0, e1 in zip(errors, errors[1:])) >= len(errors) - 2, errors


async def test_ids_beyond_total_capacity_are_reported_only_when_nobody_has_room():
    data = mnist_subset(3000, 100)
    spec = ProjectSpec(name="cap", network=SOFTMAX_REGRESSION)
    rt = ProjectRuntime(1, spec, spec.build_network(), data, Settings(trainer_capacity=1000))
    MemoryTrainer(rt, gradient_fn(data.train, 0))
    record = await rt.run_round()
    assert record["unallocated"] == 0  # 2000 ids wait, but the only trainer is full
    assert int(np.count_nonzero(rt.allocator.owner < 0)) == 2000
