"""Trainers from one address in one project are capped (server default 4; a project may set fewer), over real sockets."""

import asyncio
import contextlib

import httpx
import pytest
import websockets

from mlitb.config import Settings
from mlitb.protocol import MessageType, decode, encode
from mlitb.server.run import BackgroundServer
from mlitb.trust.pow import solve
from tests.socket_training import create_project


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The cap is what this module tests, and every JOIN past the first still shows its proof of work; at 3 bits per
    trainer instead of 6 the fifth trainer's work is 2^12 hashes, not 2^22 (50 s of Python SHA-256 on a loaded
    2-core machine). The price itself is tested in tests/unit/test_pow.py and test_pow_load.py."""
    settings = Settings(port=0, data_dir=tmp_path_factory.mktemp("data"), max_connections_per_address=4096,
                        pow_bits_per_trainer=3)
    with BackgroundServer(settings) as srv:
        yield srv


async def join(stack: contextlib.AsyncExitStack, url: str, pid: int, address: str, role: str = "trainer"):
    """Connects from `address`, joins as `role` (with the proof of work its address owes: mlitb/trust/pow.py);
    returns (connection, first frame's type, its JSON if ERROR)."""
    payload = {"role": role, "backend": "test"}
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address)) as http:
        asked = (await http.get(f"{url}/api/projects/{pid}/challenge")).json()
    if asked["bits"]:
        payload["pow"] = solve(asked["challenge"], asked["bits"])
    ws = await stack.enter_async_context(websockets.connect(url.replace("http://", "ws://") + "/ws",
                                                            max_size=None, local_addr=(address, 0)))
    await ws.send(encode(MessageType.JOIN, project=pid, payload=payload))
    frame = decode(await asyncio.wait_for(ws.recv(), 10), 1 << 30)
    return ws, frame.type, frame.json() if frame.type == MessageType.ERROR else None


async def test_four_trainers_from_one_address_join_and_the_fifth_is_refused_and_closed(server):
    pid = create_project(server.url)["id"]
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(4):
            _, kind, _ = await join(stack, server.url, pid, "127.0.0.5")
            assert kind == MessageType.WELCOME
        ws, kind, err = await join(stack, server.url, pid, "127.0.0.5")
        assert kind == MessageType.ERROR and err["code"] == "TOO_MANY_TRAINERS_FROM_ADDRESS"  # work paid, still past
        await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.close_code == 1008
        # other addresses, trackers from the same address and the same address in another project are not limited
        assert (await join(stack, server.url, pid, "127.0.0.6"))[1] == MessageType.WELCOME
        assert (await join(stack, server.url, pid, "127.0.0.5", "tracker"))[1] != MessageType.ERROR  # PARAMS first
        other = create_project(server.url)["id"]
        assert (await join(stack, server.url, other, "127.0.0.5"))[1] == MessageType.WELCOME


async def test_a_project_may_allow_fewer_trainers_per_address_but_not_more_than_the_server(server):
    strict = create_project(server.url, max_trainers_per_address=2)["id"]
    loose = create_project(server.url, max_trainers_per_address=10)["id"]
    async with contextlib.AsyncExitStack() as stack:
        kinds = [(await join(stack, server.url, strict, "127.0.0.7"))[1] for _ in range(3)]
        assert kinds == [MessageType.WELCOME, MessageType.WELCOME, MessageType.ERROR]
        kinds = [(await join(stack, server.url, loose, "127.0.0.7"))[1] for _ in range(5)]
        assert kinds == [MessageType.WELCOME] * 4 + [MessageType.ERROR]


async def test_a_trainer_that_left_frees_its_place_for_another_from_the_same_address(server):
    pid = create_project(server.url, max_trainers_per_address=1)["id"]
    async with contextlib.AsyncExitStack() as stack:
        first, kind, _ = await join(stack, server.url, pid, "127.0.0.8")
        assert kind == MessageType.WELCOME
        await first.close()
        for _ in range(50):  # the server removes the client when it sees the close
            async with contextlib.AsyncExitStack() as attempt:
                if (await join(attempt, server.url, pid, "127.0.0.8"))[1] == MessageType.WELCOME:
                    return
            await asyncio.sleep(0.05)
        raise AssertionError("the place was not freed")


async def test_the_servers_own_address_is_not_capped(server):
    pid = create_project(server.url, max_trainers_per_address=1)["id"]
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(3):
            assert (await join(stack, server.url, pid, "127.0.0.1"))[1] == MessageType.WELCOME


async def test_a_second_trainer_from_an_address_without_its_proof_of_work_is_refused_and_closed(server):
    pid = create_project(server.url)["id"]
    url = server.url.replace("http://", "ws://") + "/ws"
    async with contextlib.AsyncExitStack() as stack:
        assert (await join(stack, server.url, pid, "127.0.0.11"))[1] == MessageType.WELCOME  # the first is free
        ws = await stack.enter_async_context(websockets.connect(url, local_addr=("127.0.0.11", 0)))
        await ws.send(encode(MessageType.JOIN, project=pid, payload={"role": "trainer", "backend": "test"}))
        frame = decode(await asyncio.wait_for(ws.recv(), 10), 1 << 30)
        assert frame.json()["code"] == "POW_REQUIRED"
        await asyncio.wait_for(ws.wait_closed(), 10)
