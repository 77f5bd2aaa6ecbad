"""Each connection's size cap is enforced while its message is read (issue 12 item 5), over real sockets: a message
over the cap is refused from its frame header (close 1009) without the server waiting for or buffering its payload;
one at the cap is read. And the default per-address connection limit, just inside and just past."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets

from mlitb.codec import committed
from mlitb.config import Settings
from mlitb.protocol import MessageType, decode, encode
from mlitb.protocol.session import PRE_JOIN_CAP
from mlitb.server.run import BackgroundServer
from tests.helpers import TINY_NETWORK

MiB = 1 << 20


class RawClient:
    """A WebSocket client written out by hand, so a test can send a frame header and no payload (or a payload
    slowly) and see exactly when the server answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer, self.mask = reader, writer, os.urandom(4)

    @classmethod
    async def connect(cls, url: str) -> "RawClient":
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
        return cls(reader, writer)

    def send_head(self, length: int) -> None:
        """The header of one masked binary frame announcing `length` payload bytes."""
        self.writer.write(struct.pack("!BBQ", 0x82, 0x80 | 127, length) + self.mask)

    def send_payload(self, data: bytes) -> None:
        mask = np.frombuffer(self.mask * (len(data) // 4 + 1), np.uint8)[:len(data)]
        self.writer.write((np.frombuffer(data, np.uint8) ^ mask).tobytes())

    def send_message(self, data: bytes) -> None:
        self.send_head(len(data))
        self.send_payload(data)

    async def next_frame(self, timeout: float = 10) -> tuple[int, bytes]:
        """(opcode, payload) of the server's next frame."""
        b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return b0 & 0x0F, await asyncio.wait_for(self.reader.readexactly(n), timeout)

    async def close_code(self) -> tuple[int, str]:
        while True:
            op, payload = await self.next_frame()
            if op == 8:
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
def project(server):
    r = httpx.post(f"{server.url}/api/projects", json={"name": "caps", "network": TINY_NETWORK})
    assert r.status_code == 201, r.text
    yield r.json()
    httpx.delete(f"{server.url}/api/projects/{r.json()['id']}",
                 headers={"Authorization": f"Bearer {r.json()['owner_token']}"})


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_pre_join_message_one_byte_over_the_cap_is_refused_from_its_header_alone(server):
    async def run():
        c = await RawClient.connect(server.url)
        c.send_head(PRE_JOIN_CAP + 1)  # and no payload: the answer cannot wait for it
        code, reason = await c.close_code()
        c.close()
        return code, reason

    code, reason = asyncio.run(run())
    assert code == 1009 and f"limit of {PRE_JOIN_CAP} bytes" in reason


def test_a_pre_join_message_exactly_at_the_cap_is_read_and_answered(server):
    async def run():
        c = await RawClient.connect(server.url)
        c.send_message(encode(MessageType.EVAL, payload=b"\0" * (PRE_JOIN_CAP - 24)))
        op, payload = await c.next_frame()
        c.close()
        return decode(payload, 1 << 20).json()["code"]

    assert asyncio.run(run()) == "NOT_JOINED"


def test_after_join_the_cap_is_one_gradient_and_one_byte_more_is_refused_from_its_header(server, project):
    pid, P = project["id"], project["param_count"]
    CAP = 24 + 4 * P + committed.trailer_bytes(committed.MAX_BATCHES)  # a committed gradient's largest trailer

    async def run():
        c = await RawClient.connect(server.url)
        c.send_message(encode(MessageType.JOIN, project=pid, payload={"role": "tracker"}))
        while True:  # WELCOME (and PARAMS)
            op, payload = await c.next_frame()
            if decode(payload, 1 << 30).type == MessageType.WELCOME:
                break
        c.send_message(encode(MessageType.GRADIENT, project=pid, count=1, payload=np.zeros(P, np.float32)))
        while True:
            op, payload = await c.next_frame()
            if decode(payload, 1 << 30).type == MessageType.ERROR:
                refused = decode(payload, 1 << 30).json()["code"]  # read whole, then refused for its meaning
                break
        c.send_head(CAP + 1)
        code, reason = await c.close_code()
        c.close()
        return refused, code, reason

    refused, code, reason = asyncio.run(run())
    assert refused == "WRONG_ROLE" and code == 1009 and f"limit of {CAP} bytes" in reason


def test_sixteen_anonymous_40_mib_messages_are_not_buffered(server):
    """Issue 12 measured 78 -> 665 MB of server memory for this; the server runs in this process here."""
    chunk = b"\0" * MiB

    async def one() -> int:
        c = await RawClient.connect(server.url)
        c.send_head(40 * MiB)
        sent = 0
        try:
            while sent < 40 * MiB:
                c.writer.write(chunk)
                await c.writer.drain()
                sent += MiB
        except ConnectionError:
            pass
        c.close()
        return sent

    async def run():
        return await asyncio.gather(*(one() for _ in range(16)))

    before = rss_mb()
    sent = asyncio.run(run())
    assert rss_mb() - before < 100
    assert max(sent) < 40 * MiB  # the server stopped reading: no connection got its whole message out


def test_a_connection_that_does_not_join_in_time_is_closed_without_an_error_frame(tmp_path):
    with BackgroundServer(Settings(port=0, data_dir=tmp_path, join_timeout_s=0.3)) as srv:
        async def run():
            c = await RawClient.connect(srv.url)
            op, payload = await c.next_frame()  # nothing else comes first
            c.close()
            return op, payload

        op, payload = asyncio.run(run())
    assert op == 8 and struct.unpack("!H", payload[:2])[0] == 1008 and payload[2:] == b"no JOIN in time"


@pytest.fixture(scope="module")
def default_server(tmp_path_factory):
    with BackgroundServer(Settings(port=0, data_dir=tmp_path_factory.mktemp("caps"))) as srv:
        yield srv


def test_the_default_admits_64_connections_from_one_address_and_refuses_the_65th(default_server):
    assert Settings().max_connections_per_address == 64
    url = default_server.url.replace("http://", "ws://") + "/ws"

    async def run():
        held = [await websockets.connect(url) for _ in range(64)]
        try:
            for ws in (held[0], held[-1]):  # admitted: a JOIN gets its answer
                await ws.send(encode(MessageType.JOIN, project=999, payload={"role": "trainer"}))
                assert decode(await asyncio.wait_for(ws.recv(), 10), 1 << 20).json()["code"] == "UNKNOWN_PROJECT"
            async with websockets.connect(url) as extra:
                frame = decode(await asyncio.wait_for(extra.recv(), 10), 1 << 20)
                assert frame.json()["code"] == "TOO_MANY_CONNECTIONS"
        finally:
            for ws in held:
                await ws.close()

    asyncio.run(run())
    assert httpx.get(f"{default_server.url}/api/projects").status_code == 200
