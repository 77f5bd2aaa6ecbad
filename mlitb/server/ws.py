"""The WebSocket endpoint: every client frame is size-capped, decoded, checked, then applied.

A connection's first frame must be JOIN (project id in the header); from then on its
identity and project come from the connection, never from the payload. A bad frame gets
an ERROR frame with a stable code; only errors marked `close` end the connection, and the
round loop and the other clients carry on either way.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect

from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.registry import ProjectRegistry
from mlitb.protocol import HEADER_SIZE, MessageType, decode, encode, error_frame, parse_join
from mlitb.protocol.frames import MAX_JSON_PAYLOAD
from mlitb.server.auth import matches

log = logging.getLogger("mlitb.ws")
JOIN_TIMEOUT_S = 15.0

try:  # the protocol uvicorn serves WebSockets with by default ("auto" with websockets installed)
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.protocol import State as _WsState
    from websockets.streams import StreamReader as _StreamReader
except ImportError:  # pragma: no cover - another server or version: the ASGI path serves alone
    WebSocketsSansIOProtocol = _WsState = _StreamReader = None


def _binary_frame_head(length: int) -> bytes:
    """RFC 6455 header of an unmasked, unfragmented binary frame (server to client) of `length` bytes."""
    if length < 126:
        return bytes((0x82, length))
    if length < 1 << 16:
        return struct.pack("!BBH", 0x82, 126, length)
    return struct.pack("!BBQ", 0x82, 127, length)


class _Payload(np.ndarray):
    """The buffer of one large message (uint8, not zeroed: every byte is written before it is read), filled by
    _LeanReader and unmasked in place by _apply_mask; a new one for every message (the round's accumulator may
    keep a view of a gradient until the round closes). It is bytes-like (the buffer protocol, len) and has
    bytes' decode, for uvicorn's text messages."""

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self).decode(encoding, errors)


def _payload(n: int) -> _Payload:
    return np.empty(n, dtype=np.uint8).view(_Payload)


def _apply_mask(data, mask):
    """websockets' apply_mask, in place (one pass, no new object) for a _Payload, the library's otherwise."""
    if type(data) is not _Payload or len(mask) != 4:
        return _library_apply_mask(data, mask)
    n = len(data)
    words = n >> 3
    block = data[:words << 3].view(np.uint64)
    np.bitwise_xor(block, np.frombuffer(mask * 2, dtype=np.uint64)[0], out=block)
    for i in range(words << 3, n):
        data[i] ^= mask[i & 3]
    return data


if _StreamReader is not None:
    import websockets.frames as _ws_frames

    _library_apply_mask = _ws_frames.apply_mask
    _ws_frames.apply_mask = _apply_mask  # looked up by Frame.parse at each call; acts only on a _Payload

    class _LeanReader(_StreamReader):
        """websockets' stream reader without its copies of a large message. The library appends every chunk
        to one bytearray (which grows by reallocation, copying what it holds each time), slices the payload
        out of it (another copy) and unmasks that into a new object. Here, once the parser asks for a payload
        of `n` >= LARGE bytes that has not all arrived, the chunks are copied once, in place, into a _Payload
        of exactly `n` bytes, which is handed over as it is and unmasked in place; the frame header and every
        smaller read take the library's path."""

        LARGE = 1 << 16

        def read_exact(self, n: int):
            buffer = self.buffer
            if n < self.LARGE or len(buffer) >= n:
                return (yield from super().read_exact(n))
            target = _payload(n)
            have = len(buffer)
            target[:have] = np.frombuffer(buffer, dtype=np.uint8)
            del buffer[:]
            self._target, self._have = target, have
            try:
                while self._have < n:
                    if self.eof:
                        raise EOFError(f"stream ends after {self._have} bytes, expected {n} bytes")
                    yield
            finally:
                self._target = None
            return target

        def feed_data(self, data) -> None:
            target = getattr(self, "_target", None)
            if target is None:
                return super().feed_data(data)
            if self.eof:
                raise EOFError("stream ended")
            have, size = self._have, len(data)
            take = min(size, len(target) - have)
            if take:
                target[have:have + take] = np.frombuffer(data, dtype=np.uint8, count=take)
                self._have = have + take
            if take < size:  # the start of the next frame
                self.buffer += memoryview(data)[take:]
else:  # pragma: no cover
    _LeanReader = None


def _raw_protocol(ws: WebSocket):
    """uvicorn's websockets-sansio protocol object behind `ws`, when that is what serves it (the transport and
    the sans-I/O connection are then reachable), else None. Only after the handshake, without extensions."""
    proto = getattr(getattr(ws, "_receive", None), "__self__", None)
    if WebSocketsSansIOProtocol is None or not isinstance(proto, WebSocketsSansIOProtocol):
        return None
    conn = getattr(proto, "conn", None)
    if conn is None or conn.extensions or not hasattr(proto, "writable") or not hasattr(proto, "transport"):
        return None
    return proto


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
    joined, `meter` (its project) counts the bytes written in `bytes_out`."""

    def __init__(self, ws: WebSocket, max_queue: int):
        self.ws = ws
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.max_queue = max_queue
        self.closed = False
        self.meter = None
        # Under uvicorn's websockets-sansio protocol (the default), data frames are written straight to the
        # transport: the 2-10 byte frame header, then the frame itself, which is never copied (the parameter
        # frame of a round is one bytes object shared by every client). Through the ASGI send, websockets would
        # serialize a copy of each frame per client. Closing and control frames still go the library's way.
        self.raw = _raw_protocol(ws)
        if self.raw is not None and _LeanReader is not None and type(self.raw.conn.reader) is _StreamReader:
            self.raw.conn.reader.__class__ = _LeanReader
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
                if raw is not None and raw.conn.state is _WsState.OPEN and not raw.close_sent:
                    await raw.writable.wait()  # as uvicorn's send: the transport's buffer is below its high mark
                    if raw.disconnected or raw.transport.is_closing():
                        raise ConnectionError("the client went away")
                    raw.transport.writelines((_binary_frame_head(len(frame)), frame))
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
                client = runtime.add_client(link, join.role, join.backend)
                link.meter = runtime
                runtime.bytes_in += len(data)
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
                runtime.bytes_in += len(data)
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
