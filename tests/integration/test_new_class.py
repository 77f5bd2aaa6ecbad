"""Learning a new class on the fly over REST: the picture joins the data, a new label grows the output
layer between rounds, every worker is told, and all of it survives a restart."""

import asyncio
import io

import httpx
import numpy as np
import pytest
import websockets
from PIL import Image

from mlitb.config import Settings
from mlitb.model import parse_network, split_weights
from mlitb.protocol import MessageType, decode, encode
from mlitb.server.run import BackgroundServer
from mlitb.store import ProjectStore
from mlitb.workers.simulated import MemoryTrainer
from tests.helpers import digits_zip, make_runtime

NET = [{"type": "input", "shape": [28, 28, 1]}, {"type": "flatten"}, {"type": "dense", "units": 3, "activation": "softmax"}]


def png(shade: int = 200, size=(40, 30)) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full(size[::-1], shade, np.uint8)).save(out, "PNG")
    return out.getvalue()


def create(url, network=NET, data=True):
    p = httpx.post(f"{url}/api/projects", json={"name": "classes", "network": network}).json()
    if data:
        r = httpx.put(f"{url}/api/projects/{p['id']}/data/train", content=digits_zip(10, (0, 1, 2)),
                      headers={"Content-Type": "application/zip", "Authorization": f"Bearer {p['owner_token']}"},
                      timeout=60)
        assert r.status_code == 200, r.text
    return p


def add(url, p, label, body=None, ctype="image/png", token="owner"):
    headers = {"Content-Type": ctype}
    if token:
        headers["Authorization"] = f"Bearer {p['owner_token'] if token == 'owner' else token}"
    return httpx.post(f"{url}/api/projects/{p['id']}/examples", params={"label": label},
                      content=png() if body is None else body, headers=headers, timeout=30)


def test_a_new_label_adds_an_output_unit_and_the_picture_joins_the_training_data(server):
    p = create(server.url)
    before = httpx.get(f"{server.url}/api/projects/{p['id']}").json()
    r = add(server.url, p, "cat")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["new_class"] is True and body["class_index"] == 3 and body["labels"] == ["0", "1", "2", "cat"]
    assert body["train_count"] == 31 and body["param_count"] == before["param_count"] + 784 + 1
    after = httpx.get(f"{server.url}/api/projects/{p['id']}").json()  # no trainers: applied at once
    assert after["num_classes"] == 4 and after["labels"][-1] == "cat" and after["param_count"] == body["param_count"]
    model = httpx.get(f"{server.url}/api/projects/{p['id']}/model/model.json").json()
    assert model["weightsManifest"][0]["weights"][-1]["shape"] == [4]
    weights = np.frombuffer(httpx.get(f"{server.url}/api/projects/{p['id']}/model/weights.bin").content, "<f4")
    kernel = split_weights(parse_network(after["network"]), weights)["dense_2/kernel"]
    assert kernel.shape == (784, 4) and not kernel[:, 3].any() and kernel[:, :3].any()
    # the picture, resized and greyscaled, is the last training example, labelled with the new class
    got = httpx.get(f"{server.url}/api/projects/{p['id']}/data/train", params={"start": 30, "count": 1}).content
    assert got[0] == 3 and set(got[1:]) == {200}
    again = add(server.url, p, "cat", png(100)).json()  # a known label: no new unit
    assert again["new_class"] is False and again["class_index"] == 3 and again["param_count"] == body["param_count"]
    assert again["train_count"] == 32


def test_connected_workers_get_the_new_topology_and_keep_the_examples_they_hold(server):
    p = create(server.url)

    async def run():
        async with websockets.connect(server.url.replace("http://", "ws://") + "/ws") as ws:
            await ws.send(encode(MessageType.JOIN, project=p["id"], payload={"role": "trainer"}))
            frames = []

            async def until(pred):
                while not any(pred(f) for f in frames):
                    frames.append(decode(await asyncio.wait_for(ws.recv(), 15), 1 << 26))
                return next(f for f in frames if pred(f))

            first = (await until(lambda f: f.type == MessageType.WELCOME)).json()
            await until(lambda f: f.type == MessageType.WORK)
            reply = await asyncio.to_thread(add, server.url, p, "new")  # a round is open: applied at the next one
            assert reply.status_code == 200 and reply.json()["from_round"] >= 1
            welcome = (await until(lambda f: f.type == MessageType.WELCOME and f.json()["param_count"] != first["param_count"])).json()
            alloc = await until(lambda f: f.type == MessageType.ALLOC and 30 in f.uint32s().tolist())
            params = await until(lambda f: f.type == MessageType.PARAMS and f.count == welcome["param_count"])
            # a gradient of the grown size is read whole (the connection's read-time cap follows the model)
            work = await until(lambda f: f.type == MessageType.WORK and f.round == params.round)
            await ws.send(encode(MessageType.GRADIENT, project=p["id"], round=work.round, count=1, value=1.0,
                                 payload=np.zeros(welcome["param_count"], np.float32)))
            await until(lambda f: f.type == MessageType.PARAMS and f.round == params.round + 1)
            assert not [f.json() for f in frames if f.type == MessageType.ERROR]
            return first, welcome, alloc, params

    first, welcome, alloc, params = asyncio.run(run())
    assert welcome["param_count"] == first["param_count"] + 785
    assert welcome["data"]["labels"][-1] == "new" and welcome["data"]["num_classes"] == 4
    assert welcome["data"]["train_count"] == 31 and welcome["data"]["version"] != first["data"]["version"]
    assert welcome["data"]["base_version"] == first["data"]["base_version"]  # held examples stay valid
    assert len(params.floats()) == welcome["param_count"]


@pytest.mark.parametrize("kwargs,status,code", [
    ({"token": None}, 401, "AUTH_REQUIRED"),
    ({"token": "someone-else"}, 403, "FORBIDDEN"),
    ({"ctype": "text/plain"}, 415, "WRONG_CONTENT_TYPE"),
    ({"body": b"\x89PNG\r\n\x1a\n not really"}, 422, "BAD_IMAGE"),
    ({"body": b"GIF89a" + bytes(30), "ctype": "image/png"}, 422, "BAD_IMAGE"),
    ({"label": "a/b"}, 422, "INVALID_REQUEST"),
    ({"label": ""}, 422, "INVALID_REQUEST"),
])
def test_bad_examples_are_refused_with_a_readable_code_and_change_nothing(server, kwargs, status, code):
    p = create(server.url)
    label = kwargs.pop("label", "dog")
    r = add(server.url, p, label, **kwargs)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert httpx.get(f"{server.url}/api/projects/{p['id']}").json()["num_classes"] == 3


def test_a_project_without_data_or_without_a_dense_output_cannot_take_a_class(server):
    assert add(server.url, create(server.url, data=False), "x").json()["code"] == "NO_DATA"
    conv = [{"type": "input", "shape": [28, 28, 1]},
            {"type": "conv2d", "filters": 3, "kernel": 28, "padding": "valid"}, {"type": "flatten"}, {"type": "softmax"}]
    r = add(server.url, create(server.url, conv), "x")
    assert (r.status_code, r.json()["code"]) == (409, "CANNOT_ADD_CLASS")
    assert add(server.url, create(server.url, conv), "1").status_code == 200  # a known label needs no new unit


def test_new_classes_and_examples_survive_a_restart_even_before_the_next_checkpoint(tmp_path):
    with BackgroundServer(Settings(port=0, data_dir=tmp_path)) as srv:
        p = create(srv.url)
        old_params = np.frombuffer(httpx.get(f"{srv.url}/api/projects/{p['id']}/model/weights.bin").content, "<f4").copy()
        assert add(srv.url, p, "star").status_code == 200
        assert add(srv.url, p, "moon", png(50)).status_code == 200
    # a crash between storing the examples (with the grown spec) and the next checkpoint: the stored
    # parameters are still those from before the new classes
    store = ProjectStore(tmp_path / "mlitb.sqlite3")
    store.save_checkpoint(p["id"], 0, old_params, np.zeros_like(old_params), [], 0.0)
    store.close()
    with BackgroundServer(Settings(port=0, data_dir=tmp_path)) as srv:
        info = httpx.get(f"{srv.url}/api/projects/{p['id']}").json()
        assert info["labels"] == ["0", "1", "2", "star", "moon"] and info["num_classes"] == 5
        weights = np.frombuffer(httpx.get(f"{srv.url}/api/projects/{p['id']}/model/weights.bin").content, "<f4")
        kernel = split_weights(parse_network(info["network"]), weights)["dense_2/kernel"]
        assert np.array_equal(kernel[:, :3], old_params[:784 * 3].reshape(784, 3)) and not kernel[:, 3:].any()
        got = httpx.get(f"{srv.url}/api/projects/{p['id']}/data/train", params={"start": 30, "count": 2}).content
        assert list(got[:2]) == [3, 4] and set(got[2:2 + 784]) == {200} and set(got[2 + 784:]) == {50}


async def test_a_change_requested_mid_round_is_applied_when_the_next_round_starts():
    from mlitb.data.examples import LabelledExample, with_examples
    from mlitb.model.grow import with_more_classes

    rt = make_runtime(period_s=1)  # tiny network: 2x2 inputs, 3 classes, 15 parameters
    trainer = MemoryTrainer(rt, lambda params, ids: (np.ones_like(params), max(1, len(ids)), 1.0))
    first = asyncio.create_task(rt.run_round())
    await asyncio.sleep(0)
    assert rt.open_round == 0
    grown = with_examples(rt.dataset, [LabelledExample("d", np.zeros((2, 2, 1), np.uint8))])
    assert rt.change_model_and_data(with_more_classes(rt.spec.network, 1), grown) == 1
    record = await first
    assert rt.params.size == 15 and record["classes"] == 3 and record["contributions"] == 1  # round 0 is untouched
    record = await rt.run_round()
    assert rt.params.size == rt.history.size == 20 and record["classes"] == 4 and record["contributions"] == 1
    assert rt.network.num_classes == 4 and len(rt.dataset.train) == 31 and rt.allocator.owner[30] == trainer.client.id
    assert trainer.params.size == 20 and not trainer.errors


def test_a_fork_of_a_closure_keeps_the_learnt_class_and_its_pictures(server):
    dense = [{"type": "input", "shape": [28, 28, 1]}, {"type": "flatten"}, {"type": "dense", "units": 10,
                                                                              "activation": "softmax"}]
    p = httpx.post(f"{server.url}/api/projects", json={"name": "mnist", "dataset": "mnist", "network": dense}).json()
    assert add(server.url, p, "star", png(255)).status_code == 200
    owner = {"Authorization": f"Bearer {p['owner_token']}"}
    saved = httpx.post(f"{server.url}/api/projects/{p['id']}/closures", json={}, headers=owner, timeout=60)
    assert saved.status_code == 201, saved.text
    fork = httpx.post(f"{server.url}/api/closures/{saved.json()['id']}/fork", json={"mode": "continue"}, timeout=60)
    assert fork.status_code == 201, fork.text
    info = fork.json()
    assert info["num_classes"] == 11 and info["labels"][-1] == "star"
    got = httpx.get(f"{server.url}/api/projects/{info['id']}/data/train", params={"start": 60_000, "count": 1}).content
    assert got[0] == 10 and set(got[1:]) == {255}
