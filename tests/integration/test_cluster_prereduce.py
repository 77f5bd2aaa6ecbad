"""The pre-reduce seam without Ray: one process, one gateway and three gateways given the same client gradients
end with the same parameters, and the project side refuses hostile partials without keeping any of them."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mlitb.cluster.core import LocalUpstream, ProjectCore
from mlitb.cluster.gateway import GatewayRuntime
from mlitb.cluster.partial import Partial, PartialSum
from mlitb.config import Settings
from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import ProjectSpec
from mlitb.protocol import MessageType, decode, encode
from tests.helpers import TINY_NETWORK, running, tiny_dataset

CLIENTS, ROUNDS = 6, 4


def gradient(client: int, version: int, size: int) -> tuple[np.ndarray, int]:
    """Client `client`'s gradient sum and sample count in round `version`: the same whichever process takes it."""
    rng = np.random.default_rng(1000 * client + version)
    samples = 3 + client
    return (rng.standard_normal(size) * samples).astype(np.float32), samples


class ScriptedLink:
    """A trainer that answers each WORK frame at once with its scripted GRADIENT frame, through the runtime's checks."""

    def __init__(self, client: int, rounds: int, make=None):
        self.client, self.rounds = client, rounds
        self.make = make or gradient  # (client, version, size) -> (gradient sum, samples)
        self.runtime = None
        self.cid = None
        self.sent_nan = False

    def send(self, frame: bytes) -> bool:
        f = decode(frame, len(frame))
        if f.type == MessageType.WORK and f.round < self.rounds:  # silent from then on: no further step
            grad, samples = self.make(self.client, f.round, self.runtime.param_count)
            out = decode(encode(MessageType.GRADIENT, project=self.runtime.id, round=f.round, count=samples,
                                value=1.5 * samples, payload=grad), 1 << 20)
            asyncio.get_running_loop().call_soon(self.runtime.on_frame, self.cid, out)
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        pass


def spec() -> ProjectSpec:
    return ProjectSpec(name="tiny", network=TINY_NETWORK, hyper={"period_s": 5.0, "aggregation": "mean", "spot_checks": False})


def join(runtime: ProjectRuntime, clients: list[int], rounds: int = ROUNDS) -> None:
    for k in clients:
        link = ScriptedLink(k, rounds)
        link.runtime = runtime
        link.cid = runtime.add_client(link, "trainer", "cpu").id


async def until(predicate, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def single_process() -> np.ndarray:
    s = spec()
    rt = ProjectRuntime(1, s, s.build_network(), tiny_dataset(), Settings())
    join(rt, list(range(CLIENTS)))
    async with running(rt):
        await until(lambda: rt.round >= ROUNDS)
    return rt.params


async def through_gateways(groups: list, s: ProjectSpec | None = None, joiner=None,
                           watch=None) -> tuple[np.ndarray, ProjectCore]:
    """The clients of `groups` (one list per gateway) through gateways to one project core until round ROUNDS;
    `joiner(gateway runtime, clients)` joins them (default `join`), `watch(core)` is called before the rounds."""
    s = s or spec()
    core = ProjectCore(ProjectRuntime(1, s, s.build_network(), tiny_dataset(), Settings()))
    if watch is not None:
        watch(core)
    names = [f"g{i}" for i in range(len(groups))]
    for name, clients in zip(names, groups):  # live with clients from the start: the first round waits for all
        core.hello(name, clients=len(clients))
    gateways = []
    for name, clients in zip(names, groups):
        gw = GatewayRuntime(1, s, s.build_network(), tiny_dataset(), Settings(), upstream=LocalUpstream(core),
                            gateway=name)
        (joiner or join)(gw, clients)
        gateways.append(gw)
    async with running(core, *gateways):
        await until(lambda: core.runtime.round >= ROUNDS)
    return core.runtime.params, core


async def test_one_gateway_gives_the_single_process_parameters_bit_for_bit():
    alone = await single_process()
    one, core = await through_gateways([list(range(CLIENTS))])
    assert np.array_equal(alone, one)
    assert [m["contributions"] for m in core.runtime.metrics[:ROUNDS]] == [CLIENTS] * ROUNDS
    assert [m["samples"] for m in core.runtime.metrics[:ROUNDS]] == [sum(3 + k for k in range(CLIENTS))] * ROUNDS


async def test_three_gateways_give_the_single_process_parameters_within_float32_tolerance():
    alone = await single_process()
    three, core = await through_gateways([[0, 3], [1, 4], [2, 5]])
    initial = ProjectRuntime(1, spec(), spec().build_network(), None, Settings()).params
    assert not np.allclose(alone, initial), "training moved the parameters"
    np.testing.assert_allclose(three, alone, rtol=1e-5, atol=1e-6)
    assert [m["gateways"] for m in core.runtime.metrics[:ROUNDS]] == [3] * ROUNDS
    assert all(m["contributions"] == CLIENTS for m in core.runtime.metrics[:ROUNDS])


def partial(**kw) -> Partial:
    base = dict(gateway="g0", version=0, sum=np.ones(15, np.float32), samples=4, loss_sum=2.0, contributions=2)
    return Partial(**{**base, **kw})


@pytest.mark.parametrize("bad, code", [
    (dict(sum=np.ones(14, np.float32)), ErrorCode.WRONG_LENGTH),
    (dict(sum=np.ones(15, np.float64)), ErrorCode.WRONG_LENGTH),
    (dict(sum=np.array([np.nan] + [0.0] * 14, np.float32)), ErrorCode.NON_FINITE),
    (dict(samples=0), ErrorCode.BAD_SAMPLE_COUNT),
    (dict(samples=10 ** 9), ErrorCode.BAD_SAMPLE_COUNT),
    (dict(contributions=0), ErrorCode.BAD_SAMPLE_COUNT),
    (dict(samples=4.0), ErrorCode.BAD_VALUE),
    (dict(loss_sum=float("inf")), ErrorCode.BAD_VALUE),
    (dict(loss_sum=-1.0), ErrorCode.BAD_VALUE),
    (dict(version=3), ErrorCode.STALE_ROUND),
])
def test_the_project_refuses_a_hostile_partial_and_keeps_nothing_of_it(bad, code):
    agg = PartialSum(0, 15, max_samples_per_contribution=1000)
    with pytest.raises(MlitbError) as err:
        agg.add(partial(**bad))
    assert err.value.code is code
    assert agg.samples == 0 and agg.contributions == 0 and not agg.gateways


def test_the_project_refuses_what_is_not_a_partial():
    with pytest.raises(MlitbError) as err:
        PartialSum(0, 15, 1000).add({"sum": [1.0] * 15})
    assert err.value.code is ErrorCode.FRAME_MALFORMED


def test_a_gateway_partial_counts_once_per_round():
    agg = PartialSum(0, 15, 1000)
    agg.add(partial())
    with pytest.raises(MlitbError) as err:
        agg.add(partial(sum=np.full(15, 5, np.float32)))
    assert err.value.code is ErrorCode.DUPLICATE_RESULT
    assert agg.samples == 4 and np.array_equal(agg.sum, np.ones(15, np.float32))


async def test_a_round_waits_for_the_live_gateways_with_clients_or_that_took_it_not_for_idle_ones():
    s = spec()
    core = ProjectCore(ProjectRuntime(1, s, s.build_network(), tiny_dataset(), Settings()))
    core.hello("busy", clients=2)
    core.hello("idle", clients=0)
    task = asyncio.create_task(core.next_round("taker", -1))
    round_task = asyncio.create_task(core.run_round())
    await until(lambda: task.done())
    assert core.expected() == {"busy", "taker"}  # "taker" took the round and is live from then on
    core.submit(partial(gateway="taker"))
    core.submit(partial(gateway="busy"))
    record = await asyncio.wait_for(round_task, 2.0)  # closed at its barrier, long before the 6 s deadline
    assert record["gateways"] == 2


async def test_a_partial_arriving_after_its_round_closed_is_refused_not_applied():
    s = spec()
    core = ProjectCore(ProjectRuntime(1, s, s.build_network(), tiny_dataset(), Settings()), grace_s=0.0)
    core.runtime.change_hyper(core.runtime.hyper.model_copy(update={"period_s": 0.05}))
    core.hello("g0")
    before = core.runtime.params
    await core.run_round()  # nobody answers: closed at the deadline, no step
    with pytest.raises(MlitbError) as err:
        core.submit(partial(version=0))
    assert err.value.code is ErrorCode.STALE_ROUND
    assert np.array_equal(core.runtime.params, before) and core.runtime.round == 1 and core.refused == 1


async def test_a_hyper_change_at_one_gateway_reaches_the_project_and_the_other_gateways():
    s = spec()
    core = ProjectCore(ProjectRuntime(1, s, s.build_network(), tiny_dataset(), Settings()))
    gateways = []
    for name, clients in (("g0", [0]), ("g1", [1])):
        core.hello(name, clients=len(clients))
        gw = GatewayRuntime(1, s, s.build_network(), tiny_dataset(), Settings(), upstream=LocalUpstream(core),
                            gateway=name)
        join(gw, clients, rounds=1000)
        gateways.append(gw)
    async with running(core, *gateways):
        await until(lambda: core.runtime.round >= 1)
        gateways[0].change_hyper(gateways[0].hyper.model_copy(update={"learning_rate": 0.0123}))
        await until(lambda: core.runtime.hyper.learning_rate == 0.0123)
        start = core.runtime.round
        await until(lambda: core.runtime.round >= start + 2)
        assert gateways[1].hyper.learning_rate == 0.0123
        assert core.runtime.metrics[-1]["learning_rate"] == 0.0123
