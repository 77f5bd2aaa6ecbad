"""The WebSocket endpoint: a thin adapter between a socket and the client's sans-I/O session.

Everything the protocol decides (JOIN, the size cap of the next message, the rate limit, frame
checks, LEAVE, the JOIN deadline, the ERROR frame of each refusal) is in
mlitb/protocol/session.py; here are only what needs the socket: the per-address connection
limit, a writer task per client (so a slow client never blocks the round loop), and handing
the session's size cap to the WebSocket reader before each message, so a message over the
cap is refused from its header (close 1009) instead of being buffered first.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import WebSocket

from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.registry import ProjectRegistry
from mlitb.protocol.session import ClientSession
from mlitb.server import auth, ws_lean

log = logging.getLogger("mlitb.ws")


class ConnectionLimits:
    """Open WebSocket connections per client address, shared by every project."""

    def __init__(self, settings):
        self.settings = settings
        self.per_address: dict[str, int] = {}

    def admit(self, address: str) -> bool:
        if self.per_address.get(address, 0) >= self.settings.max_connections_per_address:
            return False
        self.per_address[address] = self.per_address.get(address, 0) + 1
        return True

    def release(self, address: str) -> None:
        left = self.per_address.get(address, 1) - 1
        if left > 0:
            self.per_address[address] = left
        else:
            self.per_address.pop(address, None)


class WebSocketLink:
    """Queues frames for one client and writes them from its own task, so a slow client
    never blocks the round loop; past `max_queue` frames the client is dropped. Once the client has
    joined, `meter` (its project's `Meter`) counts the bytes written in `bytes_out`."""

    def __init__(self, ws: WebSocket, max_queue: int):
        self.ws = ws
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.max_queue = max_queue
        self.closed = False
        self.meter = None
        # uvicorn's protocol object where it allows the lean reader (ws_lean.py: large messages read with one
        # copy) and the read-time size cap; None under another server
        self.raw = ws_lean.attach(ws)
        self.session = None  # the connection's ClientSession, whose cap the reader enforces (`follow`)
        self.writer = asyncio.get_running_loop().create_task(self._write())

    def follow(self, session) -> None:
        """Keep the reader's cap at `session.max_message_bytes` (`cap_next_message`)."""
        self.session = session
        self.cap_next_message()

    def cap_next_message(self) -> None:
        """Hand the session's size cap to the reader, which enforces it while reading the next message (from its
        header, before any payload is buffered). Done before each read and whenever a frame is queued: the cap
        grows with the model (a class learnt on the fly), and the WELCOME that says so goes out before the
        client may send a gradient of the new size. Only where uvicorn's websockets-sansio protocol serves
        `/ws`; elsewhere the server-wide `max_frame_bytes` is the cap while reading and the session checks its
        own cap after."""
        if self.raw is not None and self.session is not None:
            ws_lean.cap_next_message(self.raw, self.session.max_message_bytes)

    def send(self, frame: bytes) -> bool:
        if self.closed or self.queue.qsize() >= self.max_queue:
            return False
        self.queue.put_nowait(frame)
        self.cap_next_message()
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            self.close_code = (code, reason)
            self.queue.put_nowait(None)

    async def flushed(self, timeout_s: float = 5.0) -> None:
        """Wait until queued frames (an ERROR before a close, say) have gone out."""
        try:
            await asyncio.wait_for(asyncio.shield(self.writer), timeout_s)
        except (asyncio.TimeoutError, Exception):
            self.writer.cancel()

    async def _write(self) -> None:
        try:
            while (frame := await self.queue.get()) is not None:
                await self.ws.send_bytes(frame)
                if self.meter is not None:
                    self.meter.bytes_out += len(frame)
            await self.ws.close(*self.close_code)
        except Exception:  # the peer went away; the reader notices and cleans up
            self.closed = True


async def serve_client(ws: WebSocket, registry: ProjectRegistry, limits: ConnectionLimits) -> None:
    await ws.accept()
    settings = registry.settings
    link = WebSocketLink(ws, settings.client_queue_frames)
    address = ws.client.host if ws.client else "?"
    session = ClientSession(link, settings, registry.get, auth.join_check(settings.admin_token), address=address)
    link.follow(session)
    if not limits.admit(address):
        session.refuse(MlitbError(ErrorCode.TOO_MANY_CONNECTIONS, f"at most {settings.max_connections_per_address} "
                                  "connections from one address"))
        await link.flushed()
        return
    try:
        while not session.closed:
            link.cap_next_message()
            try:
                message = await asyncio.wait_for(ws.receive(), session.time_to_join())
            except asyncio.TimeoutError:
                session.expire()
                break
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes")
            if data is None:
                session.receive_text()
            else:
                session.receive(data)
            if link.meter is None and session.runtime is not None:
                link.meter = session.runtime.meter  # once joined, its project counts the bytes written
    finally:
        session.connection_lost()
        link.close()
        await link.flushed()
        limits.release(address)
