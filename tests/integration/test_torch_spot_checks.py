"""An honest torch worker in a spot-checked project (its address is not exempt, so WORK carries a seed) follows the
seeded order, sends per-batch commitments (payload kind 6) and is never struck: every result's commitments agree
with its sum, and every recomputed batch of the paper's conv net (pools: the loosest engine differences) agrees
with its commitment within the network's tolerance."""

from __future__ import annotations

import asyncio

import httpx
import torch

from mlitb.config import Settings
from mlitb.model import PAPER_NETWORK
from mlitb.server.run import BackgroundServer
from mlitb.workers.native.client import NativeWorker, Options
from tests.helpers import wait_for

torch.set_num_threads(1)


async def test_an_honest_torch_worker_commits_to_its_batches_and_is_never_struck(tmp_path):
    settings = Settings(port=0, data_dir=tmp_path / "data", trainer_capacity=600, address_limits_exempt=())
    with BackgroundServer(settings) as srv:
        body = {"name": "checked torch", "dataset": "mnist", "network": PAPER_NETWORK, "hyper": {"period_s": 1}}
        p = httpx.post(f"{srv.url}/api/projects", json=body).json()
        stop = asyncio.Event()
        worker = NativeWorker(Options(srv.url, p["id"], "trainer", cache_dir=tmp_path / "cache"))
        task = asyncio.create_task(worker.run(stop))
        try:
            await wait_for(lambda: (httpx.get(f"{srv.url}/api/projects/{p['id']}/metrics").json() or [{}])[-1]
                           .get("spot_checks_batch_total", 0) >= 8, 180, "8 checked batches")
        finally:
            stop.set()
            await task
        runtime = srv.server.config.app.state.registry.get(p["id"])
        stats = runtime.spot.stats
        # a result late for its round is refused STALE_ROUND (a loaded CI machine did so once); nothing else may be
        refused = [e for e in worker.status.errors if "STALE_ROUND" not in e]
        assert stats.failed == 0 and stats.quarantined == 0 and not refused, worker.status.errors
        assert stats.committed >= stats.batch_checks >= 8 and stats.checks == stats.batch_checks
        assert stats.worst <= runtime._tolerance()
        # a check recomputes one committed batch (<= the project's 32), not the whole result
        assert stats.samples <= 32 * stats.checks
        print(f"torch vs NumPy, worst committed batch difference {stats.worst:.2g} "
              f"(tolerance {runtime._tolerance():g}) over {stats.checks} checks")
