"""One client's protocol on one connection, sans-I/O: messages in, frames and close decisions out.

`ClientSession` holds everything the master knows about a connection apart from its socket:
its state (awaiting JOIN, joined, closed), the size cap for the next message (which the
WebSocket reader enforces while reading: `max_message_bytes`), the frame-rate limit, the JOIN
checks (the project exists, a private project's token, the project's worker cap), duplicate
JOIN, LEAVE, the JOIN deadline and the ERROR frame of every refusal. It reads no socket and
awaits nothing: an adapter feeds it each whole message (`receive`) and writes what the
session sends through its `Link`, which is also the link the project runtime sends on. The
WebSocket endpoint (mlitb/server/ws.py), the in-memory trainers (mlitb/workers/simulated.py)
and the fuzzers (tests/fuzz/) drive this same class, so what is fuzzed is what serves.
"""

from __future__ import annotations

import enum
import time
from typing import Any, Callable

from mlitb import codec
from mlitb.errors import ErrorCode, MlitbError
from mlitb.protocol.frames import HEADER_SIZE, MAX_JSON_PAYLOAD, MessageType, decode, encode, error_frame
from mlitb.protocol.messages import parse_join

PRE_JOIN_CAP = HEADER_SIZE + MAX_JSON_PAYLOAD  # bytes: the largest message before JOIN (a JOIN)
CLOSE_POLICY = 1008  # WebSocket close code for a refusal that ends the connection (RFC 6455: policy violation)


class State(enum.Enum):
    AWAITING_JOIN = "awaiting_join"
    JOINED = "joined"
    CLOSED = "closed"


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


# (project id) -> the project's runtime, or MlitbError(UNKNOWN_PROJECT): ProjectRegistry.get
FindProject = Callable[[int], Any]
# (runtime, the JOIN's token) -> whether it may join (any token a public project; a private one's invite,
# owner or admin token): mlitb.auth.join_check
MayJoin = Callable[[Any, "str | None"], bool]


class ClientSession:
    """The protocol of one connection. `link` carries frames to the client (`send`, `close`); the runtime is
    reached through `find_project` and the duck-typed calls of mlitb.master.loop.ProjectRuntime (add_client,
    remove_client, welcome, on_frame, note_rejected, clients, meter.bytes_in, param_count, id, round)."""

    def __init__(self, link, settings, find_project: FindProject, may_join: MayJoin, clock=time.monotonic,
                 address: str | None = None):
        self.link = link
        self.address = address  # the peer's IP address: per-address limits and proof of work (mlitb/trust/)
        self.settings = settings
        self.find_project = find_project
        self.may_join = may_join
        self.clock = clock
        self.state = State.AWAITING_JOIN
        self.rate = RateLimit(settings.max_frames_per_s, clock)
        self.join_deadline = clock() + settings.join_timeout_s
        self.runtime = None
        self.client = None
        self.close_reason: tuple[int, str] | None = None

    # ---- what the adapter asks ----------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def max_message_bytes(self) -> int:
        """The size cap for the next message, which the reader enforces while reading: a JOIN before joining;
        after it, a header plus the largest payload any registered codec allows for the project's parameter
        count (dense float32: 24 + 4·P), recomputed per message since the network may grow between rounds."""
        if self.state is State.JOINED:
            return HEADER_SIZE + codec.max_payload_bytes(self.runtime.param_count)
        return PRE_JOIN_CAP

    def time_to_join(self) -> float | None:
        """Seconds left to JOIN (the adapter's read timeout), or None once joined or closed."""
        return max(0.0, self.join_deadline - self.clock()) if self.state is State.AWAITING_JOIN else None

    # ---- events in --------------------------------------------------------------------------------------
    def receive(self, data: bytes | bytearray | memoryview) -> MlitbError | None:
        """Handle one whole binary message; returns the error it was refused with (already answered with an
        ERROR frame, and the connection closed if the error's code says so), or None."""
        if self.state is State.CLOSED:
            return None  # what arrives after a close decision is discarded, as the WebSocket library does
        try:
            if self.state is State.AWAITING_JOIN:
                self._receive_before_join(data)
            else:
                self._receive_joined(data)
        except MlitbError as err:
            self._refused(err)
            return err
        return None

    def receive_text(self) -> MlitbError | None:
        """A text message: refused (after the rate limit, like any message), and the connection carries on."""
        if self.state is State.CLOSED:
            return None
        if not self.rate.allow():
            err = self._rate_limited()
        else:
            err = MlitbError(ErrorCode.FRAME_MALFORMED, "text frames are not accepted; send binary frames")
        self._refused(err)
        return err

    def expire(self) -> None:
        """The JOIN deadline passed (the adapter's read timed out): close without an ERROR frame."""
        if self.state is State.AWAITING_JOIN:
            self._close(CLOSE_POLICY, "no JOIN in time")

    def refuse(self, err: MlitbError) -> None:
        """Refuse the connection before anything is read (e.g. TOO_MANY_CONNECTIONS from its address)."""
        self.link.send(error_frame(err))
        self._close(CLOSE_POLICY, err.code.name)

    def connection_lost(self) -> None:
        """The transport is gone (or the adapter is done): leave the project. Idempotent."""
        self._leave()
        self.state = State.CLOSED

    # ---- the states ---------------------------------------------------------------------------------------
    def _rate_limited(self) -> MlitbError:
        return MlitbError(ErrorCode.RATE_LIMITED, f"more than {self.settings.max_frames_per_s:g} frames/s")

    def _receive_before_join(self, data) -> None:
        if not self.rate.allow():
            raise self._rate_limited()
        frame = decode(data, PRE_JOIN_CAP)
        if frame.type != MessageType.JOIN:
            raise MlitbError(ErrorCode.NOT_JOINED, f"first frame must be JOIN, got {frame.type.name}")
        join = parse_join(frame.json())
        runtime = self.find_project(frame.project)
        if not self.may_join(runtime, join.token):
            raise MlitbError(ErrorCode.FORBIDDEN, "this project is private: JOIN needs its invite, owner or "
                             "admin token")
        if len(runtime.clients) >= self.settings.max_clients_per_project:
            raise MlitbError(ErrorCode.TOO_MANY_CONNECTIONS, f"project {runtime.id} already has "
                             f"{self.settings.max_clients_per_project} workers")
        self.runtime = runtime
        self.client = runtime.add_client(self.link, join.role, join.backend, self.address, join.volunteer, join.pow)
        self.state = State.JOINED
        runtime.meter.bytes_in += len(data)
        self.link.send(encode(MessageType.WELCOME, project=runtime.id, payload=runtime.welcome(self.client).model_dump()))

    def _receive_joined(self, data) -> None:
        runtime = self.runtime
        runtime.meter.bytes_in += len(data)
        if not self.rate.allow():
            raise self._rate_limited()
        frame = decode(data, self.max_message_bytes)
        if frame.type == MessageType.LEAVE:
            self._leave()
            self._close(1000, "")
            return
        if frame.type == MessageType.JOIN:
            raise MlitbError(ErrorCode.ALREADY_JOINED)
        runtime.on_frame(self.client.id, frame)

    # ---- out ---------------------------------------------------------------------------------------------
    def _refused(self, err: MlitbError) -> None:
        if self.state is State.JOINED:
            self.runtime.note_rejected()
            self.link.send(error_frame(err, project=self.runtime.id, round=self.runtime.round))
        else:
            self.link.send(error_frame(err, project=0))
        if err.code.value.close:
            self._leave()
            self._close(CLOSE_POLICY, err.code.name)

    def _leave(self) -> None:
        if self.runtime is not None and self.client is not None and self.state is State.JOINED:
            self.runtime.remove_client(self.client.id)
        if self.state is State.JOINED:
            self.state = State.CLOSED

    def _close(self, code: int, reason: str) -> None:
        self.state = State.CLOSED
        if self.close_reason is None:
            self.close_reason = (code, reason)
            self.link.close(code, reason)
