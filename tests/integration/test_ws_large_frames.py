"""Large frames through the real server's lean WebSocket reader (message buffers filled in place,
unmasked in place): gradients of a dense network large enough for
the block-wise checked accumulator, a large text frame, and a refused gradient followed by a
good one from the same trainer."""

import asyncio

import httpx
import numpy as np
import websockets

from mlitb.protocol import MessageType, decode, encode
from mlitb.server import ws_lean
from mlitb.training import aggregate
from mlitb.workers.simulate import dense_network


async def recv_until(ws, mtype, limit=20):
    for _ in range(limit):
        f = decode(await asyncio.wait_for(ws.recv(), 20), 1 << 30)
        if f.type == mtype:
            return f
    raise AssertionError(f"no {mtype.name} frame")


def test_large_gradients_text_and_a_refused_gradient_over_a_real_socket(server):
    r = httpx.post(f"{server.url}/api/projects", json={"name": "dense", "network": dense_network(600_000),
                                                        "hyper": {"period_s": 30}})
    assert r.status_code == 201, r.text
    project = r.json()
    pid, P = project["id"], project["param_count"]
    assert aggregate.FUSED_MIN < P <= aggregate.REDO_BYTES // 4 // aggregate.MIN_KEEP  # the block-wise path
    url = server.url.replace("http://", "ws://") + "/ws"

    async def trainer(bad_first: bool):
        async with websockets.connect(url, max_size=None, compression=None) as ws:
            await ws.send(encode(MessageType.JOIN, project=pid, payload={"role": "trainer", "backend": "test"}))
            await recv_until(ws, MessageType.WELCOME)
            params = await recv_until(ws, MessageType.PARAMS)
            # the installed uvicorn and websockets are served by the lean reader (not its silent fallback)
            links = [c.link for c in server.server.config.app.state.registry.get(pid).clients.values()]
            assert links and all(type(link.raw.conn.reader) is ws_lean.LeanReader for link in links)
            assert params.count == P and len(params.payload) == 4 * P and np.isfinite(params.floats()).all()
            work = await recv_until(ws, MessageType.WORK)
            grad = np.full(P, 0.01, np.float32)
            if bad_first:
                await ws.send("x" * 200_000)  # a large text frame: refused, the connection carries on
                assert (await recv_until(ws, MessageType.ERROR)).json()["code"] == "FRAME_MALFORMED"
                bad = grad.copy()
                bad[-1] = np.nan
                await ws.send(encode(MessageType.GRADIENT, project=pid, round=work.round, count=4, value=1.0,
                                     payload=bad))
                assert (await recv_until(ws, MessageType.ERROR)).json()["code"] == "NON_FINITE"
            await ws.send(encode(MessageType.GRADIENT, project=pid, round=work.round, count=4, value=1.0,
                                 payload=grad))
            following = await recv_until(ws, MessageType.PARAMS)
            assert following.round == work.round + 1
            return params.floats().copy(), following.floats().copy()

    async def both():
        return await asyncio.gather(trainer(True), trainer(False))

    try:
        for before, after in asyncio.run(both()):
            assert np.isfinite(after).all() and (after < before).all()  # a step against the (positive) gradient
        metrics = httpx.get(f"{server.url}/api/projects/{pid}/metrics").json()
        assert sum(m["contributions"] for m in metrics) == 2 and sum(m["samples"] for m in metrics) == 8
        assert sum(m["rejected"] for m in metrics) == 2
    finally:
        httpx.delete(f"{server.url}/api/projects/{pid}", headers={"Authorization": f"Bearer {project['owner_token']}"})
