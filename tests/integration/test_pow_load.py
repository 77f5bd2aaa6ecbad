"""Proof of work rises with load: a burst of trainer JOINs to one project raises the bits every JOIN owes, even a
new address's first trainer (mlitb/trust/pow.py `JoinLoad`; tests/unit/test_pow.py: the window passing lowers them)."""

import asyncio
import contextlib

import httpx
import pytest
import websockets

from mlitb.config import Settings
from mlitb.protocol import MessageType, decode, encode
from mlitb.server.run import BackgroundServer
from tests.integration.test_trainers_per_address import join
from tests.socket_training import create_project

THRESHOLD, WINDOW_S = 6, 120.0  # a window far longer than a burst takes on a loaded machine


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = Settings(port=0, data_dir=tmp_path_factory.mktemp("data"), max_connections_per_address=4096,
                        pow_load_joins=THRESHOLD, pow_load_window_s=WINDOW_S, pow_load_bits=4, pow_load_max_bits=8)
    with BackgroundServer(settings) as srv:
        yield srv


async def bits_for(url: str, pid: int, address: str) -> int:
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address)) as http:
        return (await http.get(f"{url}/api/projects/{pid}/challenge")).json()["bits"]


async def test_a_burst_of_joins_raises_the_bits_a_new_address_owes_in_that_project(server):
    pid = create_project(server.url)["id"]
    async with contextlib.AsyncExitStack() as stack:
        assert await bits_for(server.url, pid, "127.0.2.99") == 0
        for i in range(THRESHOLD):  # just inside: each the first trainer of its address, free
            assert (await join(stack, server.url, pid, f"127.0.2.{i + 1}"))[1] == MessageType.WELCOME
        assert await bits_for(server.url, pid, "127.0.2.99") == 0
        # one more trainer JOIN, priced before it counts (free): just past
        assert (await join(stack, server.url, pid, "127.0.2.50"))[1] == MessageType.WELCOME
        assert await bits_for(server.url, pid, "127.0.2.99") == 4
        assert await bits_for(server.url, pid, "127.0.2.1") == 4 + 6  # its second trainer: both prices
        ws, kind, _ = await join(stack, server.url, pid, "127.0.2.60")  # pays the 4 bits it was asked for
        assert kind == MessageType.WELCOME
        other = create_project(server.url)["id"]  # the load is per project
        assert await bits_for(server.url, other, "127.0.2.99") == 0


async def test_a_first_trainer_joining_under_load_without_work_is_refused(server):
    pid = create_project(server.url)["id"]
    async with contextlib.AsyncExitStack() as stack:
        for i in range(THRESHOLD + 1):
            await join(stack, server.url, pid, f"127.0.3.{i + 1}")
        ws = await stack.enter_async_context(websockets.connect(server.url.replace("http://", "ws://") + "/ws",
                                                                local_addr=("127.0.3.99", 0)))
        await ws.send(encode(MessageType.JOIN, project=pid, payload={"role": "trainer", "backend": "test"}))
        frame = decode(await asyncio.wait_for(ws.recv(), 10), 1 << 30)
        assert frame.type == MessageType.ERROR and frame.json()["code"] == "POW_REQUIRED"
        assert "4 bits" in frame.json()["message"]
