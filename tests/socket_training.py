"""Honest MNIST softmax trainers and hostile clients over real sockets against a real server (tests, bench/hostile.py).

Each trainer is `mlitb.workers.hostile.socket_trainer` from its own loopback address (127.0.0.x);
honest ones answer with the summed cross-entropy gradient of a mini-batch of their allocated
examples (tests/mnist_softmax.py), hostile ones with one of the attacks of issue 13.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import numpy as np

from mlitb.data import load_mnist
from mlitb.model import parse_network
from mlitb.trust.example_order import examples_used
from mlitb.trust.commitments import committed_gradient
from mlitb.workers.hostile import TrainerLog, hostile_answer, socket_trainer
from tests.mnist_softmax import SOFTMAX_REGRESSION, error_rate, gradient_fn

P = 7850  # parameters of SOFTMAX_REGRESSION


@dataclass
class Outcome:
    error: float  # MNIST test error of the server's parameters at the end
    rounds: int
    metrics: list[dict]
    honest: list[TrainerLog]
    hostile: list[TrainerLog]
    project: int
    honest_compute_s: float  # wall seconds the honest trainers spent computing their answers


COMMIT_BATCH = 32  # examples per committed batch (the browser trainer's default mini-batch)


def honest_answer(seed: int, batch: int = 100, commit: bool = True):
    """An honest trainer: a mini-batch of `batch` examples, in the seeded order when WORK gives a seed (spot checks
    recompute it), else drawn at random; with a seed and `commit`, with its per-batch commitments (payload kind 6)."""
    train = load_mnist().train
    gradient = gradient_fn(train, seed, batch)
    network = parse_network(SOFTMAX_REGRESSION)

    def answer(params, ids, work_ms, work_seed):
        if not work_seed:
            return gradient(params, ids)
        used = examples_used(work_seed, np.sort(ids), batch)
        grad, loss, commitment = committed_gradient(network, params, train.images[used], train.labels[used],
                                                    work_seed, COMMIT_BATCH)
        return (grad, batch, loss, commitment) if commit else (grad, batch, loss)
    return answer


def create_project(url: str, **fields) -> dict:
    body = {"name": "trust", "dataset": "mnist", "network": SOFTMAX_REGRESSION, "hyper": {"period_s": 1}, **fields}
    r = httpx.post(f"{url}/api/projects", json=body, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()


async def train(url: str, honest: list[str], hostile: list[tuple[str, str]], rounds: int, timeout_s: float = 120,
                honest_delay_s: float = 0.0, **project_fields) -> Outcome:
    """`honest`: the addresses of honest trainers; `hostile`: (address, kind) pairs. Runs `rounds` rounds of a
    new project (default settings unless `project_fields` say otherwise) and measures its test error. The honest
    trainers join `honest_delay_s` after the hostile ones (which then have the first rounds alone)."""
    pid = create_project(url, **project_fields)["id"]
    ws_url = url.replace("http://", "ws://") + "/ws"
    stop = asyncio.Event()
    honest_logs = [TrainerLog() for _ in honest]
    hostile_logs = [TrainerLog() for _ in hostile]
    computing = [0.0]

    def timed(answer):
        def run(*args):
            started = time.perf_counter()
            try:
                return answer(*args)
            finally:
                computing[0] += time.perf_counter() - started
        return run

    async def late(*args):
        await asyncio.sleep(honest_delay_s)
        await socket_trainer(*args)
    tasks = [asyncio.create_task(late(ws_url, pid, a, timed(honest_answer(i)), log, stop))
             for i, (a, log) in enumerate(zip(honest, honest_logs))]
    tasks += [asyncio.create_task(socket_trainer(ws_url, pid, a, hostile_answer(kind, honest_answer(100 + i), P, i),
                                                 log, stop))
              for i, ((a, kind), log) in enumerate(zip(hostile, hostile_logs))]
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while (current := (await http.get(f"/api/projects/{pid}")).json()["round"]) < rounds:
            assert time.monotonic() < deadline, f"only {current} of {rounds} rounds in {timeout_s} s"
            await asyncio.sleep(0.1)
        weights = np.frombuffer((await http.get(f"/api/projects/{pid}/model/weights.bin")).content, "<f4")
        metrics = (await http.get(f"/api/projects/{pid}/metrics")).json()
    stop.set()
    await asyncio.gather(*tasks)
    return Outcome(error_rate(weights, load_mnist().test), current, metrics, honest_logs, hostile_logs, pid,
                   computing[0])
