"""The WebSocket endpoint: every client frame is size-capped, decoded, checked, then applied.

A connection's first frame must be JOIN (project id in the header); from then on its
identity and project come from the connection, never from the payload. A bad frame gets
an ERROR frame with a stable code; only errors marked `close` end the connection, and the
round loop and the other clients carry on either way.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import WebSocket, WebSocketDisconnect

from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.registry import ProjectRegistry
from mlitb.protocol import HEADER_SIZE, MessageType, decode, encode, error_frame, parse_join
from mlitb.protocol.frames import MAX_JSON_PAYLOAD
from mlitb.server import ws_lean
from mlitb.server.auth import matches

log = logging.getLogger("mlitb.ws")
JOIN_TIMEOUT_S = 15.0

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


class RateLimit:
    """Token bucket: `rate` frames per second sustained, bursts of 2 s worth."""

    def __init__(self, rate: float, clock=time.monotonic):
        self.rate, self.capacity, self.clock = rate, 2 * rate, clock
        self.tokens, self.stamp = self.capacity, clock()

    def allow(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


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
        # the lean path (ws_lean.py) where uvicorn's protocol allows it: large frames read with one copy, data
        # frames written uncopied; closing and control frames still go the library's way
        self.raw = ws_lean.attach(ws)
        self.writer = asyncio.get_running_loop().create_task(self._write())

    def send(self, frame: bytes) -> bool:
        if self.closed or self.queue.qsize() >= self.max_queue:
            return False
        self.queue.put_nowait(frame)
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
            raw = self.raw
            while (frame := await self.queue.get()) is not None:
                if raw is not None and ws_lean.is_open(raw):
                    await ws_lean.write_binary(raw, frame)
                else:
                    await self.ws.send_bytes(frame)
                if self.meter is not None:
                    self.meter.bytes_out += len(frame)
            await self.ws.close(*self.close_code)
        except Exception:  # the peer went away; the reader notices and cleans up
            self.closed = True


async def _receive_bytes(ws: WebSocket) -> bytes:
    msg = await ws.receive()
    if msg["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(msg.get("code", 1000))
    if msg.get("bytes") is None:
        raise MlitbError(ErrorCode.FRAME_MALFORMED, "text frames are not accepted; send binary frames")
    return msg["bytes"]


async def serve_client(ws: WebSocket, registry: ProjectRegistry, limits: ConnectionLimits) -> None:
    await ws.accept()
    settings = registry.settings
    link = WebSocketLink(ws, settings.client_queue_frames)
    address = ws.client.host if ws.client else "?"
    if not limits.admit(address):
        err = MlitbError(ErrorCode.TOO_MANY_CONNECTIONS, f"at most {settings.max_connections_per_address} "
                         "connections from one address")
        link.send(error_frame(err))
        link.close(1008, err.code.name)
        await link.flushed()
        return
    rate = RateLimit(settings.max_frames_per_s)
    runtime = client = None
    try:
        while client is None:  # until a valid JOIN
            try:
                data = await asyncio.wait_for(_receive_bytes(ws), JOIN_TIMEOUT_S)
                frame = decode(data, HEADER_SIZE + MAX_JSON_PAYLOAD)
                if frame.type != MessageType.JOIN:
                    raise MlitbError(ErrorCode.NOT_JOINED, f"first frame must be JOIN, got {frame.type.name}")
                join = parse_join(frame.json())
                candidate = registry.get(frame.project)
                if candidate.spec.private and not (matches(join.token, candidate.invite_hash)
                                                   or matches(join.token, candidate.owner_hash)):
                    raise MlitbError(ErrorCode.FORBIDDEN, "this project is private: JOIN needs its invite token")
                if len(candidate.clients) >= settings.max_clients_per_project:
                    raise MlitbError(ErrorCode.TOO_MANY_CONNECTIONS, f"project {candidate.id} already has "
                                     f"{settings.max_clients_per_project} workers")
                runtime = candidate
                client = runtime.add_client(link, join.role, join.backend, address, join.volunteer, join.pow)
                link.meter = runtime.meter
                runtime.meter.bytes_in += len(data)
            except MlitbError as err:
                link.send(error_frame(err, project=0))
                if err.code.value.close:
                    link.close(1008, err.code.name)
                    return
            except asyncio.TimeoutError:
                link.close(1008, "no JOIN in time")
                return
        link.send(encode(MessageType.WELCOME, project=runtime.id, payload=runtime.welcome(client).model_dump()))
        while not link.closed:
            try:
                data = await _receive_bytes(ws)  # a text frame is refused here, and the connection carries on
                runtime.meter.bytes_in += len(data)
                if not rate.allow():
                    raise MlitbError(ErrorCode.RATE_LIMITED, f"more than {settings.max_frames_per_s:g} frames/s")
                frame = decode(data, runtime.max_frame_bytes)
                if frame.type == MessageType.LEAVE:
                    break
                if frame.type == MessageType.JOIN:
                    raise MlitbError(ErrorCode.ALREADY_JOINED)
                runtime.on_frame(client.id, frame)
            except MlitbError as err:
                runtime.note_rejected()
                link.send(error_frame(err, project=runtime.id, round=runtime.round))
                if err.code.value.close:
                    link.close(1008, err.code.name)
    except WebSocketDisconnect:
        pass
    finally:
        if runtime is not None and client is not None:
            runtime.remove_client(client.id)
        link.close()
        await link.flushed()
        limits.release(address)
