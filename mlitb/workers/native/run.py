"""`mlitb worker --engine torch`: native trainers and trackers, one process each, joining a project on any server.

Each worker runs in its own process (PyTorch's thread pool is per process, and a trainer should have
its cores to itself), sets its intra-op threads, and posts its status to this process, which prints one
line per round. Without PyTorch it exits 2 with the install command; a network the engine cannot build
ends it with 1, naming the layer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing as mp
import os
import queue
import sys
import time
from pathlib import Path


from mlitb.workers.grid import leave_on_sigterm, project_for_worker, worker_counts
from mlitb.workers.native import torch_missing


def _work(opts_dict: dict, threads: int, statuses, stop, duration_s: float | None) -> None:
    """Body of one worker process."""
    import torch

    from mlitb.workers.native.client import NativeWorker, Options

    torch.set_num_threads(threads)
    opts = Options(**opts_dict)
    try:
        worker = NativeWorker(opts)
    except (RuntimeError, ValueError) as exc:  # --device cuda without a usable GPU, say
        statuses.put({"role": opts.role, "state": "closed", "fatal": str(exc)})
        return
    worker.status.backend += f" ({threads} thread{'s' * (threads != 1)})"

    async def main() -> None:
        ev = asyncio.Event()
        task = asyncio.create_task(worker.run(ev))
        end = None if duration_s is None else time.monotonic() + duration_s
        while not task.done():
            statuses.put({**dataclasses.asdict(worker.status), "fatal": worker.fatal, "pid": os.getpid()})
            if stop.is_set() or (end is not None and time.monotonic() > end):
                ev.set()
            await asyncio.wait({task}, timeout=0.5)
        statuses.put({**dataclasses.asdict(worker.status), "state": "closed", "fatal": worker.fatal, "pid": os.getpid()})

    asyncio.run(main())


def status_line(statuses: list[dict]) -> str:
    parts = []
    for s in statuses:
        if s.get("role") == "tracker":
            err = s.get("test_error")
            part = f"tracker {s.get('backend')} {s.get('state')} test error {'-' if err is None else f'{err * 100:.2f}%'}"
        else:
            sps = s.get("samples_per_s")
            part = (f"trainer {s.get('backend')} {s.get('state')} {'-' if sps is None else round(sps)} samples/s "
                    f"work {s.get('work_ms') or '-'} ms held {s.get('downloaded', 0)}")
        if s.get("errors"):
            part += f" [{s['errors'][-1]}]"
        parts.append(part)
    return " | ".join(parts)


def run_native_workers(server: str, project: int, trainers: int = 1, trackers: int | str = 0, device: str = "cpu",
                       threads: int | None = None, duration_s: float | None = None, token: str | None = None,
                       batch_size: int | None = None, cache_dir: str | None = None, out=sys.stdout,
                       volunteer: str | None = None) -> int:
    missing = torch_missing()
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    counts = worker_counts(trainers, trackers)
    if counts is None:
        return 2
    trainers, trackers, auto = counts
    if device not in ("cpu", "cuda", "auto"):
        print(f"error: unknown device {device!r}; use cpu, cuda or auto", file=sys.stderr)
        return 2
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: PyTorch sees no usable CUDA device; use --device cpu or auto", file=sys.stderr)
        return 2
    info, failed = project_for_worker(server, project, token)
    if info is None:
        return failed
    if auto:  # as for browsers: one tracker between all the machines that join, not one each
        trackers = 0 if info.get("trackers") else 1
    per = threads or max(1, (os.cpu_count() or 1) // max(1, trainers))
    print(f"joining project {project} ({info['name']}) on {server} with {trainers} torch trainer(s) and "
          f"{trackers} tracker(s) on {device}, {per} thread(s) each", file=out, flush=True)
    from mlitb.workers.native.data import default_cache_dir

    ctx = mp.get_context("spawn")  # no fork of a process that may hold CUDA or OpenMP state
    statuses, stop = ctx.Queue(), ctx.Event()
    base = {"server": server, "project": project, "device": device, "token": token, "batch_size": batch_size,
            "volunteer": volunteer,
            "cache_dir": Path(cache_dir) if cache_dir else default_cache_dir()}
    # each its slot: on a cluster the first connections spread over the gateways, least loaded first
    procs = [ctx.Process(target=_work, args=({**base, "role": role, "slot": i}, per if role == "trainer" else 1,
                                             statuses, stop, duration_s), daemon=True)
             for i, role in enumerate(["trainer"] * trainers + ["tracker"] * trackers)]
    leave_on_sigterm()  # each trainer is a process of its own: a SIGTERM must stop them, not orphan them
    for p in procs:
        p.start()
    latest: dict[int, dict] = {}
    last_round, fatal = -1, None
    try:
        while any(p.is_alive() for p in procs) or not statuses.empty():
            try:
                s = statuses.get(timeout=0.5)
            except queue.Empty:
                continue
            latest[s.get("pid", id(s))] = s
            fatal = fatal or s.get("fatal")
            rnd = max((x.get("round") or -1 for x in latest.values()), default=-1)
            if rnd > last_round:
                last_round = rnd
                print(f"round {rnd}: {status_line(list(latest.values()))}", file=out, flush=True)
    except KeyboardInterrupt:
        stop.set()
        for p in procs:
            p.join(timeout=5)
    for p in procs:
        p.join(timeout=10)
    if fatal:
        print(f"error: {fatal}", file=sys.stderr)
        return 1
    return 0
