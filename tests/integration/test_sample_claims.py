"""A trainer inflating its sample count counts for no more than its measured rate and the fleet's allow (in memory)."""

import asyncio

import numpy as np

from mlitb.config import Settings
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import ProjectSpec
from mlitb.workers.simulated import MemoryTrainer
from tests.mnist_softmax import SOFTMAX_REGRESSION, mnist_subset

INFLATED = 150_000  # inside the absolute cap (200,000 per second of work), far past any honest rate here


def constant(samples: int):
    def gradient(params, ids):
        return np.full(params.size, 0.01 * samples, np.float32), samples, 0.5 * samples
    return gradient


async def test_an_inflated_count_is_cut_to_the_start_rate_then_to_eight_times_the_fleets_median():
    data = mnist_subset(600, 100)
    spec = ProjectSpec(name="claims", network=SOFTMAX_REGRESSION, hyper={"period_s": 1})
    settings = Settings()
    rt = ProjectRuntime(1, spec, spec.build_network(), data, settings)
    honest = [MemoryTrainer(rt, constant(100)) for _ in range(3)]
    liar = MemoryTrainer(rt, constant(INFLATED))
    await asyncio.sleep(0)
    first = await rt.run_round()
    assert first["samples"] == 300 + settings.claim_start_samples_per_s  # no record anywhere: the start rate
    assert first["clamped"] == 1 and first["rejected"] == 0 and not liar.errors
    records = [await rt.run_round() for _ in range(4)]
    assert all(r["clamped"] == 1 for r in records)
    # the allowance is set when the round starts, from the rates measured so far (they drift a little with the
    # work times): about 8 x the honest trainers' ~100 samples per ~0.8 s of work
    honest_rate = max(c.client.measured_sps for c in honest)
    counted = records[-1]["samples"] - 3 * 100  # the honest trainers' counts are within their allowance
    assert counted <= 1.25 * settings.claim_fleet_factor * honest_rate
    assert counted < 15 * 100  # against 100 per honest trainer, not 150,000
    for c in honest + [liar]:
        c.leave()
