"""State behind methods: loading weights, changing hyper-parameters and restoring go through the runtime, which
keeps the closure record, the optimizer state and the metrics consistent with the model."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np

from mlitb.closure import load
from mlitb.master.transport import MemoryLink
from mlitb.model import PAPER_NETWORK, glorot_init, parse_network
from tests.helpers import make_runtime, protocol_trainer

P = 31786
PROJECT = {"name": "state", "dataset": "mnist", "network": PAPER_NETWORK, "seed": 3,
           "hyper": {"period_s": 1, "learning_rate": 0.05, "deterministic": True, "samples_per_round": 4}}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def closure_of(server, project):
    info = httpx.post(f"{server.url}/api/projects/{project['id']}/closures", json={},
                      headers=bearer(project["owner_token"]))
    assert info.status_code == 201, info.text
    return load(httpx.get(f"{server.url}/api/closures/{info.json()['id']}/download").content).closure


async def wait_until_no_trainers(server, project) -> None:
    for _ in range(100):
        if httpx.get(f"{server.url}/api/projects/{project['id']}/clients").json() == []:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the trainer did not leave")


def test_a_closure_saved_after_a_weight_upload_replays_from_the_uploaded_weights(server):
    project = httpx.post(f"{server.url}/api/projects", json=PROJECT).json()
    asyncio.run(protocol_trainer(server.url, project["id"], 2))
    asyncio.run(wait_until_no_trainers(server, project))
    uploaded = np.linspace(-0.1, 0.1, P, dtype=np.float32)
    res = httpx.put(f"{server.url}/api/projects/{project['id']}/model/weights.bin", content=uploaded.tobytes(),
                    headers=bearer(project["owner_token"]))
    assert res.status_code == 200, res.text
    uploaded_at = res.json()["round"]
    asyncio.run(protocol_trainer(server.url, project["id"], 2))
    manifest = closure_of(server, project)
    start = manifest.manifest["replay"]
    # the replay starts where the weights were loaded, from those weights and a fresh optimizer state; it
    # must not start from the seed's weights and replay the rounds before the upload
    assert start["start_round"] == uploaded_at >= 2
    np.testing.assert_array_equal(manifest.floats("replay/start_weights.bin"), uploaded)
    np.testing.assert_array_equal(manifest.floats("replay/start_history.bin"), np.zeros(P, np.float32))
    assert not np.array_equal(manifest.floats("replay/start_weights.bin"),
                              glorot_init(parse_network(PAPER_NETWORK), 3))


def test_loaded_weights_reset_the_optimizer_state_and_the_test_error_of_the_old_weights():
    rt = make_runtime()
    rt.restore(5, rt.params + np.float32(1), np.full(rt.param_count, 2.0, np.float32),
               [{"round": 4, "test_error": 0.3, "test_error_round": 4}])
    assert rt.latest_eval == (4, 0.3)
    new = np.zeros(rt.param_count, np.float32)
    rt.load_weights(new)
    np.testing.assert_array_equal(rt.params, new)
    np.testing.assert_array_equal(rt.history, np.zeros(rt.param_count, np.float32))
    assert rt.latest_eval is None and rt.round == 5
    assert rt.record.replay_start[0] == 5 and rt.record.replay_start[1] is rt.params


def test_weights_cannot_be_loaded_while_a_trainer_is_connected():
    from mlitb.errors import ErrorCode, MlitbError

    rt = make_runtime()
    rt.add_client(MemoryLink(), "trainer", "memory")
    try:
        rt.load_weights(np.zeros(rt.param_count, np.float32))
    except MlitbError as err:
        assert err.code is ErrorCode.TRAINING_RUNNING
    else:
        raise AssertionError("weights were replaced under a trainer")


def test_a_hyper_change_is_in_force_for_the_next_step_and_its_metrics():
    from mlitb.master.project import Hyper

    rt = make_runtime(learning_rate=0.01)
    rt.change_hyper(Hyper.model_validate({**rt.hyper.model_dump(), "learning_rate": 0.2}))
    assert rt.spec.hyper.learning_rate == 0.2 and rt.stored_spec().hyper.learning_rate == 0.2


def test_two_runtimes_in_one_process_number_their_clients_independently():
    a, b = make_runtime(), make_runtime()
    ids_a = [a.add_client(MemoryLink(), "tracker", "memory").id for _ in range(3)]
    ids_b = [b.add_client(MemoryLink(), "tracker", "memory").id for _ in range(2)]
    assert ids_a == [1, 2, 3] and ids_b == [1, 2]
