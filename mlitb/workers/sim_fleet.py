"""The simulated trainers of `mlitb simulate` (the driver is `simulate.py`): each a lean WebSocket
client (an asyncio `Protocol`, RFC 6455 framing written out here) over a real TCP connection to
a real server. It joins with a JOIN frame, receives PARAMS and WORK like a browser, "computes"
by sleeping for as many mini-batches as its speed fits in the work time (a clock-bounded loop:
at least one batch, then batches until the work time has passed, so it may overrun by one
batch), waits its simulated network round trip, and answers a real-sized GRADIENT frame.

Clients are cheap so that hundreds fit beside the server on a small machine: one gradient
payload per process is masked once and reused (only the 24-byte header is masked per send,
with the same key; a fixed masking key is fine for a load generator on loopback, but a
browser would pick a fresh one per frame); parameter payloads are skipped without being
copied; "compute" is a timer, not a coroutine. A `Fleet` is the clients of one process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np

from mlitb.codec.link import Uplink
from mlitb.protocol.frames import HEADER, VERSION, MessageType

KEEP_WHOLE = 8192  # payloads up to this size are kept (JSON); longer ones (PARAMS) only their 24-byte header
RANDOM_GUESS_LOSS = math.log(10)  # the loss the simulated trainers report per sample

@dataclass(frozen=True)
class FleetSpec:
    """What one process of simulated trainers does."""

    url: str  # http://host:port of the server
    project: int
    param_count: int
    clients: int
    speed: float = 2200.0  # samples/s of the median client (the measured wasm browser trainer)
    speed_spread: float = 1.0  # fastest/slowest speed ratio (log-uniform around `speed`)
    latency_ms: tuple[float, float] = (10.0, 50.0)  # network round trip, uniform per client
    churn: float = 0.0  # per client and round: probability of leaving (it rejoins 0.5-1.5 periods later)
    period_s: float = 4.0
    seed: int = 0
    token: str | None = None  # invite token of a private project
    upload_codec: str = "float32"  # the project's hyper.upload_codec: the gradient is sent in this encoding
    topk_density: float = 0.01
    topk_warmup_rounds: int = 0  # (the fleet's one precomputed payload is for the rounds after warm-up)


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    return (int.from_bytes(data, "little") ^ int.from_bytes((key * (n // 4 + 1))[:n], "little")).to_bytes(n, "little")


def _ws_prefix(opcode: int, length: int, key: bytes) -> bytes:
    """A masked client frame's header (FIN set) for a payload of `length` bytes."""
    if length < 126:
        head = bytes([0x80 | opcode, 0x80 | length])
    elif length < 1 << 16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
    return head + key


def _ws_frame(opcode: int, payload: bytes, key: bytes) -> bytes:
    return _ws_prefix(opcode, len(payload), key) + _mask(payload, key)


class SimClient(asyncio.Protocol):
    """One simulated trainer on its own TCP connection."""

    def __init__(self, fleet: "Fleet", slot: int, speed: float, rtt_ms: float):
        self.fleet, self.slot, self.speed, self.rtt_ms = fleet, slot, speed, rtt_ms
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.welcomed: asyncio.Future = self.loop.create_future()
        self.welcomed.add_done_callback(lambda f: f.cancelled() or f.exception())  # never "unretrieved"
        self.joined = self.closed = self.close_sent = False
        self.batch_size = 32
        self._handshake = bytearray()
        self._upgraded = False
        # frame parser: gather `_want` bytes into `_buf`, or skip `_skip` bytes
        self._buf = bytearray()
        self._want, self._skip, self._state = 2, 0, "head"
        self._op = self._fin = self._rest = 0
        self._msg = bytearray()

    # ---- connection --------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        host, port = self.fleet.host, self.fleet.port
        key = base64.b64encode(random.randbytes(16)).decode()
        transport.write((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.joined:
            self.joined = False
            self.fleet.joined -= 1
        if not self.welcomed.done():
            self.welcomed.set_exception(ConnectionError("connection lost before WELCOME"))

    def data_received(self, data: bytes) -> None:
        if not self._upgraded:
            self._handshake += data
            end = self._handshake.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self._handshake[:end]).split(b"\r\n", 1)[0]
            if b" 101 " not in status + b" ":
                self.fleet.errors[f"HTTP {status.decode(errors='replace')}"] += 1
                self.transport.close()
                return
            self._upgraded = True
            rest = bytes(self._handshake[end + 4:])
            self._handshake.clear()
            join = {"role": "trainer", "backend": "simulated", "agent": "mlitb simulate",
                    **({"token": self.fleet.spec.token} if self.fleet.spec.token else {})}
            payload = json.dumps(join).encode()
            self.send_frame(HEADER.pack(MessageType.JOIN, VERSION, 0, self.fleet.spec.project, 0, 0, 0, 0.0) + payload)
            if not rest:
                return
            data = rest
        mv, i, n = memoryview(data), 0, len(data)
        while i < n:
            if self._skip:
                k = min(self._skip, n - i)
                self._skip -= k
                i += k
                if not self._skip:
                    self._frame_done()
                continue
            k = min(self._want - len(self._buf), n - i)
            self._buf += mv[i:i + k]
            i += k
            if len(self._buf) == self._want:
                chunk = bytes(self._buf)
                self._buf.clear()
                self._step(chunk)

    # ---- RFC 6455 frame parser (server frames are never masked) ------------------------------------
    def _step(self, chunk: bytes) -> None:
        if self._state == "head":
            self._fin, self._op = chunk[0] & 0x80, chunk[0] & 0x0F
            length = chunk[1] & 0x7F
            if length == 126:
                self._state, self._want = "len", 2
            elif length == 127:
                self._state, self._want = "len", 8
            else:
                self._payload(length)
        elif self._state == "len":
            self._payload(int.from_bytes(chunk, "big"))
        else:  # the kept part of a payload
            if self._op >= 8:
                self._control(chunk)
            else:
                self._msg += chunk
            if self._rest:
                self._skip, self._rest = self._rest, 0
            else:
                self._frame_done()

    def _payload(self, length: int) -> None:
        if self._op in (1, 2):  # a new message (0 continues one)
            self._msg = bytearray()
        if self._op >= 8 or length <= KEEP_WHOLE:
            keep = length
        else:
            keep = max(0, 24 - len(self._msg))
        self._rest = length - keep
        self._state, self._want = "payload", keep
        if keep == 0:
            self._step(b"")

    def _frame_done(self) -> None:
        if self._op < 8 and self._fin:
            self._on_message(bytes(self._msg))
            self._msg = bytearray()
        self._state, self._want = "head", 2

    def _control(self, payload: bytes) -> None:
        if self._op == 9:  # ping -> pong
            self.transport.write(_ws_frame(0xA, payload, self.fleet.key))
        elif self._op == 8:  # close: answer it, then hang up
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if not self.close_sent:
                self.fleet.closes[code] += 1
                self.send_close(1000)
            self.transport.close()

    # ---- the protocol ----------------------------------------------------------------------------
    def _on_message(self, head: bytes) -> None:
        if len(head) < 24:
            return
        mtype, _, _, _, rnd, count, aux, _ = HEADER.unpack_from(head)
        if mtype == MessageType.WORK:
            self.fleet.work_frames += 1
            self._on_work(rnd, aux)
        elif mtype == MessageType.PARAMS:
            self.fleet.params_frames += 1
        elif mtype == MessageType.WELCOME:
            welcome = json.loads(head[24:])
            self.batch_size = int(welcome.get("batch_size", 32))
            self.joined = True
            self.fleet.joined += 1
            if not self.welcomed.done():
                self.welcomed.set_result(welcome)
        elif mtype == MessageType.ERROR:
            code = json.loads(head[24:]).get("code", "?") if len(head) > 24 else "?"
            self.fleet.errors[code] += 1
            if not self.welcomed.done():
                self.welcomed.set_exception(ConnectionError(f"refused: {code}"))

    def _on_work(self, rnd: int, work_ms: int) -> None:
        if self.fleet.spec.churn and self.fleet.rng.random() < self.fleet.spec.churn:
            self.leave()
            self.fleet.rejoin_later(self.slot)
            return
        batch_ms = self.batch_size * 1000.0 / self.speed
        batches = max(1, math.ceil(work_ms / batch_ms))  # at least one batch, then until the clock passes work_ms
        compute_ms = batches * batch_ms
        self.loop.call_later((self.rtt_ms + compute_ms) / 1000, self._send_gradient, rnd, batches * self.batch_size,
                             compute_ms)

    def _send_gradient(self, rnd: int, samples: int, compute_ms: float) -> None:
        if self.closed or self.close_sent:
            return
        fleet = self.fleet
        header = HEADER.pack(MessageType.GRADIENT, VERSION, fleet.kind, fleet.spec.project, rnd, samples, int(compute_ms),
                             samples * RANDOM_GUESS_LOSS)
        masked = (int.from_bytes(header, "little") ^ fleet.key24).to_bytes(24, "little")
        self.transport.writelines((fleet.gradient_prefix, masked, fleet.gradient_body))
        fleet.gradients_sent += 1

    def send_frame(self, payload: bytes) -> None:
        self.transport.write(_ws_frame(0x2, payload, self.fleet.key))

    def send_close(self, code: int) -> None:
        if not self.close_sent and not self.closed:
            self.close_sent = True
            self.transport.write(_ws_frame(0x8, code.to_bytes(2, "big"), self.fleet.key))

    def leave(self) -> None:
        """LEAVE, then the closing handshake; the connection is dropped if the server does not answer."""
        if self.closed or self.close_sent:
            return
        self.send_frame(HEADER.pack(MessageType.LEAVE, VERSION, 0, self.fleet.spec.project, 0, 0, 0, 0.0))
        self.send_close(1000)
        self.loop.call_later(2.0, self.transport.abort)


@dataclass
class FleetStatus:
    index: int
    joined: int = 0
    gradients_sent: int = 0
    work_frames: int = 0
    params_frames: int = 0
    reconnects: int = 0
    errors: dict = field(default_factory=dict)
    closes: dict = field(default_factory=dict)
    failed: str | None = None


class Fleet:
    """`spec.clients` simulated trainers in this process's event loop."""

    CONNECTS_AT_ONCE = 64

    def __init__(self, spec: FleetSpec, index: int = 0):
        self.spec, self.index = spec, index
        url = urlparse(spec.url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.rng = random.Random(spec.seed * 1_000_003 + index)
        self.key = self.rng.randbytes(4)  # one masking key for every frame of this process (see the module note)
        self.key24 = int.from_bytes(self.key * 6, "little")
        body = (np.random.default_rng(spec.seed + index).standard_normal(spec.param_count) * 0.01).astype("<f4")
        # a compressed upload is a real payload of the project's codec (mlitb/codec/), sized as a trainer's would be
        self.kind, payload = Uplink(spec, spec.param_count).encode(body, 1 << 30)
        self.gradient_prefix = _ws_prefix(0x2, 24 + len(payload), self.key)
        # the payload starts at offset 24, a multiple of 4, so it is masked with the key in its own phase
        self.gradient_body = _mask(payload, self.key)
        spread = math.log(max(spec.speed_spread, 1.0))
        self.speeds = [spec.speed * math.exp(self.rng.uniform(-spread / 2, spread / 2)) for _ in range(spec.clients)]
        self.rtts = [self.rng.uniform(*spec.latency_ms) for _ in range(spec.clients)]
        self.clients: list[SimClient | None] = [None] * spec.clients
        self.joined = self.gradients_sent = self.work_frames = self.params_frames = self.reconnects = 0
        self.errors: Counter = Counter()
        self.closes: Counter = Counter()
        self.stopping = False
        self._gate: asyncio.Semaphore | None = None

    async def connect(self, slot: int) -> None:
        async with self._gate:
            await self.open(slot, self.host, self.port, 30)

    async def open(self, slot: int, host: str, port: int, timeout_s: float, client_class=SimClient) -> bool:
        """Client `slot` connects to host:port and is welcomed within `timeout_s` each, or the failure is counted by
        its kind and the half-open transport aborted (False)."""
        client = client_class(self, slot, self.speeds[slot], self.rtts[slot])
        self.clients[slot] = client
        try:
            await asyncio.wait_for(asyncio.get_running_loop().create_connection(lambda: client, host, port), timeout_s)
            await asyncio.wait_for(asyncio.shield(client.welcomed), timeout_s)
        except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
            self.errors[f"connect: {type(exc).__name__}: {exc}"[:120]] += 1
            if client.transport is not None:
                client.transport.abort()
            return False
        return True

    async def start(self) -> None:
        self._gate = asyncio.Semaphore(self.CONNECTS_AT_ONCE)
        await asyncio.gather(*(self.connect(i) for i in range(self.spec.clients)))

    def rejoin_later(self, slot: int) -> None:
        if self.stopping:
            return
        delay = self.spec.period_s * self.rng.uniform(0.5, 1.5)

        def go():
            if not self.stopping:
                self.reconnects += 1
                asyncio.ensure_future(self.connect(slot))
        asyncio.get_running_loop().call_later(delay, go)

    async def stop(self, timeout_s: float = 3.0) -> None:
        self.stopping = True
        live = [c for c in self.clients if c is not None and not c.closed]
        for c in live:
            c.leave()
        deadline = time.monotonic() + timeout_s
        while any(not c.closed for c in live) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for c in live:
            if not c.closed and c.transport is not None:
                c.transport.abort()

    def status(self) -> FleetStatus:
        return FleetStatus(self.index, self.joined, self.gradients_sent, self.work_frames, self.params_frames,
                           self.reconnects, dict(self.errors), dict(self.closes))


def run_fleet_process(spec: FleetSpec, index: int, stop, status_queue, limit_s: float) -> None:
    """Entry point of a client process: run a fleet until `stop` is set (or `limit_s` passes)."""
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass

    async def main():
        fleet = Fleet(spec, index)
        started = time.monotonic()
        connect = asyncio.ensure_future(fleet.start())
        try:
            while not stop.is_set() and time.monotonic() - started < limit_s:
                status_queue.put(fleet.status())
                await asyncio.sleep(0.25)
        finally:
            connect.cancel()
            await fleet.stop()
            status_queue.put(fleet.status())

    try:
        asyncio.run(main())
    except Exception as exc:  # reported to the driver, which prints it
        status_queue.put(FleetStatus(index, failed=f"{type(exc).__name__}: {exc}"))


