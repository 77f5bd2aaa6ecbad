"""The lean `/ws` reader for large messages, and the per-connection read cap, under uvicorn's websockets-sansio protocol.

What it saves (docs/scaling.md): websockets' reader appends every chunk to one bytearray (which
grows by reallocation, copying what it holds each time), slices the payload out of it and
unmasks that into a new object. Here a large incoming message is copied once into a buffer of
its exact size and unmasked in place with NumPy (`LeanReader`, `apply_mask`): 63-70 % less CPU
to read a 455k-parameter gradient, measured again in the session that also measured the lean
writer, which no longer paid and was removed (outgoing frames take the library's path).

The connection's protocol object is also where the size cap of the next message is enforced
while reading (`cap_next_message`): the parser refuses a message from its frame header.

This reaches into library internals (uvicorn's protocol object behind the ASGI receive and its
sans-I/O connection; the class of the connection's reader; websockets' `frames.apply_mask`,
patched process-wide but acting only on our own buffer type). Each is checked where it is used
and everything falls back to the library's own path when it is not as expected
(`raw_protocol` returns None), so an upgrade of either library costs speed and the read-time
cap (the server-wide `max_frame_bytes` then applies while reading), not correctness.
`tests/unit/test_ws_lean_reader.py` compares the reader with the library's byte for byte.
"""

from __future__ import annotations

import numpy as np

try:  # the protocol uvicorn serves WebSockets with by default ("auto" with websockets installed)
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.streams import StreamReader as _StreamReader
except ImportError:  # pragma: no cover - another server or version: the ASGI path serves alone
    WebSocketsSansIOProtocol = _StreamReader = None


class _Payload(np.ndarray):
    """The buffer of one large message (uint8, not zeroed: every byte is written before it is read), filled by
    LeanReader and unmasked in place by _apply_mask; a new one for every message (the round's accumulator may
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

    class LeanReader(_StreamReader):
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
    LeanReader = None


def raw_protocol(ws):
    """uvicorn's websockets-sansio protocol object behind `ws`, when that is what serves it (the transport and
    the sans-I/O connection are then reachable), else None. Only after the handshake, without extensions."""
    proto = getattr(getattr(ws, "_receive", None), "__self__", None)
    if WebSocketsSansIOProtocol is None or not isinstance(proto, WebSocketsSansIOProtocol):
        return None
    conn = getattr(proto, "conn", None)
    if conn is None or conn.extensions or not hasattr(proto, "writable") or not hasattr(proto, "transport"):
        return None
    return proto


def attach(ws):
    """The uvicorn protocol object behind `ws` with its reader made lean, or None where the lean path does not apply."""
    raw = raw_protocol(ws)
    if raw is not None and LeanReader is not None and type(raw.conn.reader) is _StreamReader:
        raw.conn.reader.__class__ = LeanReader
    return raw


def cap_next_message(raw, max_bytes: int) -> None:
    """The largest message the connection's parser accepts from the next frame header it reads: a larger
    message fails there (close 1009, "message too big"), before its payload is buffered. websockets reads this
    per connection at each frame (`Protocol.max_message_size`, counting the fragments of a message)."""
    raw.conn.max_message_size = max_bytes
