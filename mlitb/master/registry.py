"""All projects of one master: create, look up, delete, and run each project's round loop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mlitb.config import Settings
from mlitb.data import BUILTIN_DATASETS, Dataset, load_mnist
from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import parse_project_spec

log = logging.getLogger("mlitb.master")


class ProjectRegistry:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.projects: dict[int, ProjectRuntime] = {}
        self._tasks: dict[int, asyncio.Task] = {}
        self._next_id = 1

    def load_dataset(self, name: str | None) -> Dataset | None:
        if name is None:
            return None
        if name not in BUILTIN_DATASETS:
            raise MlitbError(ErrorCode.UNKNOWN_DATASET, f"unknown data set '{name}'; built in: {', '.join(BUILTIN_DATASETS)}")
        return load_mnist(self.settings.mnist_dir)

    def create(self, body: Any) -> ProjectRuntime:
        spec = parse_project_spec(body)
        network = spec.build_network()
        dataset = self.load_dataset(spec.dataset)
        if dataset is not None:
            if tuple(network.input_shape) != dataset.shape:
                raise MlitbError(ErrorCode.INVALID_NETWORK, f"input shape {list(network.input_shape)} does not match "
                                 f"the data set's {list(dataset.shape)}")
            if network.num_classes != len(dataset.labels):
                raise MlitbError(ErrorCode.INVALID_NETWORK, f"the network has {network.num_classes} outputs but the "
                                 f"data set has {len(dataset.labels)} classes")
        runtime = ProjectRuntime(self._next_id, spec, network, dataset, self.settings)
        self.projects[runtime.id] = runtime
        self._next_id += 1
        self._start(runtime)
        return runtime

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

    async def shutdown(self) -> None:
        for runtime in self.projects.values():
            runtime.stop()
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
