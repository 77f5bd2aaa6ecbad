"""Trainers over real WebSockets from a chosen loopback address, honest or hostile (tests and bench/hostile.py).

`socket_trainer` joins a project from `address` (any 127.x.y.z: Linux routes the whole block to
loopback, so one machine can play many volunteers' addresses), keeps its ALLOC ids and the newest
PARAMS, and answers each WORK frame with what `answer(params, ids, work_ms)` returns. The hostile
answers (`HOSTILE_KINDS`) are the attacks of issue 13, each a correctly sized, finite frame:
- `fixed`: one fixed direction, scaled large, claiming the largest count the absolute cap allows;
- `sign_flip`: the honest gradient times -SCALE;
- `random`: Gaussian noise of SCALE per coordinate and sample;
- `inflate`: the honest gradient's opposite with the largest allowed count (sample-count inflation).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable

import httpx
import numpy as np
import websockets

from mlitb.codec import Kind, committed
from mlitb.protocol import MessageType, decode, encode
from mlitb.trust.commitments import directions
from mlitb.trust.pow import solve

HOSTILE_KINDS = ("fixed", "sign_flip", "random", "inflate")
SCALE = 100.0
CAP_SAMPLES_PER_S = 200_000  # the documented absolute cap a hostile client claims up to

# (params, allocated ids, work ms, WORK seed: 0 or the example order to follow) -> (summed gradient, samples, loss),
# and optionally its per-batch commitments (mlitb.codec.committed.Commitment: sent as payload kind 6)
Answer = Callable[[np.ndarray, np.ndarray, int, int], tuple]


@dataclass
class TrainerLog:
    answered: int = 0
    errors: list[dict] = field(default_factory=list)
    closed: tuple | None = None  # (code, reason) when the server closed the connection
    joined: bool = False


def hostile_answer(kind: str, honest: Answer, size: int, seed: int = 0) -> Answer:
    """An answer of one hostile kind; `honest` gives the true gradient it distorts."""
    if kind not in HOSTILE_KINDS:
        raise ValueError(f"unknown hostile kind {kind!r}; known: {', '.join(HOSTILE_KINDS)}")
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal(size).astype(np.float32)
    direction /= np.linalg.norm(direction)

    def answer(params: np.ndarray, ids: np.ndarray, work_ms: int, seed: int):
        claim = int(CAP_SAMPLES_PER_S * max(work_ms, 1000) / 1000)
        if kind == "fixed":
            return direction * np.float32(1e3 * claim), claim, 0.0
        grad, n, loss = honest(params, ids, work_ms, seed)[:3]
        if kind == "sign_flip":
            return grad * np.float32(-SCALE), n, loss
        if kind == "random":
            return (rng.standard_normal(size) * SCALE * n).astype(np.float32), n, loss
        return grad * np.float32(-SCALE * claim / n), claim, loss  # inflate: the flipped mean over a huge count
    return answer


def faking_answer(honest: Answer, share: float, seed: int = 0, commit: bool = False) -> Answer:
    """A credit cheat: a share of its results claim the full count but hold the gradient of half the examples
    (work skipped); the rest are honest. Only a spot check can tell. With `commit` a faked result carries
    commitments that agree with its sum (the directions are known from the seed: the sum's projections spread
    evenly over its batches), so only a recomputed batch can tell; without, it carries none."""
    rng = np.random.default_rng(seed)

    def answer(params: np.ndarray, ids: np.ndarray, work_ms: int, seed: int):
        out = honest(params, ids, work_ms, seed)
        if rng.random() >= share:
            return out
        grad, n = out[0], out[1]
        half, _, half_loss = honest(params, ids[: max(1, len(ids) // 2)], work_ms, seed)[:3]
        if not (commit and seed and len(out) > 3 and out[3] is not None):
            return half, n, half_loss
        return half, n, half_loss, lazy_commitment(half, half_loss, seed, out[3].batch_size, n)
    return answer


def lazy_commitment(grad: np.ndarray, loss: float, seed: int, batch_size: int, samples: int) -> committed.Commitment:
    """Commitments a trainer that did not compute its batches can make: consistent with the sum it sends."""
    batches = -(-samples // batch_size)
    proj = directions(seed, grad.size).astype(np.float64) @ grad.astype(np.float64) / batches
    return committed.Commitment(batch_size, np.tile(proj, (batches, 1)).astype(np.float32),
                                np.full(batches, loss / batches, np.float32))


def gradient_frame(project: int, round: int, out: tuple, aux: int) -> bytes:
    """The GRADIENT frame of an answer: dense (kind 0), or with its commitments (kind 6)."""
    grad, n, loss = out[:3]
    commitment = out[3] if len(out) > 3 else None
    if commitment is None:
        return encode(MessageType.GRADIENT, project=project, round=round, count=n, aux=aux, value=loss,
                      payload=grad.astype(np.float32))
    return encode(MessageType.GRADIENT, project=project, round=round, count=n, aux=aux, value=loss,
                  payload=committed.encode(grad, commitment), kind=Kind.DENSE_F32_COMMITTED)


MIN_ANSWER_S = 0.06  # s: at most ~16 answers a second per connection, under the default 20 frames/s
POW_RETRIES = 5  # trainers of one address joining at once race for the free place: the losers pay and try again


async def socket_trainer(ws_url: str, project: int, address: str, answer: Answer, log: TrainerLog,
                         stop: asyncio.Event, volunteer: str | None = None) -> None:
    """Join `project` as a trainer from `address` (with the proof of work the master asks for) and answer every
    WORK frame until `stop` is set or the server closes the connection."""
    for _ in range(POW_RETRIES):
        await _session(ws_url, project, address, answer, log, stop, volunteer)
        if log.joined or not log.errors or log.errors[-1]["code"] not in ("POW_REQUIRED", "POW_INVALID"):
            return


async def _read_errors_left(ws, log: TrainerLog) -> None:
    """The ERROR frames the server sent before it closed the connection, still unread."""
    while True:
        try:
            frame = decode(await ws.recv(), 1 << 30)
        except websockets.ConnectionClosed:
            return
        if frame.type == MessageType.ERROR:
            log.errors.append(frame.json())


async def _session(ws_url: str, project: int, address: str, answer: Answer, log: TrainerLog, stop: asyncio.Event,
                   volunteer: str | None) -> None:
    join = {"role": "trainer", "backend": "socket-test"}
    if volunteer is not None:
        join["volunteer"] = volunteer
    # the proof of work one more trainer from this address needs, asked for from the same address
    http_url = ws_url.replace("ws://", "http://").removesuffix("/ws")
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address), timeout=30) as http:
        asked = (await http.get(f"{http_url}/api/projects/{project}/challenge")).json()
    if asked["bits"] > 0:
        join["pow"] = await asyncio.to_thread(solve, asked["challenge"], asked["bits"])
    try:
        async with websockets.connect(ws_url, max_size=None, local_addr=(address, 0)) as ws:
            await ws.send(encode(MessageType.JOIN, project=project, payload=join))
            params, ids = None, np.zeros(0, np.uint32)
            while not stop.is_set():
                try:
                    data = await asyncio.wait_for(ws.recv(), 0.5)
                except asyncio.TimeoutError:
                    continue
                frame = decode(data, 1 << 30)
                if frame.type == MessageType.WELCOME:
                    log.joined = True
                elif frame.type == MessageType.ALLOC:
                    ids = frame.uint32s().copy()
                elif frame.type == MessageType.PARAMS:
                    params = frame.floats().copy()
                elif frame.type == MessageType.ERROR:
                    log.errors.append(frame.json())
                elif frame.type == MessageType.WORK and params is not None and len(ids):
                    started = time.perf_counter()
                    out = answer(params, ids, frame.aux, frame.count)
                    ms = max(1, int((time.perf_counter() - started) * 1000))
                    # answer no faster than a real device would: a round that closes in a few ms would otherwise
                    # push one frame per round past the server's 20 frames/s per connection (RATE_LIMITED)
                    await asyncio.sleep(max(0.0, MIN_ANSWER_S - (time.perf_counter() - started)))
                    try:
                        await ws.send(gradient_frame(project, frame.round, out, max(ms, frame.aux)))
                    except websockets.ConnectionClosed:
                        await _read_errors_left(ws, log)  # closed while it computed: the ERROR before says why
                        raise
                    log.answered += 1
    except websockets.ConnectionClosed as closed:
        log.closed = (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (None, "")
