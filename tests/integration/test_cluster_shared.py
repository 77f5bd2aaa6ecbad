"""Changes made at one gateway reach the project and every other gateway, without Ray (mlitb/cluster/shared.py):
loaded weights, a picture of a new class (the network grows), uploaded data; a change the project refuses
(weights while another gateway has trainers) comes back to the route, and the gateway takes the project's state
again."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mlitb.cluster.core import LocalUpstream, ProjectCore
from mlitb.cluster.gateway import GatewayRegistry, GatewayRuntime
from mlitb.cluster.partial import Partial
from mlitb.config import Settings
from mlitb.data import Dataset, Split
from mlitb.data.examples import LabelledExample, with_examples
from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import ProjectSpec
from tests.helpers import TINY_NETWORK, running, tiny_dataset
from tests.integration.test_cluster_prereduce import ScriptedLink, until


def spec() -> ProjectSpec:
    return ProjectSpec(name="tiny", network=TINY_NETWORK, hyper={"period_s": 5.0, "aggregation": "mean",
                                                                   "spot_checks": False})


def cluster(names=("g0", "g1")) -> tuple[ProjectCore, dict[str, GatewayRuntime]]:
    s = spec()
    core = ProjectCore(ProjectRuntime(1, s, s.build_network(), tiny_dataset(), Settings()))
    gateways = {}
    for name in names:  # not announced live: a round closes once the gateways that asked for it answered
        gateways[name] = GatewayRuntime(1, s, s.build_network(), tiny_dataset(), Settings(),
                                        upstream=LocalUpstream(core), gateway=name)
    return core, gateways


async def one_round_at(core: ProjectCore, gw: GatewayRuntime) -> tuple[list[np.ndarray], list[int]]:
    """One trainer joins `gw` and trains one round through it; returns the parameters `gw` followed and its generation
    as each round opened (once the project stops, a gateway still asking for the next round hears the refusal and
    drops its generation to -1, so the value after the stop tells nothing)."""
    followed, generations, follow = [], [], gw.follow

    def following(version, params, hyper=None):
        followed.append(np.array(params))
        generations.append(gw.generation)
        follow(version, params, hyper)
    gw.follow = following
    link = ScriptedLink(0, 1)
    link.runtime = gw
    link.cid = gw.add_client(link, "trainer", "cpu").id
    start = core.runtime.round
    async with running(core, gw):
        await until(lambda: core.runtime.round > start)
    return followed, generations


async def test_weights_loaded_at_one_gateway_are_the_projects_and_reach_another_gateway():
    core, gw = cluster()
    weights = np.linspace(-1, 1, core.runtime.param_count, dtype=np.float32)
    gw["g0"].load_weights(weights)
    await GatewayRegistry.checkpoint(None, gw["g0"])  # what the route awaits: the project took them
    assert np.array_equal(core.runtime.params, weights) and core.generation == 1
    followed, generations = await one_round_at(core, gw["g1"])
    assert np.array_equal(followed[0], weights) and generations[0] == 1
    assert not np.array_equal(core.runtime.params, weights), "the round's step started from the loaded weights"


async def test_weights_are_refused_while_another_gateway_has_trainers_and_the_route_hears_it():
    core, gw = cluster()
    core.hello("g1", clients=2)
    before = core.runtime.params
    gw["g0"].load_weights(np.zeros(core.runtime.param_count, np.float32))
    with pytest.raises(MlitbError) as err:
        await GatewayRegistry.checkpoint(None, gw["g0"])
    assert err.value.code is ErrorCode.TRAINING_RUNNING
    assert np.array_equal(core.runtime.params, before) and core.generation == 0
    assert gw["g0"].generation == -1  # it takes the project's parameters back with its next round


async def test_a_new_class_taught_at_one_gateway_grows_the_project_and_the_other_gateway():
    core, gw = cluster()
    g0 = gw["g0"]
    picture = np.full((2, 2, 1), 7, np.uint8)
    grown = with_examples(g0.dataset, [LabelledExample("d", picture)])
    layers = [dict(layer) for layer in TINY_NETWORK]
    layers[-1]["units"] = 4
    g0.change_model_and_data(layers, grown)  # what the examples route does, after its checks
    await g0.shared()
    rt = core.runtime
    assert rt.network.num_classes == 4 and rt.dataset.labels[-1] == "d" and len(rt.dataset.train) == 31
    assert np.array_equal(rt.dataset.train.images[-1], picture) and core.generation == 1
    followed, _ = await one_round_at(core, gw["g1"])
    g1 = gw["g1"]
    assert g1.network.num_classes == 4 and g1.dataset.version == rt.dataset.version
    assert followed[0].size == rt.param_count == g1.param_count


async def test_data_uploaded_at_one_gateway_is_the_projects_and_reaches_another_gateway():
    core, gw = cluster()
    rng = np.random.default_rng(5)
    upload = Dataset("uploaded", ("x", "y", "z"), Split(rng.integers(0, 256, (12, 2, 2, 1), dtype=np.uint8),
                                                       (np.arange(12) % 3).astype(np.uint8)), None)
    gw["g0"].attach_data(upload)
    await gw["g0"].shared()
    assert core.runtime.dataset.version == upload.version and core.generation == 1
    await one_round_at(core, gw["g1"])
    assert gw["g1"].dataset.version == upload.version and gw["g1"].dataset.labels == ("x", "y", "z")


def test_the_project_checks_what_a_gateway_sends_as_hostile():
    core, _ = cluster(())
    n = core.runtime.param_count
    for bad, code in ((np.zeros(n - 1, np.float32), ErrorCode.WRONG_LENGTH), (np.zeros(n), ErrorCode.WRONG_LENGTH),
                      (np.full(n, np.nan, np.float32), ErrorCode.NON_FINITE)):
        with pytest.raises(MlitbError) as err:
            core.load_weights(bad)
        assert err.value.code is code
    for label, image in (("d", np.zeros((3, 2, 1), np.uint8)), ("d", np.zeros((2, 2, 1), np.float32)),
                         ("a/b", np.zeros((2, 2, 1), np.uint8))):
        with pytest.raises(MlitbError):
            core.add_example(label, image)
    with pytest.raises(MlitbError) as err:
        core.attach_data(Dataset("u", ("x", "y"), Split(np.zeros((2, 2, 2, 1), np.uint8), np.zeros(2, np.uint8)), None))
    assert err.value.code is ErrorCode.INVALID_NETWORK
    assert core.generation == 0 and len(core.runtime.dataset.train) == 30


async def test_an_upload_reaching_the_project_while_an_added_example_waits_for_the_next_round_stands():
    core, _ = cluster(())
    taking = asyncio.create_task(core.next_round("g0", -1))
    round_task = asyncio.create_task(core.run_round())
    await until(taking.done)
    core.add_example("a", np.full((2, 2, 1), 9, np.uint8))  # a round is open: applied when the next one begins
    rng = np.random.default_rng(5)
    upload = Dataset("uploaded", ("x", "y", "z"), Split(rng.integers(0, 256, (12, 2, 2, 1), dtype=np.uint8),
                                                       (np.arange(12) % 3).astype(np.uint8)), None)
    core.attach_data(upload)
    core.submit(Partial("g0", 0, np.ones(core.runtime.param_count, np.float32), 4, 2.0, 2))
    await round_task
    assert core.generation == 1  # the upload: the example counts once a round puts it in force
    core.runtime.begin_update()  # where the next round applies the waiting example
    assert core.runtime.dataset.version == upload.version
