"""Uploading a zip of class folders over REST: auth, content type, size cap, allocation."""

import asyncio

import httpx
import pytest
import websockets

from mlitb.config import Settings
from mlitb.protocol import MessageType, decode, encode
from mlitb.server.run import BackgroundServer
from tests.helpers import digits_zip

NET = [{"type": "input", "shape": [28, 28, 1]}, {"type": "flatten"}, {"type": "dense", "units": 3, "activation": "softmax"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with BackgroundServer(Settings(port=0, data_dir=tmp_path_factory.mktemp("up"), max_upload_bytes=2_000_000)) as srv:
        yield srv


def create(server, network=NET):
    return httpx.post(f"{server.url}/api/projects", json={"name": "up", "network": network}).json()


def put(server, p, body, split="train", ctype="application/zip", token="owner"):
    headers = {"Content-Type": ctype}
    if token:
        headers["Authorization"] = f"Bearer {p['owner_token'] if token == 'owner' else token}"
    return httpx.put(f"{server.url}/api/projects/{p['id']}/data/{split}", content=body, headers=headers, timeout=60)


def test_an_uploaded_zip_becomes_the_projects_data_and_is_served_as_binary(server):
    p = create(server)
    r = put(server, p, digits_zip(20, (0, 1, 2)))
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["count"] == 60 and report["labels"] == ["0", "1", "2"] and report["corrupt_images"] == []
    got = httpx.get(f"{server.url}/api/projects/{p['id']}/data/train", params={"start": 0, "count": 60})
    assert got.status_code == 200 and len(got.content) == 60 * (1 + 784)
    assert sorted(set(got.content[:60])) == [0, 1, 2]
    assert put(server, p, digits_zip(5, (0, 1, 2), offset=100), split="test").json()["count"] == 15
    assert httpx.get(f"{server.url}/api/projects/{p['id']}/data/test", params={"start": 0, "count": 15}).status_code == 200


def test_a_trainer_connected_before_the_upload_gets_its_data_when_it_arrives(server):
    p = create(server)

    async def run():
        async with websockets.connect(server.url.replace("http://", "ws://") + "/ws") as ws:
            await ws.send(encode(MessageType.JOIN, project=p["id"], payload={"role": "trainer"}))
            first = decode(await ws.recv(), 1 << 24)
            assert first.type == MessageType.WELCOME and first.json()["data"] is None
            await asyncio.to_thread(put, server, p, digits_zip(20, (0, 1, 2)))
            frames = []
            while not any(f.type == MessageType.ALLOC and f.count for f in frames):
                frames.append(decode(await asyncio.wait_for(ws.recv(), 10), 1 << 24))
            return frames

    frames = asyncio.run(run())
    welcomes = [f.json() for f in frames if f.type == MessageType.WELCOME]
    assert welcomes and welcomes[-1]["data"]["train_count"] == 60
    assert frames[-1].count == 60 and len(frames[-1].uint32s()) == 60


@pytest.mark.parametrize("kwargs,status,code", [
    ({"token": None}, 401, "AUTH_REQUIRED"),
    ({"token": "someone-else"}, 403, "FORBIDDEN"),
    ({"ctype": "text/plain"}, 415, "WRONG_CONTENT_TYPE"),
    ({"split": "test"}, 409, "NO_DATA"),
])
def test_uploads_are_refused_without_the_owner_token_the_zip_type_or_training_data(server, kwargs, status, code):
    p = create(server)
    r = put(server, p, digits_zip(2, (0, 1, 2)), **kwargs)
    assert (r.status_code, r.json()["code"]) == (status, code)


def test_an_upload_past_the_size_cap_is_refused_and_leaves_nothing(server):
    p = create(server)
    r = put(server, p, b"\0" * 2_000_001)
    assert (r.status_code, r.json()["code"]) == (413, "UPLOAD_TOO_LARGE")
    assert not (server.settings.data_dir / "datasets" / str(p["id"])).exists()
    r = put(server, p, digits_zip(2, (0, 1)))  # 2 classes for a 3-output network
    assert (r.status_code, r.json()["code"]) == (422, "INVALID_NETWORK")
    assert not (server.settings.data_dir / "datasets" / str(p["id"]) / "train").exists()
    assert httpx.get(f"{server.url}/api/projects/{p['id']}/data/train", params={"start": 0, "count": 1}).status_code == 409


def test_uploads_to_an_unknown_project_are_refused(server):
    r = httpx.put(f"{server.url}/api/projects/9999/data/train", content=b"x", headers={"Content-Type": "application/zip"})
    assert (r.status_code, r.json()["code"]) == (404, "UNKNOWN_PROJECT")
