"""`mlitb simulate`: hundreds of simulated trainers speaking the real protocol to a real server.

Each simulated trainer is a lean WebSocket client (an asyncio `Protocol`, RFC 6455 framing
written out here) over a real TCP connection to a real `mlitb serve`: it joins with a JOIN
frame, receives PARAMS and WORK like a browser, "computes" by sleeping for as many
mini-batches as its speed fits in the work time (a clock-bounded loop: at least one batch,
then batches until the work time has passed, so it may overrun by one batch), waits its
simulated network round trip, and answers a real-sized GRADIENT frame (random float32
values), so the server does all of its real work: parsing, unmasking, checking and reducing
every gradient, and sending every parameter frame.

Clients are cheap so that hundreds fit beside the server on a small machine: one gradient
payload per process is masked once and reused (only the 24-byte header is masked per send,
with the same key; a fixed masking key is fine for a load generator on loopback, but a
browser would pick a fresh one per frame); parameter payloads are skipped without being
copied; "compute" is a timer, not a coroutine. Clients run in one or more processes
(`processes`), and by default the command starts the server as a separate process, so
client and server CPU time are measured separately.

The driver prints one line per round and writes one JSON object per round (the keys of
`mlitb demo --metrics-out` plus clients, latency p95, server and client CPU time, bytes in
and out, late and rejected counts).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import multiprocessing as mp
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from mlitb.model import PAPER_NETWORK
from mlitb.protocol.frames import HEADER, VERSION, MessageType

METRIC_KEYS = ("round", "trainers", "samples", "samples_per_s", "latency_ms_mean", "latency_ms_max", "loss", "test_error")
EXTRA_KEYS = ("clients", "contributions", "duration_s", "latency_ms_p95", "cpu_s", "ingest_ms", "server_cpu_s", "client_cpu_s",
              "bytes_in", "bytes_out", "late", "late_applied", "rejected")
KEEP_WHOLE = 8192  # payloads up to this size are kept (JSON); longer ones (PARAMS) only their 24-byte header
RANDOM_GUESS_LOSS = math.log(10)  # the loss the simulated trainers report per sample


def dense_network(params: int) -> list[dict]:
    """28x28x1 -> dense H relu -> dense 10 softmax, with H chosen for about `params` parameters."""
    hidden = max(1, round((params - 10) / (784 + 1 + 10)))
    return [{"type": "input", "shape": [28, 28, 1]}, {"type": "flatten"},
            {"type": "dense", "units": hidden, "activation": "relu"},
            {"type": "dense", "units": 10, "activation": "softmax"}]


def parse_range(text: str) -> tuple[float, float]:
    """'A..B' (or one number) as a (low, high) pair of non-negative numbers."""
    low, _, high = text.partition("..")
    a, b = float(low), float(high or low)
    if a < 0 or b < a:
        raise ValueError(f"expected A..B with 0 <= A <= B, got {text!r}")
    return a, b


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
        header = HEADER.pack(MessageType.GRADIENT, VERSION, 0, fleet.spec.project, rnd, samples, int(compute_ms),
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
        length = 24 + 4 * spec.param_count
        self.gradient_prefix = _ws_prefix(0x2, length, self.key)
        body = (np.random.default_rng(spec.seed + index).standard_normal(spec.param_count) * 0.01).astype("<f4")
        # the payload starts at offset 24, a multiple of 4, so it is masked with the key in its own phase
        self.gradient_body = (body.view("<u4") ^ np.frombuffer(self.key, "<u4")[0]).tobytes()
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
        loop = asyncio.get_running_loop()
        async with self._gate:
            client = SimClient(self, slot, self.speeds[slot], self.rtts[slot])
            self.clients[slot] = client
            try:
                await asyncio.wait_for(loop.create_connection(lambda: client, self.host, self.port), 30)
                await asyncio.wait_for(asyncio.shield(client.welcomed), 30)
            except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
                self.errors[f"connect: {type(exc).__name__}: {exc}"[:120]] += 1
                if client.transport is not None:
                    client.transport.abort()

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


def _fleet_process(spec: FleetSpec, index: int, stop, status_queue, limit_s: float) -> None:
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


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), or None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def raise_open_files_limit() -> None:
    """Hundreds of sockets need more file descriptors than the usual soft limit of 1024."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass


class ServerProcess:
    """`mlitb serve` in its own process on a free loopback port, with a throw-away data folder."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.host, self.port, self.log_level = host, port, log_level
        self.url = f"http://{host}:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> "ServerProcess":
        import httpx

        raise_open_files_limit()
        self._dir = tempfile.TemporaryDirectory(prefix="mlitb-simulate-")
        self.log_path = Path(self._dir.name) / "server.log"
        self._log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "mlitb.cli", "serve", "--host", self.host, "--port", str(self.port),
               "--data-dir", str(Path(self._dir.name) / "data"), "--log-level", self.log_level]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/api/projects", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not start on {self.url}: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_log", None):
            self._log.close()
        if getattr(self, "_dir", None):
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def create_project(url: str, params: int | None, period_s: float, late_policy: str = "drop",
                   name: str = "simulate") -> dict:
    """A project for simulated trainers: the paper's network, or a dense one of about `params` parameters."""
    import httpx

    network = PAPER_NETWORK if params is None else dense_network(params)
    hyper = {"period_s": period_s, "learning_rate": 0.01, **({"late_policy": late_policy} if late_policy != "drop" else {})}
    body = {"name": name, "network": network, "hyper": hyper}
    r = httpx.post(f"{url}/api/projects", json=body, timeout=60)
    if r.status_code != 201:
        raise RuntimeError(f"creating the project failed: {r.status_code} {r.text}")
    return r.json()


@dataclass
class SimResult:
    records: list[dict]
    statuses: list[FleetStatus]
    connect_s: float

    def median(self, key: str) -> float | None:
        vals = [r[key] for r in self.records if r.get(key) is not None]
        return statistics.median(vals) if vals else None


def round_line(m: dict) -> str:
    mb = 1e6
    return (f"round {m['round']:5d} | clients {m['clients']:5d} | trainers {m['trainers']:5d} | "
            f"power {m['samples_per_s']:11.1f} samples/s | latency mean {m['latency_ms_mean'] or 0:7.1f} "
            f"p95 {m['latency_ms_p95'] or 0:7.1f} max {m['latency_ms_max'] or 0:7.1f} ms | "
            f"server cpu {m.get('cpu_s') or 0:5.2f} s | client cpu "
            f"{'  -  ' if m.get('client_cpu_s') is None else format(m['client_cpu_s'], '5.2f')} s | "
            f"in {m.get('bytes_in', 0) / mb:7.1f} MB out {m.get('bytes_out', 0) / mb:7.1f} MB | "
            f"late {m.get('late', 0)} rejected {m.get('rejected', 0)}")


def simulate(url: str, project: int, param_count: int, clients: int, rounds: int, *, period_s: float = 4.0,
             speed: float = 2200.0, speed_spread: float = 1.0, latency_ms: tuple[float, float] = (10.0, 50.0),
             churn: float = 0.0, processes: int = 1, seed: int = 0, token: str | None = None, warmup: int = 1,
             server_pid: int | None = None, out=None, sink=None) -> SimResult:
    """Run `clients` simulated trainers in `processes` processes until `rounds` rounds closed after all of them
    joined (the first `warmup` of those are not reported); returns the reported rounds' records. Each record
    gets `clients`, `client_cpu_s` (CPU time of the client processes over the round) and, given the server's
    pid, `server_cpu_s` (the server process's CPU time over the round, from /proc)."""
    import httpx

    raise_open_files_limit()
    processes = max(1, min(processes, clients))
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    ctx = mp.get_context("spawn")
    stop, queue = ctx.Event(), ctx.Queue()
    budget_s = 60 + clients * 0.05 + (rounds + warmup + 3) * period_s * 3  # every loop here ends by then
    procs = []
    for i, share in enumerate(shares):
        spec = FleetSpec(url, project, param_count, share, speed, speed_spread, latency_ms, churn, period_s, seed, token)
        p = ctx.Process(target=_fleet_process, args=(spec, i, stop, queue, budget_s), daemon=True,
                        name=f"mlitb-simulate-{i}")
        p.start()
        procs.append(p)
    statuses: dict[int, FleetStatus] = {}
    records: list[dict] = []
    t0 = time.monotonic()
    deadline = t0 + budget_s

    def drain() -> None:
        while True:
            try:
                s = queue.get_nowait()
            except Exception:
                return
            statuses[s.index] = s
            if s.failed:
                raise RuntimeError(f"client process {s.index} failed: {s.failed}")

    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            connect_deadline = t0 + 30 + clients * 0.05
            while sum(s.joined for s in statuses.values()) < clients * (1 - churn) - 0.5:
                drain()
                if time.monotonic() > connect_deadline or not all(p.is_alive() for p in procs):
                    errors = Counter()
                    for s in statuses.values():
                        errors.update(s.errors)
                    raise RuntimeError(f"only {sum(s.joined for s in statuses.values())} of {clients} clients "
                                       f"joined in time; errors: {dict(errors.most_common(5))}")
                time.sleep(0.1)
            connect_s = time.monotonic() - t0
            first = http.get(f"/api/projects/{project}").json()["round"] + 1 + warmup
            pids = [p.pid for p in procs] + ([server_pid] if server_pid else [])
            cpu_mark = [_cpu_seconds(pid) for pid in pids]
            while len(records) < rounds:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {len(records)} of {rounds} rounds in {budget_s:.0f} s")
                time.sleep(0.2)
                drain()
                for m in http.get(f"/api/projects/{project}/metrics", params={"since": first}).json():
                    first = m["round"] + 1
                    cpu_now = [_cpu_seconds(pid) for pid in pids]
                    used = [None if a is None or b is None else round(b - a, 3) for a, b in zip(cpu_mark, cpu_now)]
                    cpu_mark = cpu_now
                    m["clients"] = sum(s.joined for s in statuses.values())
                    m["client_cpu_s"] = None if None in used[:len(procs)] else round(sum(used[:len(procs)]), 3)
                    m["server_cpu_s"] = used[-1] if server_pid else None
                    if len(records) < rounds:
                        records.append(m)
                        if out is not None:
                            print(round_line(m), file=out, flush=True)
                        if sink is not None:
                            sink.write(json.dumps({k: m.get(k) for k in METRIC_KEYS + EXTRA_KEYS}) + "\n")
                            sink.flush()
    finally:
        stop.set()
        end = time.monotonic() + 10
        for p in procs:
            p.join(max(0.1, end - time.monotonic()))
        drain_deadline = time.monotonic() + 1
        while time.monotonic() < drain_deadline:
            try:
                s = queue.get(timeout=0.1)
                statuses[s.index] = s
            except Exception:
                break
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
    return SimResult(records, [statuses[i] for i in sorted(statuses)], connect_s)


def summary_lines(result: SimResult, clients: int) -> list[str]:
    r = result
    errors, closes, sent, reconnects = Counter(), Counter(), 0, 0
    for s in r.statuses:
        errors.update(s.errors)
        closes.update(s.closes)
        sent += s.gradients_sent
        reconnects += s.reconnects
    med = r.median
    lines = [f"{clients} clients joined in {r.connect_s:.1f} s; over {len(r.records)} rounds (medians): "
             f"power {med('samples_per_s') or 0:.1f} samples/s, latency mean {med('latency_ms_mean') or 0:.1f} ms "
             f"p95 {med('latency_ms_p95') or 0:.1f} ms max {med('latency_ms_max') or 0:.1f} ms, server cpu "
             f"{med('cpu_s') or 0:.2f} s/round, client cpu {med('client_cpu_s') or 0:.2f} s/round, in "
             f"{(med('bytes_in') or 0) / 1e6:.1f} MB/round, out {(med('bytes_out') or 0) / 1e6:.1f} MB/round; "
             f"late {sum(m.get('late', 0) for m in r.records)}, rejected {sum(m.get('rejected', 0) for m in r.records)}"]
    lines.append(f"clients sent {sent} gradients, reconnected {reconnects} times; errors {dict(errors) or 'none'}; "
                 f"server closes {dict(closes) or 'none'}")
    return lines


def run_simulate(clients: int, server: str | None = None, project: int | None = None, period_s: float = 4.0,
                 rounds: int = 10, params: int | None = None, speed: float = 2200.0, speed_spread: float = 4.0,
                 latency_ms: str = "10..50", churn: float = 0.0, processes: int = 1, late_policy: str = "drop",
                 seed: int = 0, metrics_out: str | None = None, token: str | None = None, out=None) -> int:
    """The `mlitb simulate` command; returns its exit status."""
    import httpx

    out = out or sys.stdout
    try:
        lat = parse_range(latency_ms)
    except ValueError as exc:
        print(f"error: --latency-ms: {exc}", file=sys.stderr)
        return 2
    if clients < 1 or rounds < 1 or not 0 <= churn < 1 or speed <= 0 or speed_spread < 1:
        print("error: need --clients >= 1, --rounds >= 1, 0 <= --churn < 1, --speed > 0, --speed-spread >= 1",
              file=sys.stderr)
        return 2
    if project is not None and server is None:
        print("error: --project needs --server", file=sys.stderr)
        return 2
    own = None
    sink = open(metrics_out, "w") if metrics_out else None
    try:
        if server is None:
            own = ServerProcess().start()
            server = own.url
        server = server.rstrip("/")
        if project is None:
            info = create_project(server, params, period_s, late_policy, name=f"simulate {clients} clients")
        else:
            r = httpx.get(f"{server}/api/projects/{project}", params={"token": token} if token else None, timeout=30)
            if r.status_code != 200:
                print(f"error: project {project} on {server}: {r.status_code} {r.text}", file=sys.stderr)
                return 1
            info = r.json()
            period_s = info["hyper"]["period_s"]
        print(f"mlitb simulate: {clients} simulated trainers in {processes} process(es) -> project {info['id']} "
              f"({info['param_count']} parameters, T = {period_s} s) on {server}"
              f"{f' (server pid {own.pid})' if own else ''}; speed {speed:g} samples/s x spread {speed_spread:g}, "
              f"round trip {lat[0]:g}..{lat[1]:g} ms, churn {churn:g}", file=out, flush=True)
        result = simulate(server, info["id"], info["param_count"], clients, rounds, period_s=period_s, speed=speed,
                          speed_spread=speed_spread, latency_ms=lat, churn=churn, processes=processes, seed=seed,
                          token=token, server_pid=own.pid if own else None, out=out, sink=sink)
        for line in summary_lines(result, clients):
            print(line, file=out, flush=True)
        return 0
    except (RuntimeError, httpx.HTTPError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if own is not None:
            print(own.log_tail(), file=sys.stderr)
        return 1
    finally:
        if sink:
            sink.close()
        if own is not None:
            own.stop()


__all__ = ["FleetSpec", "Fleet", "SimClient", "ServerProcess", "SimResult", "create_project", "dense_network",
           "parse_range", "run_simulate", "simulate", "summary_lines", "round_line", "METRIC_KEYS"]
