"""The sim part of bench/async.py: in-process trainers with emulated speeds and a real learning signal (softmax
regression, or the paper's network, on MNIST in NumPy: NETWORKS), driven through the real runtime, scheduler and
strategies (in memory, no sockets).

A trainer's speed is emulated: given work time W it computes speed x W samples (multiples of 32; of 8 for the paper
network) and answers after W plus its round trip. Runs use a virtual clock by default (`VirtualClockLoop`):
asyncio's timers fire in order, but time only advances when the loop would otherwise wait, so the CPU time of this
process (the simulated trainers' gradients, the test-error evaluations, the server's own work) costs no simulated
time. That makes a run independent of this machine's load (2 shared cores) and about 20x faster than real time, so
each mode can be run over a grid of settings and several seeds. What it leaves out is the server's CPU time per
result, which the scale part measures over real sockets. `clock="wall"` runs the same fleet in real time.
"""

from __future__ import annotations

import asyncio
import math
import random
import selectors
import time
from typing import Callable, NamedTuple

import numpy as np

from bench.convergence import paper_forward_error
from mlitb.config import Settings
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import ProjectSpec
from mlitb.master.transport import MemoryLink
from mlitb.model import PAPER_NETWORK
from mlitb.protocol import MessageType, decode, encode
from mlitb.trust.numpy_net import gradient_sum
from tests.mnist_softmax import SOFTMAX_REGRESSION, error_rate, probabilities


def _softmax_gradient(network, params, images, labels):
    p = probabilities(params, images)
    x = images.reshape(len(images), -1).astype(np.float32) / 255
    rows = np.arange(len(images))
    loss = float(-np.log(p[rows, labels] + 1e-12).sum())
    p[rows, labels] -= 1  # d(summed loss)/d(logits)
    return np.concatenate([(x.T @ p).ravel(), p.sum(axis=0)]).astype(np.float32), loss


class SimNetwork(NamedTuple):
    layers: list[dict]  # the network spec
    gradient: Callable  # (network, params, images, labels) -> (summed gradient, summed loss)
    test_error: Callable  # (params, split) -> share of the split misclassified
    eval_every_s: float  # simulated seconds between test-error samples
    unit: int  # a trainer computes a multiple of this many samples


# "softmax" is cheap (a grid of settings and seeds in seconds); "paper" is the network (conv 5x5x16,
# maxpool, dense; NumPy gradients as the spot checks compute them), about 1,000 samples per second of wall time.
NETWORKS = {
    "softmax": SimNetwork(SOFTMAX_REGRESSION, _softmax_gradient, error_rate, 0.25, 32),
    "paper": SimNetwork(PAPER_NETWORK, gradient_sum,
                        lambda p, split: paper_forward_error(p, split.images, split.labels), 1.0, 8),
}


class _NoWaitSelector(selectors.DefaultSelector):
    """Polls without blocking and moves the loop's virtual clock on by the time the loop would have waited."""

    loop: "VirtualClockLoop"

    def select(self, timeout=None):
        events = super().select(0)
        if not events and timeout:
            self.loop.now += timeout
        return events


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop on simulated time: `time()` is `now`, which advances only when nothing is ready to run."""

    def __init__(self) -> None:
        selector = _NoWaitSelector()
        super().__init__(selector)
        selector.loop = self
        self.now = 0.0

    def time(self) -> float:
        return self.now


def run(coro, clock: str):
    if clock == "wall":
        return asyncio.run(coro)
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


class SpeedTrainer:
    def __init__(self, rt: ProjectRuntime, split, speed: float, rtt_s: float, seed: int, network: str = "softmax"):
        self.rt, self.split, self.speed, self.rtt_s = rt, split, speed, rtt_s
        self.net = NETWORKS[network]
        self.rng = np.random.default_rng(seed)
        self.link = MemoryLink()
        self.client = rt.add_client(self.link, "trainer", "memory")
        self.ids = np.zeros(0, np.uint32)
        self.params = None
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while (data := await self.link.inbox.get()) is not None:
            f = decode(data, 1 << 30)
            if f.type == MessageType.ALLOC:
                self.ids = f.uint32s().copy()
            elif f.type == MessageType.PARAMS:
                self.params = f.floats().copy()
            elif f.type == MessageType.WORK and len(self.ids):
                unit = self.net.unit
                n = max(unit, int(self.speed * f.aux / 1000) // unit * unit)
                # past its held examples it goes round them again, as the browser trainer does (a fast device
                # holds 3,000 examples and computes more than that in a period)
                if n <= len(self.ids):
                    pick = self.rng.choice(self.ids, size=n, replace=False)
                else:
                    rounds = -(-n // len(self.ids))
                    pick = np.concatenate([self.rng.permutation(self.ids) for _ in range(rounds)])[:n]
                images, labels = self.split.images[pick], self.split.labels[pick]
                grad, loss = self.net.gradient(self.rt.network, self.params, images, labels)
                compute_ms = 1000 * n / self.speed
                await asyncio.sleep(compute_ms / 1000 + self.rtt_s)
                if self.client.id not in self.rt.clients:
                    return
                try:
                    self.rt.on_frame(self.client.id, decode(encode(
                        MessageType.GRADIENT, project=self.rt.id, round=f.round, count=len(pick), aux=int(compute_ms),
                        value=loss, payload=grad), self.rt.max_frame_bytes))
                except Exception:
                    self.rt.note_rejected()

    def leave(self) -> None:
        self.rt.remove_client(self.client.id)
        self.link.close()


async def sim_run(hyper: dict, data, spread: float, churn_per_min: float, budget_s: float, target: float,
                  clients: int = 16, seed: int = 0, median_sps: float = 300.0, network: str = "softmax",
                  speeds: list[float] | None = None) -> dict:
    """One run; returns time_to_target (None if not reached), end_error, updates_per_s, samples_per_s, staleness.
    `network`: a key of NETWORKS. `speeds`: each trainer's samples/s (else `clients` drawn log-uniformly over
    `spread` around `median_sps`)."""
    loop = asyncio.get_running_loop()
    net = NETWORKS[network]
    spec = ProjectSpec(name="sim", network=net.layers, hyper=hyper)
    rt = ProjectRuntime(1, spec, spec.build_network(), data, Settings(), clock=loop.time)
    rng = random.Random(seed)
    drawn = [median_sps * math.exp(rng.uniform(-0.5, 0.5) * math.log(spread)) for _ in range(clients)]
    speeds = list(speeds) if speeds is not None else drawn
    trainers = {i: SpeedTrainer(rt, data.train, s, rng.uniform(0.01, 0.05), seed * 1000 + i, network)
                for i, s in enumerate(speeds)}

    def churn_tick() -> None:  # every second, each trainer leaves with probability churn/60 and rejoins later
        for i, t in list(trainers.items()):
            if t is not None and rng.random() < churn_per_min / 60:
                t.leave()
                trainers[i] = None
                loop.call_later(rng.uniform(0.5, 1.5), lambda i=i: trainers.__setitem__(
                    i, SpeedTrainer(rt, data.train, speeds[i], rng.uniform(0.01, 0.05), seed * 1000 + i + 100,
                                       network)))
        ticker[0] = loop.call_later(1.0, churn_tick)

    ticker = [loop.call_later(1.0, churn_tick)] if churn_per_min else [None]
    records: list[dict] = []
    stopped = False

    async def drive() -> None:
        while not stopped:  # a stopped strategy's update returns at once: the loop must end, not spin
            records.append(await rt.run_round())

    await asyncio.sleep(0)
    t0, points = loop.time(), []
    driver = loop.create_task(drive())
    wall0 = time.monotonic()
    while (now := loop.time() - t0) < budget_s:
        points.append((now, net.test_error(rt.params, data.test)))
        if points[-1][1] <= target:
            break
        await asyncio.sleep(net.eval_every_s)
    elapsed = loop.time() - t0
    if ticker[0]:
        ticker[0].cancel()
    stopped = True
    rt.stop()
    tasks = [driver]
    for t in trainers.values():
        if t is not None:
            t.task.cancel()
            tasks.append(t.task)
    await asyncio.gather(*tasks, return_exceptions=True)
    reached = next((t for t, e in points if e <= target), None)
    stale = [r["staleness_mean"] for r in records if r.get("staleness_mean") is not None]
    return {"time_to_target": reached, "end_error": points[-1][1], "elapsed": elapsed, "points": points,
            "updates_per_s": len(records) / elapsed if elapsed else 0.0,
            "samples_per_s": sum(r["samples"] for r in records) / elapsed if elapsed else 0.0,
            "staleness": float(np.mean(stale)) if stale else 0.0, "wall_s": time.monotonic() - wall0}
