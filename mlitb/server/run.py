"""Run the app under uvicorn, in the foreground or on a background thread (demo, tests)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time

import uvicorn

from mlitb.config import Settings
from mlitb.master.registry import ProjectRegistry
from mlitb.server.app import create_app
from mlitb.server.logs import log_config


def _config(settings: Settings, log_level: str, app_factory=create_app) -> uvicorn.Config:
    # websockets-sansio (what "auto" picks today) named outright: it is the protocol whose per-connection read
    # cap server/ws.py sets before each message, and whose reader server/ws_lean.py makes lean; tokens in query
    # strings never reach the access or error log (server/logs.py)
    return uvicorn.Config(app_factory(settings), host=settings.host, port=settings.port, log_level=log_level,
                          ws="websockets-sansio", log_config=log_config(), ws_max_size=settings.max_frame_bytes,
                          ws_per_message_deflate=False)


class GracefulServer(uvicorn.Server):
    """uvicorn with a graceful SIGTERM/SIGINT: first the registry abandons the open rounds and
    closes every worker with 1012 "reconnect later" (frames flushed), then uvicorn shuts down
    and the lifespan checkpoints every project; a SIGTERM shutdown exits with code 0.
    A second signal falls through to uvicorn's immediate exit."""

    def __init__(self, config: uvicorn.Config, registry: ProjectRegistry):
        super().__init__(config)
        self.registry = registry
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame) -> None:
        if self._draining or self._loop is None:
            return super().handle_exit(sig, frame)
        self._draining = True
        self._captured_signals.append(sig)
        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._drain()))

    async def _drain(self) -> None:
        try:
            await self.registry.drain()
        finally:
            self.should_exit = True

    @contextlib.contextmanager
    def capture_signals(self):
        with super().capture_signals():
            yield
            self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]


def run_server(settings: Settings, log_level: str = "info") -> None:
    config = _config(settings, log_level)
    GracefulServer(config, config.app.state.registry).run()


def run_data_server(settings: Settings, log_level: str = "info") -> None:
    from mlitb.data.server import create_data_app

    uvicorn.Server(_config(settings, log_level, create_data_app)).run()


class BackgroundServer:
    """A uvicorn server on its own thread; `url` is known once `start()` returns."""

    def __init__(self, settings: Settings, log_level: str = "warning", app_factory=create_app):
        if settings.port == 0:
            with socket.socket() as s:
                s.bind((settings.host, 0))
                settings = Settings(**{**settings.__dict__, "port": s.getsockname()[1]})
        self.settings = settings
        self.server = uvicorn.Server(_config(settings, log_level, app_factory))
        self.thread = threading.Thread(target=self._run, name="mlitb-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def start(self, timeout_s: float = 20.0) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start on {self.url}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
