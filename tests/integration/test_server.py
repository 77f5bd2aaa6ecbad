"""The real server: REST routes and real WebSocket clients speaking the binary protocol."""

import asyncio

import httpx
import numpy as np
import pytest
import websockets

from mlitb.codec import committed
from mlitb.model import PAPER_NETWORK
from mlitb.protocol import MessageType, decode, encode

PAPER = {"name": "mnist-cnn", "dataset": "mnist", "network": PAPER_NETWORK,
         "hyper": {"period_s": 1, "learning_rate": 0.01, "l2": 0.0001}}


@pytest.fixture
def project(server):
    r = httpx.post(f"{server.url}/api/projects", json=PAPER)
    assert r.status_code == 201, r.text
    yield r.json()
    httpx.delete(f"{server.url}/api/projects/{r.json()['id']}", headers=owner(r.json()))


def owner(project):
    return {"Authorization": f"Bearer {project['owner_token']}"}


def ws_url(server):
    return server.url.replace("http://", "ws://") + "/ws"


async def recv_until(ws, mtype, limit=20):
    for _ in range(limit):
        f = decode(await asyncio.wait_for(ws.recv(), 10), 1 << 30)
        if f.type == mtype:
            return f
    raise AssertionError(f"no {mtype.name} frame")


def test_projects_can_be_created_listed_read_and_deleted(server):
    r = httpx.post(f"{server.url}/api/projects", json=PAPER)
    assert r.status_code == 201
    p = r.json()
    assert p["param_count"] == 31_786 and p["name"] == "mnist-cnn" and p["round"] == 0
    assert any(x["id"] == p["id"] for x in httpx.get(f"{server.url}/api/projects").json())
    assert httpx.get(f"{server.url}/api/projects/{p['id']}").json()["hyper"]["l2"] == 0.0001
    assert httpx.delete(f"{server.url}/api/projects/{p['id']}", headers=owner(p)).status_code == 204
    r = httpx.get(f"{server.url}/api/projects/{p['id']}")
    assert r.status_code == 404 and r.json()["code"] == "UNKNOWN_PROJECT"


@pytest.mark.parametrize("patch,code,needle", [
    ({"network": [{"type": "input", "shape": [28, 28, 1]}, {"type": "capsule"}]}, "INVALID_NETWORK", "capsule"),
    ({"hyper": {"period_s": 0.5}}, "INVALID_HYPER", "period_s"),
    ({"hyper": {"period_s": 31}}, "INVALID_HYPER", "period_s"),
    ({"hyper": {"learning_rate": -1}}, "INVALID_HYPER", "learning_rate"),
    ({"dataset": "imagenet"}, "UNKNOWN_DATASET", "imagenet"),
    ({"name": ""}, "INVALID_REQUEST", "name"),
    ({"network": [{"type": "input", "shape": [32, 32, 3]}, {"type": "flatten"},
                  {"type": "dense", "units": 10, "activation": "softmax"}]}, "INVALID_NETWORK", "does not match"),
])
def test_invalid_project_requests_get_a_readable_error_code(server, patch, code, needle):
    r = httpx.post(f"{server.url}/api/projects", json={**PAPER, **patch})
    assert r.status_code in (404, 413, 422), r.text
    assert r.json()["code"] == code and needle in r.json()["message"]


def test_period_at_its_limits_is_accepted(server):
    for period in (1, 30):
        r = httpx.post(f"{server.url}/api/projects", json={**PAPER, "hyper": {"period_s": period}})
        assert r.status_code == 201
        httpx.delete(f"{server.url}/api/projects/{r.json()['id']}", headers=owner(r.json()))


def test_model_json_and_weights_match_the_servers_parameters(server, project):
    base = f"{server.url}/api/projects/{project['id']}/model"
    doc = httpx.get(f"{base}/model.json").json()
    shapes = [w["shape"] for w in doc["weightsManifest"][0]["weights"]]
    weights = np.frombuffer(httpx.get(f"{base}/{doc['weightsManifest'][0]['paths'][0]}").content, "<f4")
    assert len(weights) == sum(int(np.prod(s)) for s in shapes) == 31_786


def test_data_ranges_are_served_as_binary_labels_then_images(server, project):
    r = httpx.get(f"{server.url}/api/projects/{project['id']}/data/train", params={"start": 10, "count": 3})
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert len(r.content) == 3 + 3 * 784
    assert "immutable" in r.headers["cache-control"]
    bad = httpx.get(f"{server.url}/api/projects/{project['id']}/data/train", params={"start": 59_999, "count": 2})
    assert bad.status_code == 416 and bad.json()["code"] == "BAD_RANGE"


def test_every_response_is_cross_origin_isolated(server):
    r = httpx.get(f"{server.url}/api/projects")
    assert r.headers["cross-origin-opener-policy"] == "same-origin"
    assert r.headers["cross-origin-embedder-policy"] == "require-corp"


def test_openapi_document_lists_the_stable_paths(server):
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    for p in ("/api/projects", "/api/projects/{project_id}", "/api/projects/{project_id}/model/model.json",
              "/api/projects/{project_id}/metrics"):
        assert p in paths


def test_real_websocket_trainers_train_and_metrics_record_the_rounds(server, project):
    pid, P = project["id"], project["param_count"]

    async def trainer(rounds):
        async with websockets.connect(ws_url(server), max_size=None) as ws:
            await ws.send(encode(MessageType.JOIN, project=pid, payload={"role": "trainer", "backend": "test"}))
            welcome = (await recv_until(ws, MessageType.WELCOME)).json()
            assert welcome["param_count"] == P and welcome["data"]["shape"] == [28, 28, 1]
            alloc = await recv_until(ws, MessageType.ALLOC)
            for _ in range(rounds):
                params = await recv_until(ws, MessageType.PARAMS)
                assert params.count == P and len(params.payload) == 4 * P
                work = await recv_until(ws, MessageType.WORK)
                assert 0 < work.aux <= 1000
                await ws.send(encode(MessageType.GRADIENT, project=pid, round=work.round, count=8, aux=work.aux // 10,
                                     value=16.0, payload=np.full(P, 0.01, np.float32)))
            return alloc.count

    async def both():
        return await asyncio.gather(trainer(3), trainer(3))

    counts = asyncio.run(both())
    assert sum(counts) == 2 * 3_000  # each holds the default capacity, disjoint
    metrics = httpx.get(f"{server.url}/api/projects/{pid}/metrics").json()
    full = [m for m in metrics if m["contributions"] == 2]
    assert full, metrics
    assert full[0]["samples"] == 16 and full[0]["loss"] == 2.0 and full[0]["latency_ms_mean"] is not None


def test_bad_frames_get_error_frames_and_the_connection_carries_on(server, project):
    pid, P = project["id"], project["param_count"]

    async def run():
        async with websockets.connect(ws_url(server), max_size=None) as ws:
            await ws.send(encode(MessageType.GRADIENT, project=pid))  # before JOIN
            assert (await recv_until(ws, MessageType.ERROR)).json()["code"] == "NOT_JOINED"
            await ws.send(encode(MessageType.JOIN, project=9999, payload={"role": "trainer"}))
            assert (await recv_until(ws, MessageType.ERROR)).json()["code"] == "UNKNOWN_PROJECT"
            await ws.send(encode(MessageType.JOIN, project=pid, payload={"role": "emperor"}))
            assert (await recv_until(ws, MessageType.ERROR)).json()["code"] == "FRAME_MALFORMED"
            await ws.send("a text frame")
            assert (await recv_until(ws, MessageType.ERROR)).json()["code"] == "FRAME_MALFORMED"
            await ws.send(encode(MessageType.JOIN, project=pid, payload={"role": "trainer"}))
            await recv_until(ws, MessageType.WELCOME)
            work = await recv_until(ws, MessageType.WORK)
            for payload, code in [(np.full(P, np.inf, np.float32), "NON_FINITE"),
                                  (np.zeros(P - 1, np.float32), "WRONG_LENGTH")]:
                await ws.send(encode(MessageType.GRADIENT, project=pid, round=work.round, count=4, payload=payload))
                err = await recv_until(ws, MessageType.ERROR)
                assert err.json()["code"] == code and err.count > 1000
            await ws.send(encode(MessageType.JOIN, project=pid, payload={"role": "trainer"}))
            assert (await recv_until(ws, MessageType.ERROR)).json()["code"] == "ALREADY_JOINED"
            # still connected: a valid gradient for the current round is accepted
            work = await recv_until(ws, MessageType.WORK)
            await ws.send(encode(MessageType.GRADIENT, project=pid, round=work.round, count=4, value=1.0,
                                 payload=np.zeros(P, np.float32)))
            params = await recv_until(ws, MessageType.PARAMS)
            assert params.round == work.round + 1
            # an oversized frame closes the connection from its header: 1009, message too big
            # (the largest payload: a committed gradient, its sum and the biggest trailer of batch commitments)
            cap = 24 + 4 * P + committed.trailer_bytes(committed.MAX_BATCHES)
            await ws.send(encode(MessageType.GRADIENT, project=pid, payload=np.zeros((cap - 24) // 4 + 1, np.float32)))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                for _ in range(10):
                    await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd.code == 1009 and f"limit of {cap} bytes" in closed.value.rcvd.reason

    asyncio.run(run())
    metrics = httpx.get(f"{server.url}/api/projects/{pid}/metrics").json()
    assert sum(m["rejected"] for m in metrics) >= 3


def test_data_ranges_carry_an_etag_and_answer_304_when_unchanged(server, project):
    url = f"{server.url}/api/projects/{project['id']}/data/train"
    first = httpx.get(url, params={"start": 0, "count": 5})
    etag = first.headers["etag"]
    again = httpx.get(url, params={"start": 0, "count": 5}, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    other = httpx.get(url, params={"start": 5, "count": 5}, headers={"If-None-Match": etag})
    assert other.status_code == 200 and other.headers["etag"] != etag


def test_data_ranges_are_gzipped_for_clients_that_accept_it_and_decode_to_the_same_bytes(server, project):
    url = f"{server.url}/api/projects/{project['id']}/data/train"
    plain = httpx.get(url, params={"start": 0, "count": 500}, headers={"Accept-Encoding": "identity"})
    packed = httpx.get(url, params={"start": 0, "count": 500}, headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers and packed.headers["content-encoding"] == "gzip"
    assert packed.content == plain.content  # httpx decodes gzip
    assert int(packed.headers["content-length"]) < 0.5 * len(plain.content)  # MNIST digits compress well
