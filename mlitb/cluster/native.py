"""`mlitb worker --ray --engine torch`: native (PyTorch) trainers placed on a Ray cluster's nodes as actors.

Each `TorchActor` is one trainer (or tracker) running the real native worker client (mlitb/workers/native/client.py)
against the project's server, which on a `mlitb serve --ray` cluster means its least loaded gateway and another
after a loss (mlitb/workers/gateways.py; a trainer's slot spreads the first connections). Ray reserves what it
computes with: one GPU per trainer for `--device cuda` (Ray then shows the actor only its own GPU), else as many
CPUs as its PyTorch threads. An actor that dies is restarted by Ray and its `run` retried, until the same deadline.

Ray would leave an actor asking for a GPU pending for ever on a cluster without one, so `--device cuda` is refused
at once, with exit status 2, when the cluster has fewer GPUs than trainers. `--device auto` asks for GPUs only
when the cluster has one for every trainer; trackers run on a CPU.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time

import ray
from ray.exceptions import GetTimeoutError, RayActorError

POLL_S = 2.0  # the driver prints a status line at most this often


@ray.remote(max_restarts=-1, max_task_retries=-1)
class TorchActor:
    def __init__(self, opts: dict, threads: int):
        self.opts, self.threads = opts, threads
        self.worker = None
        self.started = time.time()

    async def run(self, until: float) -> dict:
        """Work until the wall-clock time `until` (a restarted actor's retried call ends at the same time)."""
        try:
            import torch

            from mlitb.workers.native.client import NativeWorker, Options
            torch.set_num_threads(self.threads)
            self.worker = NativeWorker(Options(**self.opts))
        except (ImportError, RuntimeError, ValueError) as exc:  # no PyTorch on this node, no usable GPU here
            return {"role": self.opts["role"], "state": "closed", "fatal": f"{type(exc).__name__}: {exc}",
                    **self._where()}
        self.worker.status.backend += f" ({self.threads} thread{'s' * (self.threads != 1)})"
        stop = asyncio.Event()
        task = asyncio.create_task(self.worker.run(stop))
        while not task.done() and time.time() < until:
            await asyncio.wait({task}, timeout=max(0.0, min(1.0, until - time.time())))
        stop.set()
        await task
        return await self.status()

    async def status(self) -> dict:
        w = self.worker
        if w is None:
            return {"role": self.opts["role"], "state": "starting", **self._where()}
        return {**dataclasses.asdict(w.status), "fatal": w.fatal, **self._where()}

    def _where(self) -> dict:
        return {"node": ray.util.get_node_ip_address(), "pid": os.getpid(), "started": self.started}


def placement(device: str, trainers: int, threads: int) -> tuple[str, dict]:
    """(device each trainer uses, Ray resources it asks for); raises ValueError when Ray could never place it."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if device == "auto":
        device = "cuda" if trainers and gpus >= trainers else "cpu"
    if device == "cuda":
        if gpus < trainers:
            raise ValueError(f"--device cuda asks Ray for one GPU per trainer ({trainers}); the cluster has {gpus} "
                             f"(ray.cluster_resources()): use --device cpu, fewer --trainers, or add GPU nodes")
        return "cuda", {"num_gpus": 1, "num_cpus": threads}
    return "cpu", {"num_cpus": threads}


def torch_on_ray(server: str, project: int, trainers: int, trackers: int, device: str, threads: int,
                 seconds: float, token: str | None = None, batch_size: int | None = None,
                 on_status=None) -> list[dict]:
    """Place the actors (Ray initialised), let them work for `seconds`, and return each one's last status;
    `on_status(statuses)` is called about every POLL_S with the newest ones, and ends the run early (returning
    them) when it returns True."""
    device, resources = placement(device, trainers, threads)
    base = {"server": server.rstrip("/"), "project": project, "token": token, "batch_size": batch_size}
    actors = [TorchActor.options(scheduling_strategy="SPREAD", **resources)
              .remote({**base, "role": "trainer", "device": device, "slot": i}, threads) for i in range(trainers)]
    actors += [TorchActor.options(scheduling_strategy="SPREAD", num_cpus=1)
               .remote({**base, "role": "tracker", "device": "cpu", "slot": trainers + i}, 1) for i in range(trackers)]
    until = time.time() + seconds
    runs = [a.run.remote(until) for a in actors]
    try:
        while True:
            done, _ = ray.wait(runs, num_returns=len(runs), timeout=POLL_S)
            if len(done) == len(runs):
                return ray.get(runs)
            if on_status is not None:
                try:
                    statuses = ray.get([a.status.remote() for a in actors], timeout=5 * POLL_S)
                except (GetTimeoutError, RayActorError):  # an actor restarting: its status comes with a later poll
                    continue
                if on_status(statuses):
                    return statuses
    finally:
        for a in actors:
            ray.kill(a)


def run_torch_ray(address: str | None, server: str, project: int, trainers: int, trackers: int | str, device: str,
                  threads: int | None, seconds: float, token: str | None, batch_size: int | None, out=None) -> int:
    """The command; exit status 0 when every trainer trained, 2 when it cannot be placed, else 1."""
    from mlitb.workers.grid import project_for_worker, worker_counts
    from mlitb.workers.native.run import status_line

    out = out or sys.stdout
    counts = worker_counts(trainers, trackers)
    if counts is None:
        return 2
    trainers, trackers, auto = counts
    info, failed = project_for_worker(server, project, token)
    if info is None:
        return failed
    if auto:
        trackers = 0 if info.get("trackers") else 1
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    last = [-1]

    def show(statuses: list[dict]) -> None:
        rnd = max((s.get("round") or -1 for s in statuses), default=-1)
        if rnd > last[0]:
            last[0] = rnd
            print(f"round {rnd}: {status_line(statuses)}", file=out, flush=True)
    try:
        print(f"placing {trainers} torch trainer(s) and {trackers} tracker(s) for project {project} ({info['name']}) "
              f"on the Ray cluster, {threads or 1} thread(s) each", file=out, flush=True)
        results = torch_on_ray(server, project, trainers, trackers, device, threads or 1, seconds, token, batch_size,
                               show)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        ray.shutdown()
    for r in results:
        print(f"{r['node']} -> {r.get('gateway')}: {r['role']} {r.get('backend', '')} {r.get('state')}, "
              f"{r.get('connections', 0)} connection(s){', ' + r['fatal'] if r.get('fatal') else ''}", file=out)
    trained = [r for r in results if r["role"] == "trainer" and (r.get("samples_per_s") or 0) > 0 and not r.get("fatal")]
    print(f"total: {len(trained)}/{trainers} trainers trained", file=out)
    return 0 if len(trained) == trainers else 1
