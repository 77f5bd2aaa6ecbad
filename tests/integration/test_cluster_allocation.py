"""Data allocation through gateways without Ray (mlitb/cluster/shares.py): the project cuts the training ids into
disjoint shares sized by what each gateway's trainers can hold, and each gateway allocates within its own. What the
trainers hold is read from the ALLOC frames they receive."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mlitb.cluster.core import LocalUpstream, ProjectCore
from mlitb.cluster.gateway import GatewayRuntime
from mlitb.config import Settings
from mlitb.data import Dataset, Split
from mlitb.data.examples import LabelledExample, with_examples
from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.loop import ProjectRuntime
from mlitb.protocol import MessageType, decode
from tests.helpers import running, tiny_dataset
from tests.integration.test_cluster_prereduce import ScriptedLink, spec, until

CAPACITY = 8  # examples one trainer may hold
SETTINGS = dict(trainer_capacity=CAPACITY, refresh_every=10 ** 6)  # no data refreshment unless a test asks


class Trainer(ScriptedLink):
    """Answers every round; `held`: the ids of the last ALLOC frame, `allocs`: every ALLOC as (round, ids)."""

    def __init__(self, client: int):
        super().__init__(client, rounds=10 ** 9)
        self.held: set[int] = set()
        self.allocs: list[tuple[int, list[int]]] = []

    def send(self, frame: bytes) -> bool:
        f = decode(frame, len(frame))
        if f.type == MessageType.ALLOC:
            self.held = set(np.frombuffer(f.payload, "<u4").tolist())
            self.allocs.append((f.round, sorted(self.held)))
        return super().send(frame)


def trainers_at(runtime: ProjectRuntime, count: int, first: int = 0) -> list[Trainer]:
    out = []
    for k in range(first, first + count):
        link = Trainer(k)
        link.runtime = runtime
        link.cid = runtime.add_client(link, "trainer", "cpu").id
        out.append(link)
    return out


class Cluster:
    """A project core on a clock that can jump ahead (a gateway that stops calling is then no longer live) and
    gateways with trainers; at every round the core closes it records whether the trainers' ids overlapped."""

    def __init__(self, examples: int, **settings):
        self.ahead = 0.0
        s, self.settings = spec(), Settings(**{**SETTINGS, **settings})
        rt = ProjectRuntime(1, s, s.build_network(), tiny_dataset(examples), self.settings,
                            clock=lambda: time.monotonic() + self.ahead)
        self.core = ProjectCore(rt)
        self.gateways: dict[str, GatewayRuntime] = {}
        self.trainers: dict[str, list[Trainer]] = {}
        self.overlaps: list[int] = []
        finish = rt.finish_update

        def checked(stats, aggregate):  # between the gateways' steps: each has sent its ALLOC frames whole
            # an id of one data set is another example than the same id of new data that replaced it
            held = [{(self.gateways[name].dataset.stable_version, i) for i in t.held}
                    for name in self.gateways if name not in self.dead for t in self.trainers[name]]
            self.overlaps.append(sum(map(len, held)) - len(set().union(*held)))
            return finish(stats, aggregate)
        rt.finish_update = checked
        self.dead: set[str] = set()

    def add(self, name: str, trainers: int) -> GatewayRuntime:
        s = spec()
        gw = GatewayRuntime(1, s, s.build_network(), tiny_dataset(len(self.core.runtime.dataset.train)),
                            self.settings, upstream=LocalUpstream(self.core), gateway=name)
        self.gateways[name] = gw
        self.trainers[name] = trainers_at(gw, trainers, first=100 * len(self.gateways))
        return gw

    def held(self, name: str) -> set[int]:
        return set().union(*(t.held for t in self.trainers[name]))

    def all_held(self, *names: str) -> list[set[int]]:
        return [t.held for name in (names or self.gateways) for t in self.trainers[name]]

    def disjoint_and_covering(self, count: int, *names: str) -> bool:
        held = self.all_held(*names)
        union = set().union(*held)
        return sum(map(len, held)) == len(union) == count


@pytest.mark.parametrize("examples, covered", [(60, 48), (30, 30)])
async def test_three_gateways_trainers_hold_disjoint_ids_covering_what_the_fleet_can_hold(examples, covered):
    c = Cluster(examples)
    for name, count in (("g0", 3), ("g1", 2), ("g2", 1)):  # capacities 24, 16 and 8: 48 in all
        c.add(name, count)
    async with running(c.core, *c.gateways.values()):
        await until(lambda: c.disjoint_and_covering(covered))
        start = c.core.runtime.round
        await until(lambda: c.core.runtime.round >= start + 3)
        assert c.disjoint_and_covering(covered)  # and it stays so
    assert not any(c.overlaps), "no id is held at two gateways at any round"
    if examples > 48:  # beyond the capacity every trainer is full; within it every id is held
        assert all(len(t.held) == CAPACITY for name in c.gateways for t in c.trainers[name])


async def test_a_dead_gateways_share_goes_to_the_other_gateways_whose_trainers_keep_theirs():
    c = Cluster(30)
    for name, count in (("g0", 3), ("g1", 2), ("g2", 2)):  # 24 + 16 + 16: 10 ids each
        c.add(name, count)
    async with running(c.core, c.gateways["g0"], c.gateways["g1"]):
        async with running(c.gateways["g2"]):
            await until(lambda: c.disjoint_and_covering(30) and len(c.held("g2")) == 10)
        before = {name: c.held(name) for name in ("g0", "g1")}
        c.dead.add("g2")
        c.ahead += 100.0  # g2 has not called for longer than the live window
        for name in ("g0", "g1"):  # the live ones said hello meanwhile (a gateway actor does every second)
            c.core.hello(name)
        await until(lambda: c.disjoint_and_covering(30, "g0", "g1"))
        assert "g2" not in c.core.live()
    assert all(before[name] <= c.held(name) for name in ("g0", "g1"))
    assert len(c.held("g0")) == len(c.held("g1")) == 15
    assert not any(c.overlaps)


async def test_when_a_gateway_joins_the_others_trainers_keep_what_they_hold_and_only_its_share_moves():
    c = Cluster(30)
    for name, count in (("g0", 3), ("g1", 2)):
        c.add(name, count)
    async with running(c.core, c.gateways["g0"], c.gateways["g1"]):
        await until(lambda: c.disjoint_and_covering(30) and len(c.held("g0")) == 15)
        before = {t.client: set(t.held) for name in ("g0", "g1") for t in c.trainers[name]}
        newcomer = c.add("g2", 2)
        async with running(newcomer):
            await until(lambda: c.disjoint_and_covering(30) and len(c.held("g2")) == 10)
    after = {t.client: set(t.held) for name in ("g0", "g1") for t in c.trainers[name]}
    assert all(after[k] <= before[k] for k in before), "no trainer of g0 or g1 was given another id"
    lost = set().union(*before.values()) - set().union(*after.values())
    assert lost == c.held("g2") and len(lost) == 10  # what moved is the newcomer's share, nothing more
    assert not any(c.overlaps)


async def test_a_hostile_capacity_report_is_refused_or_clamped_and_starves_no_other_gateway():
    c = Cluster(40)
    for bad in (-1, 2.5, "lots", True):
        with pytest.raises(MlitbError) as err:
            c.core.hello("liar", capacity=bad)
        assert err.value.code is ErrorCode.BAD_VALUE
        with pytest.raises(MlitbError):
            await c.core.next_round("liar", -1, capacity=bad)
    assert "liar" not in c.core.gateways and "liar" not in c.core.shares.capacity
    c.core.hello("liar", capacity=10 ** 12)  # live, with no trainers behind the claim
    assert c.core.shares.capacity["liar"] == c.settings.max_clients_per_project * CAPACITY
    c.add("g0", 2)  # 16 examples: proportional shares would give it 40 * 16 / (40 + 16) = 11
    async with running(c.core, c.gateways["g0"]):
        await until(lambda: len(c.held("g0")) == 16)
    assert len(c.core.shares.shares["liar"]) == 24  # never more ids than there are, and g0 got all it can hold


async def test_one_gateway_allocates_exactly_as_one_process():
    rounds = 7
    s = spec()
    alone = ProjectRuntime(1, s, s.build_network(), tiny_dataset(60), Settings(**{**SETTINGS, "refresh_every": 2}))
    one_process = trainers_at(alone, 3)
    async with running(alone):
        await until(lambda: alone.round >= rounds)
    c = Cluster(60, refresh_every=2)  # 60 examples, 24 held: a refreshment every other round swaps some
    c.add("g0", 3)
    async with running(c.core, *c.gateways.values()):
        await until(lambda: c.core.runtime.round >= rounds)
    for mine, theirs in zip(one_process, c.trainers["g0"]):
        assert [a for a in mine.allocs if a[0] < rounds] == [a for a in theirs.allocs if a[0] < rounds]
    assert len([a for a in one_process[0].allocs if a[0] < rounds]) >= 3  # joined, then refreshed


async def test_appended_examples_are_placed_in_one_share_and_a_new_upload_starts_over():
    c = Cluster(30)
    for name in ("g0", "g1"):  # 16 each: every id held
        c.add(name, 2)
    g0, g1 = c.gateways["g0"], c.gateways["g1"]
    async with running(c.core, g0, g1):
        await until(lambda: c.disjoint_and_covering(30))
        picture = np.full((2, 2, 1), 9, np.uint8)
        g0.change_model_and_data(g0.spec.network, with_examples(g0.dataset, [LabelledExample("a", picture)]))
        await until(lambda: c.disjoint_and_covering(31) and 30 in set().union(*c.all_held()))
        rng = np.random.default_rng(3)
        upload = Dataset("uploaded", ("x", "y", "z"), Split(rng.integers(0, 256, (12, 2, 2, 1), dtype=np.uint8),
                                                           (np.arange(12) % 3).astype(np.uint8)), None)
        g1.attach_data(upload)
        await until(lambda: c.disjoint_and_covering(12) and set().union(*c.all_held()) == set(range(12)))
        assert g0.dataset.version == upload.version and c.core.runtime.dataset.version == upload.version
    assert len(c.held("g0")) == len(c.held("g1")) == 6
    assert not any(c.overlaps), "neither the new example nor the new data was held at two gateways at any round"
