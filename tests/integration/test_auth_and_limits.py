"""Owner, invite and admin tokens; connection and frame-rate limits."""

import asyncio
import sqlite3

import httpx
import pytest
import websockets

from mlitb.config import Settings
from mlitb.protocol import MessageType, decode, encode
from mlitb.server.run import BackgroundServer
from mlitb.protocol.session import RateLimit
from tests.helpers import TINY_NETWORK

ADMIN = "admin-secret-token"
PROJECT = {"name": "p", "network": TINY_NETWORK}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = Settings(port=0, data_dir=tmp_path_factory.mktemp("auth"), admin_token=ADMIN,
                        max_connections_per_address=3, max_frames_per_s=5)
    with BackgroundServer(settings) as srv:
        yield srv


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


async def first_frame(url, join):
    async with websockets.connect(url.replace("http://", "ws://") + "/ws") as ws:
        await ws.send(encode(MessageType.JOIN, project=join.pop("project"), payload=join))
        return decode(await asyncio.wait_for(ws.recv(), 10), 1 << 20)


def test_creating_a_project_returns_an_owner_token_stored_only_as_a_hash(server):
    p = httpx.post(f"{server.url}/api/projects", json=PROJECT).json()
    assert len(p["owner_token"]) >= 40 and "invite_token" not in p
    db = sqlite3.connect(server.settings.data_dir / "mlitb.sqlite3")
    dump = "\n".join(db.iterdump())
    assert p["owner_token"] not in dump
    assert "owner_token" not in httpx.get(f"{server.url}/api/projects/{p['id']}").json()


def test_only_the_owner_or_the_admin_may_delete_a_project(server):
    a = httpx.post(f"{server.url}/api/projects", json=PROJECT).json()
    b = httpx.post(f"{server.url}/api/projects", json=PROJECT).json()
    url = f"{server.url}/api/projects/{a['id']}"
    r = httpx.delete(url)
    assert r.status_code == 401 and r.json()["code"] == "AUTH_REQUIRED"
    r = httpx.delete(url, headers=bearer(b["owner_token"]))
    assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"
    assert httpx.delete(url, headers=bearer(a["owner_token"][:-1] + "x")).status_code == 403
    assert httpx.delete(url, headers=bearer(a["owner_token"])).status_code == 204
    assert httpx.delete(f"{server.url}/api/projects/{b['id']}", headers=bearer(ADMIN)).status_code == 204


def test_private_projects_need_the_invite_token_to_be_read_or_joined(server):
    p = httpx.post(f"{server.url}/api/projects", json={**PROJECT, "private": True}).json()
    invite = p["invite_token"]
    assert p["id"] not in [x["id"] for x in httpx.get(f"{server.url}/api/projects").json()]
    assert p["id"] in [x["id"] for x in httpx.get(f"{server.url}/api/projects", headers=bearer(ADMIN)).json()]
    assert httpx.get(f"{server.url}/api/projects/{p['id']}").status_code == 401
    assert httpx.get(f"{server.url}/api/projects/{p['id']}/model/model.json", headers=bearer(invite)).status_code == 200
    assert httpx.get(f"{server.url}/api/projects/{p['id']}/metrics", params={"token": invite}).status_code == 200
    refused = asyncio.run(first_frame(server.url, {"project": p["id"], "role": "trainer"}))
    assert refused.type == MessageType.ERROR and refused.json()["code"] == "FORBIDDEN"
    admitted = asyncio.run(first_frame(server.url, {"project": p["id"], "role": "trainer", "token": invite}))
    assert admitted.type == MessageType.WELCOME
    for token in (p["owner_token"], ADMIN):  # the tokens REST accepts for this project admit a JOIN too
        admitted = asyncio.run(first_frame(server.url, {"project": p["id"], "role": "trainer", "token": token}))
        assert admitted.type == MessageType.WELCOME


def test_a_server_can_require_the_admin_token_to_create_projects(tmp_path):
    with BackgroundServer(Settings(port=0, data_dir=tmp_path, admin_token=ADMIN, open_creation=False)) as srv:
        r = httpx.post(f"{srv.url}/api/projects", json=PROJECT)
        assert r.status_code == 401 and r.json()["code"] == "AUTH_REQUIRED"
        assert httpx.post(f"{srv.url}/api/projects", json=PROJECT, headers=bearer("nope")).status_code == 403
        assert httpx.post(f"{srv.url}/api/projects", json=PROJECT, headers=bearer(ADMIN)).status_code == 201


def test_connections_from_one_address_are_capped(server):
    async def run():
        url = server.url.replace("http://", "ws://") + "/ws"
        held = [await websockets.connect(url) for _ in range(3)]  # the cap
        try:
            async with websockets.connect(url) as extra:
                frame = decode(await asyncio.wait_for(extra.recv(), 10), 1 << 20)
                assert frame.json()["code"] == "TOO_MANY_CONNECTIONS"
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(extra.recv(), 10)
        finally:
            for ws in held:
                await ws.close()
        await asyncio.sleep(0.2)
        async with websockets.connect(url) as again:  # a slot is free once the others left
            await again.send(encode(MessageType.JOIN, project=9999, payload={"role": "trainer"}))
            assert decode(await asyncio.wait_for(again.recv(), 10), 1 << 20).json()["code"] == "UNKNOWN_PROJECT"

    asyncio.run(run())


def test_a_flood_of_frames_is_refused_with_rate_limited_and_the_connection_stays(server):
    p = httpx.post(f"{server.url}/api/projects", json=PROJECT).json()

    async def run():
        async with websockets.connect(server.url.replace("http://", "ws://") + "/ws") as ws:
            await ws.send(encode(MessageType.JOIN, project=p["id"], payload={"role": "tracker"}))
            for _ in range(30):
                await ws.send(encode(MessageType.EVAL, project=p["id"], round=0, count=1, value=0.5))
            codes = []
            while len(codes) < 30:
                f = decode(await asyncio.wait_for(ws.recv(), 10), 1 << 20)
                if f.type == MessageType.ERROR:
                    codes.append(f.json()["code"])
                if "RATE_LIMITED" in codes and len(codes) >= 20:
                    break
            return codes

    codes = asyncio.run(run())
    assert "RATE_LIMITED" in codes


def test_rate_limit_allows_a_burst_of_two_seconds_then_the_sustained_rate():
    now = [0.0]
    limit = RateLimit(5, clock=lambda: now[0])
    assert sum(limit.allow() for _ in range(20)) == 10  # burst = 2 s worth
    now[0] += 1.0
    assert sum(limit.allow() for _ in range(20)) == 5
