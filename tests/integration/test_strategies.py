"""The strategy and optimizer seams: the runtime drives any Strategy and any ServerOptimizer through their
interfaces, over the in-memory transport, without knowing which it drives."""

from __future__ import annotations

import asyncio

import numpy as np

from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import ProjectSpec
from mlitb.master.transport import MemoryLink
from mlitb.config import Settings
from mlitb.protocol import MessageType, decode
from mlitb.training.aggregate import GradientAccumulator, all_finite
from mlitb.training.optimizers import AdaGrad
from mlitb.training.strategies import Result, SyncRounds
from mlitb.trust.credited import Credited
from mlitb.trust.spot_check import SpotChecked
from mlitb.workers.simulated import MemoryTrainer
from tests.helpers import TINY_NETWORK, tiny_dataset

TARGET = np.linspace(-1, 1, 15).astype(np.float32)


def quadratic(params, ids):
    n = max(1, len(ids))
    return (params - TARGET) * n, n, float(0.5 * np.sum((params - TARGET) ** 2) * n)


class OneResultPerUpdate:
    """A minimal asynchronous strategy written against the Host interface alone: every result is its own update
    (no barrier, no deadline) and its trainer is sent the new parameters as soon as it is applied."""

    def __init__(self) -> None:
        self.host = None
        self.open_version = None
        self.busy: dict[int, float] = {}  # trainer -> when its work went out
        self.results: asyncio.Queue[Result] = asyncio.Queue()
        self.staleness: list[int] = []

    def bind(self, host) -> None:
        self.host = host

    async def run_update(self) -> dict:
        host = self.host
        stats = host.begin_update()
        for cid in host.trainer_ids():
            if cid not in self.busy:
                self.busy[cid] = host.clock()
                host.dispatch(cid)
        self.open_version = stats.round
        result = await self.results.get()
        self.staleness.append(host.round - result.version)
        acc = GradientAccumulator(host.param_count)
        acc.add(result.grad, result.samples, result.loss_sum)
        stats.trainers = len(host.trainer_ids())
        host.observe(result, self.busy.pop(result.client_id), stats)
        self.open_version = None
        record = host.finish_update(stats, acc)
        self.busy[result.client_id] = host.clock()
        host.dispatch(result.client_id)
        host.publish()
        return record

    def on_result(self, result: Result) -> None:
        if result.client_id not in self.busy or not all_finite(result.grad):
            raise MlitbError(ErrorCode.DUPLICATE_RESULT, "no work outstanding")
        result.grad = result.grad.copy()  # the frame's buffer is not ours to keep
        self.results.put_nowait(result)

    def on_leave(self, client_id: int) -> None:
        self.busy.pop(client_id, None)

    def stop(self) -> None:
        self.open_version = None


class PlainSgd:
    """A stateless server optimizer: w -= lr * g."""

    STATE = ()

    def step(self, params, update, hyper):
        return params - np.float32(hyper.learning_rate) * update

    def state(self):
        return np.zeros(0, np.float32)

    def load(self, state):
        pass

    def reset(self, size):
        pass

    def arrays(self):
        return []

    def replace(self, arrays):
        pass


def runtime(strategy=None, optimizer=None, **hyper) -> ProjectRuntime:
    spec = ProjectSpec(name="tiny", network=TINY_NETWORK, hyper={"period_s": 1, "learning_rate": 0.1, **hyper})
    return ProjectRuntime(1, spec, spec.build_network(), tiny_dataset(30), Settings(), strategy=strategy,
                          optimizer=optimizer)


async def test_the_runtime_drives_an_asynchronous_strategy_without_a_barrier():
    strategy = OneResultPerUpdate()
    rt = runtime(strategy)
    fast = MemoryTrainer(rt, quadratic, delay_s=0.01)
    slow = MemoryTrainer(rt, quadratic, delay_s=0.035)
    tracker = MemoryTrainer(rt, None, role="tracker")
    await asyncio.sleep(0)
    records = [await rt.run_round() for _ in range(12)]
    await asyncio.sleep(0.01)
    np.testing.assert_array_equal(tracker.params, rt.params)  # every update was published to the trackers
    assert [r["round"] for r in records] == list(range(12)) and all(r["contributions"] == 1 for r in records)
    # the fast trainer was re-dispatched at once and answered more versions than the slow one; the slow one's
    # results were computed from versions that had moved on
    assert len(fast.rounds_answered) > len(slow.rounds_answered) >= 1
    assert max(strategy.staleness) >= 1
    assert records[-1]["loss"] < records[0]["loss"]
    assert not fast.errors and not slow.errors


async def test_a_swapped_server_optimizer_takes_the_step_and_its_state_is_what_checkpoints_store():
    rt = runtime(optimizer=PlainSgd(), learning_rate=0.5)
    MemoryTrainer(rt, quadratic)
    start = rt.params.copy()
    await rt.run_round()
    np.testing.assert_allclose(rt.params, start - 0.5 * (start - TARGET), rtol=1e-6)
    assert rt.checkpoint_view()[2].size == 0


async def test_the_default_strategy_and_optimizer_are_sync_rounds_and_adagrad():
    rt = runtime()
    # the runtime wraps every strategy in spot checks and credit (mlitb/trust/)
    assert isinstance(rt.strategy, Credited) and isinstance(rt.strategy.inner, SpotChecked)
    assert isinstance(rt.strategy.inner.inner, SyncRounds)
    assert isinstance(rt.optimizer, AdaGrad)
    MemoryTrainer(rt, quadratic)
    await rt.run_round()
    assert rt.history.shape == rt.params.shape and (rt.history > 0).any()


async def test_in_synchronous_rounds_a_tracker_gets_the_parameters_on_joining_and_every_round():
    rt = runtime()
    link = MemoryLink()
    rt.add_client(link, "tracker", "memory")
    MemoryTrainer(rt, quadratic)
    for _ in range(3):
        await rt.run_round()
    frames = [decode(link.inbox.get_nowait(), 1 << 30) for _ in range(link.inbox.qsize())]
    assert [f.round for f in frames if f.type == MessageType.PARAMS] == [0, 0, 1, 2]
