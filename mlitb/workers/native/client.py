"""One native (PyTorch) trainer or tracker: the browser worker's protocol, in Python (web/src/worker/).

It joins over the same WebSocket with the same binary frames (`mlitb.protocol`'s codec), builds the
network from the model.json WELCOME points to, fetches its allocated examples over HTTP (`data.py`),
and then, like the browser: PARAMS sets the parameters; WORK trains for the work time less the time
the frame waited, answering GRADIENT with the summed gradient; a trainer that fell behind skips to the
newest round. A WORK with a seed (a spot-checked project) is trained on the seed's order over the held
ids, as the browser does, and answered with per-batch commitments (payload kind 6; mlitb/trust/commitments.py),
so the master checks it by recomputing one batch. A tracker evaluates the newest parameters on the test set (at most every
`eval_interval_s`) and answers EVAL. Computing runs in a thread, so the socket keeps being read.

A parameter frame of the wrong size is reported and the worker reconnects (a fresh WELCOME reloads the
model); a lost connection is retried with exponential backoff and full jitter; a network this engine
cannot build, or a refused JOIN that closes the connection, ends the worker with `fatal` set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from urllib.parse import urlparse

import numpy as np
import torch
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from mlitb.codec.link import Downlink
from mlitb.errors import MlitbError
from mlitb.codec import Kind, committed
from mlitb.protocol import MessageType, Welcome, decode, encode
from mlitb.trust.example_order import example_order
from mlitb.workers.gateways import GatewayChooser
from mlitb.workers.native.data import Held, RangeFetcher, fill
from mlitb.workers.native.engine import TorchEngine, pick_device
from mlitb.workers.native.network import network_from_model_json
from mlitb.workers.native.options import Options, Status

log = logging.getLogger("mlitb.native")
FINAL_CLOSE_CODES = {1000, 1008, 4404}  # as the browser: reconnecting after these is pointless
BACKOFF_BASE_S, BACKOFF_MAX_S = 0.5, 30.0
MAX_FRAME = 64 * 1024 * 1024 + 64  # the server's own cap on a message (Settings.max_frame_bytes)
MAX_TEST = 10_000
MAX_MODEL_JSON = 4 * 1024 * 1024  # bytes; our topology of 64 layers is a few KB


class Reconnect(Exception):
    """The connection must be dropped and made again (a frame that does not fit the loaded model)."""


class NativeWorker:
    def __init__(self, opts: Options):
        self.opts = opts
        self.device = pick_device(opts.device)
        self.status = Status(opts.role, backend=f"torch-{self.device.type}")
        self.fatal: str | None = None
        self.engine: TorchEngine | None = None
        self.welcome: Welcome | None = None
        self.params: tuple[int, np.ndarray] | None = None  # (round, parameters in our order)
        self.downlink = Downlink()  # dense PARAMS replace, shadow deltas (download codecs) advance the parameters
        self.held: Held | None = None
        self._fresh: Held | None = None  # downloaded examples the next WORK picks up
        self._download: asyncio.Task | None = None
        self._allocated = np.zeros(0, np.uint32)  # the newest ALLOC's ids (sorted, as the master sends them)
        self._test: tuple[np.ndarray, np.ndarray] | None = None
        self._evaluating = False
        self._last_eval = -float("inf")
        self._newest_round = -1
        self.answered: list[tuple[int, int, float]] = []  # (round, samples, compute ms) of the gradients sent, newest last
        self._ws = None
        self._stop = asyncio.Event()

    # ---- connection ---------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Join and work until `stop` is set, a final close, or a fatal error; reconnects otherwise."""
        self._stop = stop or asyncio.Event()
        self.fetcher = RangeFetcher(self.opts.server, self.opts.token, self.opts.cache_dir)
        self.gateways = GatewayChooser(self.opts.server, self.opts.slot)
        attempts = 0
        try:
            while not self._stop.is_set() and self.fatal is None:
                reason, final = await self._session()
                if final or self._stop.is_set() or self.fatal is not None:
                    self.status.state = "closed"
                    break
                attempts = 0 if self.status.client_id is not None and self.welcome is not None else attempts + 1
                delay = random.random() * min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** attempts)
                self.status.state = f"reconnecting in {delay:.1f} s ({reason})"
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                except asyncio.TimeoutError:
                    pass
        finally:
            if self._download:
                self._download.cancel()
            await self.fetcher.aclose()

    def _ws_url(self) -> str:
        u = urlparse(self.status.gateway or self.opts.server)
        return f"{'wss' if u.scheme == 'https' else 'ws'}://{u.netloc}/ws"

    async def _session(self) -> tuple[str, bool]:
        """One connection: JOIN, then frames in order until it closes. Returns (reason, final)."""
        self.welcome, self._newest_round = None, -1
        queue: asyncio.Queue = asyncio.Queue()
        # on a cluster, the least loaded gateway (another one after a loss: workers/gateways.py); else the server
        self.status.gateway = await self.gateways.choose(self.fetcher.http)
        self.fetcher.http.base_url = self.status.gateway  # the model, data and challenge from there too
        pow_ = await self._proof_of_work() if self.opts.role == "trainer" else None  # before the JOIN timeout runs
        try:
            async with connect(self._ws_url(), max_size=MAX_FRAME, compression=None, open_timeout=15) as ws:
                self._ws = ws
                self.status.connections += 1
                self.status.state = "joining"
                join = {"role": self.opts.role, "backend": self.status.backend, "agent": f"mlitb torch {torch.__version__}"}
                if self.opts.token:
                    join["token"] = self.opts.token
                if pow_:
                    join["pow"] = pow_
                if self.opts.volunteer and self.opts.role == "trainer":
                    join["volunteer"] = self.opts.volunteer
                await ws.send(encode(MessageType.JOIN, project=self.opts.project, payload=join))
                handler = asyncio.create_task(self._handle_all(queue))
                stopper = asyncio.create_task(self._stop.wait())
                reader = asyncio.create_task(self._read(ws, queue))
                done, _ = await asyncio.wait({handler, stopper, reader}, return_when=asyncio.FIRST_COMPLETED)
                for t in (handler, stopper, reader):
                    t.cancel()
                if handler in done and not handler.cancelled() and handler.exception() is not None:
                    exc = handler.exception()
                    # a frame that does not fit (Reconnect) or a failed step (a model or test-set download, say):
                    # reported, and the next connection starts afresh; only `fatal` ends the worker
                    reason = str(exc) if isinstance(exc, Reconnect) else f"{type(exc).__name__}: {exc}"
                    self.status.report(reason)
                    await ws.close(1000 if self.fatal else 4000, "left" if self.fatal else "reconnecting")
                    return reason, self.fatal is not None
                if stopper in done:
                    await ws.send(encode(MessageType.LEAVE, project=self.opts.project))
                    await ws.close(1000, "left")
                    return "left", True
                await reader if reader in done else None
                code = ws.close_code if ws.close_code is not None else 1006
                reason = f"closed ({code}{': ' + ws.close_reason if ws.close_reason else ''})"
                return reason, code in FINAL_CLOSE_CODES
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else 1006
            return f"closed ({code})", code in FINAL_CLOSE_CODES
        except (OSError, InvalidHandshake, InvalidURI, asyncio.TimeoutError) as exc:
            return f"cannot connect: {exc}", False
        finally:
            self._ws = None

    async def _proof_of_work(self) -> str | None:
        """A trainer from an address that already runs some shows work at JOIN (mlitb/trust/pow.py), as the browser
        does: the challenge comes from the master, the nonce is found here (in a thread: the socket stays live)."""
        from mlitb.trust.pow import solve

        try:
            res = await self.fetcher.http.get(f"/api/projects/{self.opts.project}/challenge")
            body = res.json() if res.status_code == 200 else {}
        except Exception as exc:  # noqa: BLE001 (an older master has no challenge route: join without)
            self.status.report(f"no proof-of-work challenge: {type(exc).__name__}: {exc}")
            return None
        bits = int(body.get("bits") or 0)
        if not bits or not isinstance(body.get("challenge"), str):
            return None
        return await asyncio.to_thread(solve, body["challenge"], bits)

    async def _read(self, ws, queue: asyncio.Queue) -> None:
        try:
            async for message in ws:
                if isinstance(message, str):
                    self.status.report("text frame from the server ignored")
                    continue
                frame = decode(message, MAX_FRAME)
                if frame.type == MessageType.WORK:
                    self._newest_round = max(self._newest_round, frame.round)
                queue.put_nowait((frame, time.perf_counter()))
        except MlitbError as exc:
            self.status.report(f"undecodable frame from the server: {exc}")
        except ConnectionClosed:
            pass

    async def _handle_all(self, queue: asyncio.Queue) -> None:
        while True:
            frame, arrived = await queue.get()
            await self._handle(frame, arrived)

    async def _send(self, type_: MessageType, **fields) -> None:
        if self._ws is not None:
            try:
                await self._ws.send(encode(type_, project=self.opts.project, **fields))
            except ConnectionClosed:
                pass

    # ---- frames -----------------------------------------------------------------------------------
    async def _handle(self, f, arrived: float) -> None:
        t = f.type
        if t == MessageType.WELCOME:
            await self._on_welcome(Welcome.model_validate(f.json()))
        elif t == MessageType.ERROR:
            err = f.json()
            self.status.report(f"server: {err.get('code')}: {err.get('message')}")
        elif t == MessageType.ALLOC and self.opts.role == "trainer":
            ids = f.uint32s().copy()
            self._allocated = np.sort(ids)
            if self._download:
                self._download.cancel()
            self._download = asyncio.create_task(self._fetch_allocation(ids))
        elif t == MessageType.PARAMS:
            n = self.engine.param_count if self.engine is not None else f.count
            if f.kind == 0 and len(f.payload) != 4 * n:
                raise Reconnect(f"PARAMS of round {f.round} has {len(f.payload) // 4} values; the loaded model has "
                                f"{n}: reconnecting")
            try:
                # dense frames replace, shadow deltas (download codecs) advance the parameters: mlitb/codec/link.py
                params = self.downlink.apply(f.kind, f.payload, f.round, f.aux, n).copy()
            except MlitbError as exc:
                raise Reconnect(f"PARAMS of round {f.round}: {exc.detail}: reconnecting") from None
            self.params = (f.round, params)
            if self.opts.role == "tracker":
                self._maybe_evaluate()
        elif t == MessageType.WORK and self.opts.role == "trainer":
            await self._on_work(f, arrived)

    async def _on_welcome(self, w: Welcome) -> None:
        if w.algorithm != "gradient" and self.opts.role == "trainer":
            # local-SGD rounds expect a parameter change, which this worker does not compute yet
            self.fatal = f"this worker sends gradients; project {w.project_id} trains with {w.algorithm} rounds"
            raise Reconnect(self.fatal)
        self.welcome = w
        self.status.client_id = w.client_id
        if self.engine is None or self.engine.param_count != w.param_count:  # a reconnect keeps the loaded model
            self.status.state = "loading"
            try:
                network = network_from_model_json(await self._model_json(w.model_url))
            except MlitbError as exc:
                self.fatal = exc.detail
                raise Reconnect(exc.detail) from None
            engine = await asyncio.to_thread(TorchEngine, network, self.device, self.opts.seed)
            await asyncio.to_thread(engine.warm_up, self.opts.batch_size or w.batch_size)
            self.engine = engine
            if self._fresh is None:
                self._fresh = self.held  # the new engine gets the examples held so far at the next WORK
        if self.engine.param_count != w.param_count:
            raise Reconnect(f"model has {self.engine.param_count} parameters, server says {w.param_count}")
        if self.params is not None and self.params[1].size != w.param_count:
            self.params = None  # parameters of the model before a class was added
        self.status.state = "idle" if w.data else "waiting for data"
        if self.opts.role == "tracker":
            await self._load_test_set(w)

    async def _model_json(self, url: str) -> dict:
        """The model.json WELCOME names, read up to MAX_MODEL_JSON bytes (a server's bytes are not trusted either)."""
        async with self.fetcher.http.stream("GET", url) as res:
            if res.status_code != 200:
                raise Reconnect(f"model.json request failed: {res.status_code}")
            body = bytearray()
            async for chunk in res.aiter_bytes():
                body += chunk
                if len(body) > MAX_MODEL_JSON:
                    raise Reconnect(f"model.json is larger than {MAX_MODEL_JSON} bytes")
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise Reconnect(f"model.json is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise Reconnect("model.json is not a JSON object")
        return doc

    async def _fetch_allocation(self, ids: np.ndarray) -> None:
        info = self.welcome.data if self.welcome else None
        self.status.allocated = len(ids)
        if info is None:
            return
        shape = tuple(info.shape)
        try:
            async for held, kept, from_cache in fill(self.fetcher, self.held, ids, info.base_version, info.version,
                                                     info.train_url, shape):
                self._fresh = held
                self.status.downloaded, self.status.kept, self.status.from_cache = held.count, kept, from_cache
                self.status.state = "downloading" if held.count < len(ids) else "idle"
        except Exception as exc:  # noqa: BLE001 (a refused or broken response, a lost server: the next ALLOC retries)
            self.status.report(f"download failed: {type(exc).__name__}: {exc}")

    async def _on_work(self, f, arrived: float) -> None:
        if self._fresh is not None:  # new examples are handed to the engine between rounds only
            self.held, self._fresh = self._fresh, None
            if self.held.count and self.engine is not None:
                self.engine.hold(self.held.images, self.held.labels)
        engine, w = self.engine, self.welcome
        if engine is None or w is None or self.params is None or self.held is None or engine.held == 0:
            return  # not ready: skip this round, as the browser does
        if f.round < self._newest_round:
            return  # fell behind: skip to the newest round rather than answer late forever
        _, params = self.params
        if params.size != engine.param_count:
            raise Reconnect(f"parameters have {params.size} values; the loaded model has {engine.param_count}")
        batch = self.opts.batch_size or w.batch_size
        work_ms = max(1.0, f.aux - (time.perf_counter() - arrived) * 1000)
        self.status.state, self.status.round, self.status.work_ms = "training", f.round, int(work_ms)
        chosen = f.uint32s() if len(f.payload) else None
        commitment = None
        if chosen is not None:  # deterministic rounds name the examples (docs/closure.md)
            pos = self.held.position_of()
            if any(int(i) not in pos for i in chosen):
                self.status.state = "idle"
                return  # not all named examples are here yet
            positions = np.fromiter((pos[int(i)] for i in chosen), np.int64, len(chosen))
            r = await asyncio.to_thread(self._compute_on, params, positions, batch)
        elif f.count:  # a seed: a spot-checked project's order over the held ids (sorted), with commitments
            if not np.array_equal(np.sort(self.held.ids), self._allocated):
                self.status.state = "idle"
                # the order is over exactly the allocated examples: wait until all are here, as the browser does (a
                # refresh swaps ids at the same count: trained on the old ones, an honest result was struck)
                return
            order = np.argsort(self.held.ids, kind="stable")[example_order(f.count, self.held.count)]
            r, commitment = await asyncio.to_thread(self._compute_committed, params, work_ms, batch, order, f.count)
        else:
            r = await asyncio.to_thread(self._compute_for, params, work_ms, batch)
        payload = r.grad if commitment is None else committed.encode(r.grad, commitment)
        await self._send(MessageType.GRADIENT, round=f.round, count=r.samples, aux=max(1, round(r.ms)),
                         value=r.loss_sum, payload=payload, kind=0 if commitment is None else Kind.DENSE_F32_COMMITTED)
        self.status.state, self.status.samples, self.status.compute_ms = "idle", r.samples, round(r.ms)
        self.answered = (self.answered + [(f.round, r.samples, r.ms)])[-1000:]
        self.status.samples_per_s, self.status.loss = r.samples / max(r.ms, 1e-3) * 1000, r.loss_sum / r.samples

    def _compute_for(self, params, work_ms, batch):
        self.engine.set_params(params)
        return self.engine.compute_for(work_ms, batch)

    def _compute_committed(self, params, work_ms, batch, order, seed):
        self.engine.set_params(params)
        return self.engine.compute_committed(work_ms, batch, order, seed)

    def _compute_on(self, params, positions, batch):
        self.engine.set_params(params)
        return self.engine.compute_on(positions, batch)

    # ---- tracker ----------------------------------------------------------------------------------
    async def _load_test_set(self, w: Welcome) -> None:
        info = w.data
        if info is None or not info.test_url:
            self.status.state = "waiting for a test set"
            return
        count = min(MAX_TEST, info.test_count)
        if self._test is None or len(self._test[1]) != count:
            self.status.state, self.status.allocated = "downloading", count
            labels, images, hit = await self.fetcher.fetch(info.test_url, 0, count, tuple(info.shape), info.version)
            self._test = (images, labels)
            self.status.downloaded, self.status.from_cache = count, count if hit else 0
        self.status.state = "idle"
        self._maybe_evaluate()

    def _maybe_evaluate(self) -> None:
        if self._evaluating or self.params is None or self.engine is None or self._test is None:
            return
        if self.params[1].size != self.engine.param_count:
            return  # parameters of a grown network wait until the WELCOME's model has loaded
        wait = self._last_eval + self.opts.eval_interval_s - time.monotonic()
        self._evaluating = True
        asyncio.get_running_loop().create_task(self._evaluate(max(0.0, wait)))

    async def _evaluate(self, wait: float) -> None:
        try:
            if wait:
                await asyncio.sleep(wait)
            if self.params is None or self.engine is None or self.params[1].size != self.engine.param_count:
                return
            self._last_eval = time.monotonic()
            rnd, params = self.params
            self.status.state, self.status.round = "evaluating", rnd
            images, labels = self._test
            t0 = time.perf_counter()
            error, loss = await asyncio.to_thread(_evaluate_with, self.engine, params, images, labels)
            ms = (time.perf_counter() - t0) * 1000
            await self._send(MessageType.EVAL, round=rnd, count=len(labels), aux=max(1, round(ms)), value=error)
            self.status.state, self.status.test_error, self.status.loss = "idle", error, loss
            self.status.compute_ms = round(ms)
        except Exception as exc:  # noqa: BLE001 (reported; the next PARAMS tries again)
            self.status.report(f"evaluation failed: {type(exc).__name__}: {exc}")
            return
        finally:
            self._evaluating = False
        if self.params is not None and self.params[0] != rnd:
            self._maybe_evaluate()


def _evaluate_with(engine: TorchEngine, params: np.ndarray, images: np.ndarray, labels: np.ndarray):
    engine.set_params(params)
    return engine.evaluate(images, labels)
