"""All projects of one master: create, look up, delete, and run each project's round loop."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from mlitb.auth import new_token, token_hash
from mlitb.config import Settings
from mlitb.data import BUILTIN_DATASETS, Dataset, load_mnist
from mlitb.data.examples import LabelledExample, with_examples
from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import parse_project_spec
from mlitb.model.grow import fit_checkpoint
from mlitb.store import ProjectStore
from mlitb.trust.credit import VolunteerCredit

log = logging.getLogger("mlitb.master")


RESTART_CLOSE = (1012, "server restarting; reconnect later")  # 1012 = service restart


class ProjectRegistry:
    def __init__(self, settings: Settings, store: ProjectStore | None = None):
        self.settings = settings
        self.store = store
        self.projects: dict[int, ProjectRuntime] = {}
        self._tasks: dict[int, asyncio.Task] = {}
        self._next_id = 1
        if store is not None:
            self._restore(store)

    def _restore(self, store: ProjectStore) -> None:
        for saved in store.load_all():
            try:
                runtime = self._build(saved.id, saved.spec)
                if saved.params is not None:
                    # examples that added classes are stored with the grown spec at once, the parameters at
                    # the next checkpoint: a checkpoint from before is grown to fit
                    params, history = fit_checkpoint(runtime.spec.network, runtime.network, saved.params,
                                                     saved.history)
                    runtime.restore(saved.round, params, history, saved.metrics)
                runtime.grant(saved.owner_hash, saved.invite_hash)
                runtime.credit.load([VolunteerCredit(v, n, r, ms, st, bool(q), first, last)
                                     for v, n, r, ms, st, q, first, last in store.load_credit(saved.id)])
            except (MlitbError, ValueError) as exc:
                log.error("project %s could not be restored and is left out: %s", saved.id, exc)
                continue
            self.projects[runtime.id] = runtime
            log.info("restored project %s (%s) at round %s", runtime.id, runtime.spec.name, runtime.round)
        self._next_id = max([p.id for p in store.load_all()], default=0) + 1

    async def checkpoint(self, runtime: ProjectRuntime) -> None:
        """Store parameters, optimizer state, round and new metrics, off the event loop."""
        if self.store is None:
            return
        round_, params, state, new = runtime.checkpoint_view()
        await asyncio.to_thread(self.store.save_checkpoint, runtime.id, round_, params, state, new, time.time(),
                                runtime.allocator.owner.copy())
        runtime.mark_checkpointed(round_)
        await asyncio.to_thread(self.store.save_credit, runtime.id, runtime.credit.changed())

    def load_dataset(self, name: str | None) -> Dataset | None:
        if name is None:
            return None
        if name not in BUILTIN_DATASETS:
            raise MlitbError(ErrorCode.UNKNOWN_DATASET, f"unknown data set '{name}'; built in: {', '.join(BUILTIN_DATASETS)}")
        return load_mnist(self.settings.mnist_dir)

    def create(self, body: Any, examples: list[LabelledExample] = ()) -> tuple[ProjectRuntime, dict[str, str]]:
        """A new project and its secrets (owner token; invite token if private), shown only now. `examples`:
        pictures labelled on the fly in the project it is forked from (its network has their classes)."""
        runtime = self._build(self._next_id, body, list(examples))
        secrets = {"owner_token": new_token()}
        if runtime.spec.private:
            secrets["invite_token"] = new_token()
        runtime.grant(token_hash(secrets["owner_token"]),
                      token_hash(secrets["invite_token"]) if runtime.spec.private else None)
        if self.store is not None:
            self.store.add_project(runtime.id, runtime.spec.model_dump(), time.time(), runtime.owner_hash,
                                   runtime.invite_hash)
            self.store.save_checkpoint(runtime.id, 0, runtime.params, runtime.history, [], time.time())
            if runtime.dataset is not None:
                for ex in examples:
                    self.store.add_example(runtime.id, ex.label, ex.image, runtime.spec.model_dump(), time.time())
        self.projects[runtime.id] = runtime
        self._next_id += 1
        self._start(runtime)
        return runtime, secrets

    def _build(self, project_id: int, body: Any, examples: list[LabelledExample] | None = None) -> ProjectRuntime:
        spec = parse_project_spec(body)
        network = spec.build_network()
        dataset = self.load_dataset(spec.dataset)
        if dataset is None:  # data uploaded earlier (a restart)
            from mlitb.data.routes import stored_dataset
            dataset = stored_dataset(self.settings.data_dir, project_id)
        if examples is None and self.store is not None:  # examples labelled on the fly (a restart)
            examples = [LabelledExample(label, image) for label, image in self.store.load_examples(project_id)]
        if dataset is not None and examples:
            dataset = with_examples(dataset, [ex for ex in examples if ex.image.shape == dataset.shape])
        if dataset is not None:
            if tuple(network.input_shape) != dataset.shape:
                raise MlitbError(ErrorCode.INVALID_NETWORK, f"input shape {list(network.input_shape)} does not match "
                                 f"the data set's {list(dataset.shape)}")
            if network.num_classes != len(dataset.labels):
                raise MlitbError(ErrorCode.INVALID_NETWORK, f"the network has {network.num_classes} outputs but the "
                                 f"data set has {len(dataset.labels)} classes")
        return ProjectRuntime(project_id, spec, network, dataset, self.settings, on_checkpoint=self.checkpoint)

    def _start(self, runtime: ProjectRuntime) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # started later by start_all() once an event loop runs
        task = loop.create_task(runtime.run(), name=f"project-{runtime.id}")
        task.add_done_callback(lambda t: t.cancelled() or not t.exception() or
                               log.error("project %s loop died", runtime.id, exc_info=t.exception()))
        self._tasks[runtime.id] = task

    def start_all(self) -> None:
        for runtime in self.projects.values():
            if runtime.id not in self._tasks:
                self._start(runtime)

    def get(self, project_id: int) -> ProjectRuntime:
        runtime = self.projects.get(project_id)
        if runtime is None:
            raise MlitbError(ErrorCode.UNKNOWN_PROJECT, f"no project with id {project_id}")
        return runtime

    def delete(self, project_id: int) -> None:
        runtime = self.get(project_id)
        runtime.stop()
        for client in list(runtime.clients.values()):
            client.link.close(4404, "project deleted")
        task = self._tasks.pop(project_id, None)
        if task:
            task.cancel()
        del self.projects[project_id]
        if self.store is not None:
            self.store.delete_project(project_id)

    async def drain(self, timeout_s: float = 3.0) -> None:
        """Stop every round loop and close every worker with "reconnect later", waiting (briefly)
        until the close frames are out. Checkpointing follows in `shutdown`."""
        for runtime in self.projects.values():
            runtime.stop()
        for task in self._tasks.values():
            task.cancel()
        links = [c.link for rt in self.projects.values() for c in rt.clients.values()]
        for link in links:
            link.close(*RESTART_CLOSE)
        flushes = [link.flushed(timeout_s) for link in links if hasattr(link, "flushed")]
        await asyncio.gather(*flushes, return_exceptions=True)

    async def shutdown(self) -> None:
        """Abandon the open rounds, checkpoint every project, and ask clients to come back later."""
        for runtime in self.projects.values():
            runtime.stop()
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        for runtime in self.projects.values():
            await self.checkpoint(runtime)
            for client in list(runtime.clients.values()):
                client.link.close(*RESTART_CLOSE)
        if self.store is not None:
            self.store.close()
