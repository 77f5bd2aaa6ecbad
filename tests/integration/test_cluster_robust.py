"""Robust aggregation through gateways without Ray: under every robust rule the same client gradients through one
process, one gateway and three gateways give the same aggregate each round, one address keeps one vote across
gateways, a hostile fixed-direction client is damped through gateways as in one process, and hostile votes are
refused whole (mlitb/cluster/votes.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mlitb.cluster.core import LocalUpstream, ProjectCore, not_in_cluster
from mlitb.cluster.gateway import GatewayRuntime
from mlitb.cluster.partial import Partial
from mlitb.cluster.votes import Votes, VoteSum
from mlitb.config import Settings
from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import Hyper, ProjectSpec
from tests.helpers import TINY_NETWORK, running, tiny_dataset
from tests.integration import test_cluster_prereduce as prereduce
from tests.integration.test_cluster_prereduce import ScriptedLink, gradient, until

ROBUST = ("centered_clip", "clipped_mean", "median", "trimmed_mean")
CLIENTS, ROUNDS = 6, prereduce.ROUNDS  # the rounds prereduce.through_gateways runs
HOSTILE = 99  # this client sends a huge gradient in one fixed direction every round
DIRECTION = np.arange(1, 16, dtype=np.float32) / np.linalg.norm(np.arange(1, 16))


def scripted(client: int, version: int, size: int):
    if client == HOSTILE:
        return (DIRECTION * 1e4 * 5).astype(np.float32), 5
    return gradient(client, version, size)


def spec(rule: str) -> ProjectSpec:
    return ProjectSpec(name="tiny", network=TINY_NETWORK, hyper={"period_s": 5.0, "aggregation": rule,
                                                                   "spot_checks": False})


def settings() -> Settings:
    return Settings()


def recorded(runtime: ProjectRuntime) -> list[np.ndarray]:
    """Every update the runtime applies (the aggregate of each round), in order."""
    updates, apply = [], runtime.apply_update

    def keep(update):
        updates.append(np.array(update))
        return apply(update)
    runtime.apply_update = keep
    return updates


def join(runtime: ProjectRuntime, clients) -> None:
    """`clients`: (client, address) pairs; address None is a vote of its own (exempt), else one vote per address."""
    runtime.addresses.pow_bits = lambda address, others: 0  # a second trainer from one address owes no work here
    for k, address in clients:
        link = ScriptedLink(k, ROUNDS, scripted)
        link.runtime = runtime
        link.cid = runtime.add_client(link, "trainer", "cpu", address=address).id


async def single_process(rule: str, clients) -> list[np.ndarray]:
    s = spec(rule)
    rt = ProjectRuntime(1, s, s.build_network(), tiny_dataset(), settings())
    updates = recorded(rt)
    join(rt, clients)
    async with running(rt):
        await until(lambda: rt.round >= ROUNDS)
    return updates[:ROUNDS]


async def through_gateways(rule: str, groups) -> list[np.ndarray]:
    updates = []
    await prereduce.through_gateways(groups, spec(rule), join, lambda core: updates.extend([recorded(core.runtime)]))
    return updates[0][:ROUNDS]


def same(a: list[np.ndarray], b: list[np.ndarray], exact: bool) -> None:
    assert len(a) == len(b) == ROUNDS
    for x, y in zip(a, b):
        if exact:
            assert np.array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule", ROBUST)
async def test_one_and_three_gateways_give_the_single_process_aggregate(rule):
    clients = [(k, None) for k in range(CLIENTS)]
    alone = await single_process(rule, clients)
    one = await through_gateways(rule, [clients])
    # one gateway: the same vectors in the same order; the clipped mean's class sums re-associate float64 sums
    same(alone, one, exact=rule != "clipped_mean")
    three = await through_gateways(rule, [clients[0::3], clients[1::3], clients[2::3]])
    same(alone, three, exact=False)


@pytest.mark.parametrize("rule", ("centered_clip", "median", "trimmed_mean"))
async def test_one_address_on_two_gateways_is_one_vote_as_in_one_process(rule):
    clients = [(0, "10.0.0.7"), (1, "10.0.0.7"), (2, None), (3, None), (4, None)]
    alone = await single_process(rule, clients)
    split = await through_gateways(rule, [[clients[0], clients[2], clients[3]], [clients[1], clients[4]]])
    same(alone, split, exact=False)
    apart = await single_process(rule, [(0, "10.0.0.7"), (1, "10.0.0.8")] + clients[2:])
    assert not np.allclose(alone[0], apart[0]), "the address grouping changes the aggregate"


@pytest.mark.parametrize("rule", ROBUST)
async def test_a_hostile_fixed_direction_client_is_damped_through_gateways_as_in_one_process(rule):
    clients = [(k, None) for k in range(CLIENTS)] + [(HOSTILE, None)]
    alone = await single_process(rule, clients)
    three = await through_gateways(rule, [clients[0::3], clients[1::3], clients[2::3]])
    same(alone, three, exact=False)
    mean = await through_gateways("mean", [clients[0::3], clients[1::3], clients[2::3]])
    for robust, plain in zip(three, mean):
        assert float(np.dot(plain, DIRECTION)) > 1000  # the mean follows the hostile client ...
        assert abs(float(np.dot(robust, DIRECTION))) < 3  # ... a robust rule keeps to the honest spread


def votes(**kw) -> Votes:
    base = dict(gateway="g0", version=0, kind="rows", rows=np.ones((2, 15), np.float32), counts=(3, 4),
                keys=("10.0.0.1", ""), samples=7, loss_sum=1.0, contributions=2)
    return Votes(**{**base, **kw})


def classes(**kw) -> Votes:
    base = dict(gateway="g0", version=0, kind="classes", rows=np.full((2, 15), 0.1), counts=(3, 4), keys=(1, 1),
                samples=7, loss_sum=1.0, contributions=2, clip_norm=1.0)
    return Votes(**{**base, **kw})


def hyper(rule: str) -> Hyper:
    return Hyper(aggregation=rule)


@pytest.mark.parametrize("rule, bad, code", [
    ("median", dict(rows=np.ones((2, 14), np.float32)), ErrorCode.WRONG_LENGTH),
    ("median", dict(rows=np.ones((2, 15), np.float64)), ErrorCode.WRONG_LENGTH),
    ("median", dict(rows=np.ones((3, 15), np.float32)), ErrorCode.WRONG_LENGTH),  # more rows than counts
    ("median", dict(rows=np.ones((2, 15), np.float32), contributions=1, samples=7), ErrorCode.WRONG_LENGTH),
    ("median", dict(rows=np.full((2, 15), np.inf, np.float32)), ErrorCode.NON_FINITE),
    ("median", dict(counts=(3, 5)), ErrorCode.BAD_SAMPLE_COUNT),  # do not add up to samples
    ("median", dict(counts=(7, 0)), ErrorCode.BAD_SAMPLE_COUNT),
    ("median", dict(counts=(3.0, 4)), ErrorCode.BAD_SAMPLE_COUNT),
    ("median", dict(keys=("10.0.0.1", "10.0.0.1")), ErrorCode.BAD_VALUE),  # one address is one vote per gateway
    ("median", dict(keys=("x" * 201, "")), ErrorCode.BAD_VALUE),
    ("median", dict(contributions=5000), ErrorCode.BAD_SAMPLE_COUNT),  # more than a project's clients
    ("median", dict(kind="classes"), ErrorCode.INVALID_HYPER),
    ("median", dict(version=2), ErrorCode.STALE_ROUND),
    ("clipped_mean", dict(rows=np.full((2, 15), 1.0)), ErrorCode.BAD_VALUE),  # norm > 1 clipped mean
    ("clipped_mean", dict(counts=(3, 3)), ErrorCode.BAD_SAMPLE_COUNT),  # a count is one class
    ("clipped_mean", dict(keys=(1, 2)), ErrorCode.BAD_SAMPLE_COUNT),  # classes do not add up to the samples
    ("clipped_mean", dict(clip_norm=2.0, rows=np.full((2, 15), 0.3)), ErrorCode.INVALID_HYPER),  # another clip norm
    ("clipped_mean", dict(rows=np.full((2, 15), 0.1, np.float32)), ErrorCode.WRONG_LENGTH),
])
def test_the_project_refuses_hostile_votes_and_keeps_nothing_of_them(rule, bad, code):
    agg = VoteSum(0, 15, 1000, hyper(rule), max_rows=4096)
    with pytest.raises(MlitbError) as err:
        agg.add((votes if rule == "median" else classes)(**bad))
    assert err.value.code is code
    assert agg.samples == 0 and not agg.gateways


def test_a_round_takes_only_its_rules_kind_of_partial():
    with pytest.raises(MlitbError) as err:
        VoteSum(0, 15, 1000, hyper("median"), 4096).add(
            Partial("g0", 0, np.ones(15, np.float32), 7, 1.0, 2))
    assert err.value.code is ErrorCode.FRAME_MALFORMED


def test_what_gateways_do_not_carry_is_refused_by_name():
    assert not_in_cluster(hyper("centered_clip")) is None
    assert "async" in not_in_cluster(Hyper(mode="async"))
    assert "deterministic" in not_in_cluster(Hyper(deterministic=True))
