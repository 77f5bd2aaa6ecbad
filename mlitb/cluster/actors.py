"""The Ray actors of a cluster: one `ProjectActor` per project and G `GatewayActor`s (the only module importing Ray
besides the launcher). See docs/cluster.md for the topology and why gateways are actors running uvicorn.

A ProjectActor is a shell around `ProjectCore` (mlitb/cluster/core.py) whose runtime is restored from the
SQLite store on its node (the last checkpoint); Ray restarts it when it dies (max_restarts), and the new
one resumes from that checkpoint. A GatewayActor runs the whole FastAPI app (REST API, page, data ranges,
/ws) under uvicorn on its own thread with a `GatewayRegistry` whose runtimes take rounds from the
project actors; it adds GET /api/gateways, GET /api/health and a prometheus_client /metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import threading
import time

import numpy as np

import ray
from ray.exceptions import RayActorError

from mlitb.cluster.core import ProjectCore
from mlitb.cluster.gateway import GatewayRegistry
from mlitb.cluster.ops import add_gateway_routes
from mlitb.config import Settings
from mlitb.data.routes import dataset_dir
from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.registry import ProjectRegistry
from mlitb.store import ProjectStore

UPSTREAM_RETRY_S = 0.5  # a gateway asks a restarting project actor again after this long
HELLO_EVERY_S = 1.0  # a gateway tells its project actors it is alive (and its load) this often
log = logging.getLogger("mlitb.cluster")

try:  # Ray's error for an actor that is restarting (newer Ray); older ones raise RayActorError only
    from ray.exceptions import ActorUnavailableError
    UPSTREAM_DOWN: tuple[type[BaseException], ...] = (RayActorError, ActorUnavailableError)
except ImportError:  # pragma: no cover
    UPSTREAM_DOWN = (RayActorError,)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class ProjectActor:
    """One project's model state and round clock. Calls are not retried by Ray: a call lost in a crash is
    answered by the gateway (a partial counts at most once; the gateway asks for the next round again)."""

    def __init__(self, settings: Settings, project_id: int, grace_s: float = 1.0):
        self.registry = ProjectRegistry(settings, ProjectStore(settings.data_dir / "mlitb.sqlite3"))
        runtime = self.registry.get(project_id)  # restored from its last checkpoint
        self.core = ProjectCore(runtime, grace_s=grace_s, checkpoint=self.registry.checkpoint)
        self.restarted = ray.get_runtime_context().was_current_actor_reconstructed
        self._task: asyncio.Task | None = None

    def _ensure_running(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.core.run())

    async def describe(self) -> dict:
        """What a gateway needs to serve the project: its spec, token hashes and data (sent once per gateway)."""
        rt = self.core.runtime
        return {"spec": rt.stored_spec().model_dump(), "owner_hash": rt.owner_hash, "invite_hash": rt.invite_hash,
                "dataset": rt.dataset}

    async def next_round(self, gateway: str, after: int, capacity: int | None = None, share_version: int | None = None):
        self._ensure_running()
        return await self.core.next_round(gateway, after, capacity, share_version)

    async def submit(self, partial) -> tuple[str, str] | None:
        """None when taken; else (error code name, message): errors cross Ray as values, not exceptions."""
        try:
            self.core.submit(partial)
        except MlitbError as err:
            return err.code.name, str(err)
        return None

    async def set_hyper(self, hyper) -> None:
        """Live hyper-parameters from a gateway: checked, in force, and stored in the project's spec."""
        self.core.set_hyper(hyper)
        rt = self.core.runtime
        await asyncio.to_thread(self.registry.store.update_spec, rt.id, rt.stored_spec().model_dump())

    async def state(self) -> dict:
        return self.core.state()

    async def load_weights(self, params) -> tuple[str, str] | None:
        """Weights loaded at a gateway: in force, checkpointed (errors cross Ray as values, as in `submit`)."""
        try:
            self.core.load_weights(params)
        except MlitbError as err:
            return err.code.name, str(err)
        await self.registry.checkpoint(self.core.runtime)
        return None

    async def add_example(self, label, image) -> tuple[str, str] | None:
        """A picture labelled at a gateway: the network and data grow; the example and the grown spec are stored."""
        try:
            spec, _ = self.core.add_example(label, image)
        except MlitbError as err:
            return err.code.name, str(err)
        rt = self.core.runtime
        await asyncio.to_thread(self.registry.store.add_example, rt.id, str(label), image, spec, time.time())
        return None

    async def attach_data(self, dataset, train: bool = True) -> tuple[str, str] | None:
        """Data uploaded at a gateway: in force, and written where a restarted actor finds it (its node's data dir)."""
        try:
            self.core.attach_data(dataset)
        except MlitbError as err:
            return err.code.name, str(err)
        rt = self.core.runtime
        await asyncio.to_thread(save_uploaded, self.registry, rt.id, dataset, bool(train))
        return None

    async def hello(self, gateway: str, url: str, clients: int, capacity: int | None = None) -> None:
        self._ensure_running()
        self.core.hello(gateway, url, clients, capacity)

    async def gateways(self) -> dict:
        live = set(self.core.live())
        return {g: {**info, "live": g in live} for g, info in self.core.gateways.items()}

    async def status(self) -> dict:
        rt = self.core.runtime
        return {"round": rt.round, "refused": self.core.refused, "restarted": self.restarted, "pid": os.getpid(),
                "checkpointed_round": rt.checkpointed_round, "metrics": rt.metrics[-20:]}

    async def closure(self, description: str = "", evaluated=None, unreported=None) -> bytes | tuple[str, str]:
        """The project's closure zip for a gateway that saves one; a refusal as (error code name, message)."""
        try:
            return await self.core.closure(description, evaluated, unreported)
        except MlitbError as err:
            return err.code.name, str(err)


class RayUpstream:
    """A gateway's upstream through a project actor's handle (the twin of core.LocalUpstream)."""

    def __init__(self, handle):
        self.handle = handle

    async def next_round(self, gateway: str, after: int, capacity: int | None = None, share_version: int | None = None):
        while True:
            try:
                return await self.handle.next_round.remote(gateway, after, capacity, share_version)
            except UPSTREAM_DOWN:  # restarting: it comes back from its checkpoint
                await asyncio.sleep(UPSTREAM_RETRY_S)

    async def submit(self, partial) -> None:
        try:
            refused = await self.handle.submit.remote(partial)
        except UPSTREAM_DOWN as err:  # the round died with the actor: this partial is lost, never applied twice
            raise MlitbError(ErrorCode.STALE_ROUND, f"project actor unavailable: {type(err).__name__}") from None
        if refused is not None:
            raise MlitbError(ErrorCode[refused[0]], refused[1])

    async def set_hyper(self, hyper) -> None:
        await self.handle.set_hyper.remote(hyper)

    async def state(self) -> dict:
        return await self.handle.state.remote()

    async def load_weights(self, params) -> None:
        _raise(await self.handle.load_weights.remote(params))

    async def add_example(self, label, image) -> None:
        _raise(await self.handle.add_example.remote(label, image))

    async def attach_data(self, dataset, train: bool = True) -> None:
        _raise(await self.handle.attach_data.remote(dataset, train))

    async def closure(self, description: str = "", evaluated=None, unreported=None) -> bytes:
        try:
            built = await self.handle.closure.remote(description, evaluated, unreported)
        except UPSTREAM_DOWN as err:  # restarting: the owner may save again once it is back from its checkpoint
            raise MlitbError(ErrorCode.PROJECT_UNAVAILABLE, f"project actor unavailable: {type(err).__name__}") from None
        if isinstance(built, tuple):
            _raise(built)
        return built  # checked by the gateway (cluster/closures.py) and read whole before it is stored


def _raise(refused: tuple[str, str] | None) -> None:
    if refused is not None:
        raise MlitbError(ErrorCode[refused[0]], refused[1])


def save_uploaded(registry: ProjectRegistry, project_id: int, dataset, train: bool) -> None:
    """An upload's split (`train`: the training split, else the test split) in the layout one process stores them
    (data/routes.py stored_dataset reads it back); training data replaces the examples labelled on the fly."""
    for split, part in (("train", dataset.train if train else None), ("test", None if train else dataset.test)):
        if part is None:
            continue
        folder = dataset_dir(registry.settings.data_dir, project_id, split)
        staging = folder.with_name(f"{split}.new")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        np.save(staging / "images.npy", part.images)
        np.save(staging / "labels.npy", part.labels)
        (staging / "meta.json").write_text(json.dumps({"labels": list(dataset.labels)}))
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    if train:
        registry.store.clear_examples(project_id)


@ray.remote(num_cpus=0, max_restarts=0)
class GatewayActor:
    """One gateway: uvicorn on `port` serving every project of `projects` (project id -> ProjectActor handle)."""

    def __init__(self, settings: Settings, name: str, port: int, projects: dict[int, object],
                 public_host: str | None = None):
        from mlitb.server.app import create_app
        from mlitb.server.run import BackgroundServer

        logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
        self.name, self.projects = name, projects
        host = public_host or ray.util.get_node_ip_address()
        self.registry = GatewayRegistry(settings, name, lambda pid: RayUpstream(projects[pid]))
        for pid, handle in projects.items():
            d = ray.get(handle.describe.remote())
            self.registry.add(pid, d["spec"], d["dataset"], d["owner_hash"], d["invite_hash"])
        self.url = f"http://{host}:{port}"
        # a folder of its own: the app's local store (quotas, upload staging) never touches the project's files
        own_dir = settings.data_dir / "gateways" / name
        own_dir.mkdir(parents=True, exist_ok=True)
        gw_settings = Settings(**{**settings.__dict__, "port": port, "data_dir": own_dir})
        app = create_app(gw_settings, registry=self.registry)
        add_gateway_routes(app, self)
        self.server = BackgroundServer(gw_settings, log_level="warning", app_factory=lambda _: app).start()
        threading.Thread(target=self._hello_loop, name="mlitb-hello", daemon=True).start()

    def clients(self) -> int:
        return sum(len(rt.clients) for rt in self.registry.projects.values())

    def _hello_loop(self) -> None:
        while True:
            try:  # this thread reads state the server's loop changes: one failed hello must not end the hellos
                n = self.clients()
                for pid, handle in self.projects.items():  # with what this gateway's trainers of the project can hold
                    capacity = self.registry.projects[pid].trainer_capacity()
                    handle.hello.remote(self.name, self.url, n, capacity)  # fire and forget
            except Exception:  # noqa: BLE001 (logged; the next hello is a second away)
                log.exception("gateway %s: hello failed", self.name)
            time.sleep(HELLO_EVERY_S)

    def gateways(self):
        """A coroutine: the live gateways, least loaded first. Awaited on the server's loop; the actor's methods
        are all synchronous, so Ray does not make it an async actor (whose loop would not be the server's)."""
        return list_gateways(self.projects)

    def ready(self) -> dict:
        return {"name": self.name, "url": self.url, "pid": os.getpid()}


async def list_gateways(projects: dict[int, object]) -> list[dict]:
    seen: dict[str, dict] = {}
    for handle in projects.values():
        try:
            listed = await handle.gateways.remote()
        except UPSTREAM_DOWN:
            continue
        for g, info in listed.items():
            if info.get("live") and info.get("url"):
                seen[g] = {"name": g, "url": info["url"], "clients": info.get("clients", 0)}
    return sorted(seen.values(), key=lambda x: (x["clients"], x["name"]))
