"""/metrics describes the present: gauges follow workers that leave, and no series vanishes or flaps when a round
has no results (a value that does not exist now is NaN, as the Prometheus text format allows)."""

from __future__ import annotations

import asyncio
import re

import httpx
import numpy as np
import websockets

from mlitb.protocol import MessageType, decode, encode
from tests.helpers import TINY_NETWORK

GAUGES = ("mlitb_trainers", "mlitb_clients", "mlitb_samples_per_second", "mlitb_latency_ms_mean",
          "mlitb_latency_ms_p95", "mlitb_latency_ms_max", "mlitb_loss", "mlitb_test_error")


def scrape(url: str, pid: int) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics").text
    return {m.group(1): float(m.group(2)) for m in re.finditer(rf'^(\w+){{project="{pid}"}} (\S+)$', text, re.M)}


async def join(url: str, pid: int, role: str):
    ws = await websockets.connect(url.replace("http://", "ws://") + "/ws")
    await ws.send(encode(MessageType.JOIN, project=pid, payload={"role": role, "backend": "test"}))
    return ws


async def answer_rounds(ws, pid: int, rounds: int) -> None:
    done = 0
    while done < rounds:
        f = decode(await asyncio.wait_for(ws.recv(), 10), 1 << 20)
        if f.type == MessageType.WORK:
            await ws.send(encode(MessageType.GRADIENT, project=pid, round=f.round, count=4, aux=5, value=4.0,
                                 payload=np.full(15, 0.1, np.float32)))
            done += 1


def test_every_series_is_there_from_the_start_and_says_nan_for_what_is_not_measured(server):
    pid = httpx.post(f"{server.url}/api/projects", json={"name": "fresh", "network": TINY_NETWORK}).json()["id"]
    values = scrape(server.url, pid)
    assert set(GAUGES) <= set(values)
    assert values["mlitb_trainers"] == 0 and values["mlitb_samples_per_second"] == 0
    for name in ("mlitb_latency_ms_mean", "mlitb_loss", "mlitb_test_error"):
        assert np.isnan(values[name]), name


def test_gauges_follow_the_workers_and_a_round_without_results_keeps_every_series(server):
    pid = httpx.post(f"{server.url}/api/projects", json={"name": "present", "network": TINY_NETWORK,
                                                         "hyper": {"period_s": 1}}).json()["id"]

    async def scenario():
        trainer = await join(server.url, pid, "trainer")
        await answer_rounds(trainer, pid, 2)
        await asyncio.sleep(0.2)
        trained = scrape(server.url, pid)
        assert trained["mlitb_trainers"] == 1 and trained["mlitb_samples_per_second"] > 0
        assert trained["mlitb_loss"] == 1.0 and trained["mlitb_latency_ms_mean"] >= 0
        # the trainer stays but stops answering: rounds close at their deadline with no results
        rounds = httpx.get(f"{server.url}/api/projects/{pid}").json()["round"]
        while httpx.get(f"{server.url}/api/projects/{pid}").json()["round"] < rounds + 2:
            await asyncio.sleep(0.1)
        silent = scrape(server.url, pid)
        assert set(silent) == set(trained)  # nothing vanished
        assert silent["mlitb_trainers"] == 1 and silent["mlitb_loss"] == trained["mlitb_loss"]
        assert silent["mlitb_latency_ms_mean"] == trained["mlitb_latency_ms_mean"]  # the newest measurement
        await trainer.close()
        for _ in range(50):
            if httpx.get(f"{server.url}/api/projects/{pid}").json()["trainers"] == 0:
                break
            await asyncio.sleep(0.1)
        return trained, scrape(server.url, pid)

    trained, left = asyncio.run(scenario())
    assert set(left) == set(trained)
    assert left["mlitb_trainers"] == 0 and left["mlitb_clients"] == 0  # as the REST API says
    assert left["mlitb_samples_per_second"] == 0 and np.isnan(left["mlitb_latency_ms_mean"])
    assert left["mlitb_loss"] == trained["mlitb_loss"]  # the model's newest training loss
