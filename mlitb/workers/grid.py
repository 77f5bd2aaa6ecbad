"""`mlitb worker`: headless browser trainers and trackers that join a project on any reachable server."""

from __future__ import annotations

import sys
import time

import httpx

from mlitb.workers.browser import BrowserPool, status_line


def run_grid_workers(server: str, project: int, trainers: int = 1, trackers: int = 0, backend: str = "auto",
                     duration_s: float | None = None, token: str | None = None, out=sys.stdout) -> int:
    if trainers < 0 or trackers < 0 or trainers + trackers == 0:
        print("error: ask for at least one trainer or tracker", file=sys.stderr)
        return 2
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = httpx.get(f"{server.rstrip('/')}/api/projects/{project}", headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {server}: {exc}", file=sys.stderr)
        return 2
    if r.status_code != 200:
        print(f"error: {server} has no project {project}: {r.text}", file=sys.stderr)
        return 2
    print(f"joining project {project} ({r.json()['name']}) on {server} with {trainers} trainer(s), "
          f"{trackers} tracker(s)", file=out, flush=True)
    deadline = None if duration_s is None else time.monotonic() + duration_s
    with BrowserPool(server, backend=backend, token=token) as pool:
        for _ in range(trainers):
            pool.open(project, "trainer")
        for _ in range(trackers):
            pool.open(project, "tracker")
        last_round = -1
        try:
            while deadline is None or time.monotonic() < deadline:
                pool.wait(0.5)
                statuses = pool.statuses()
                rnd = max((s.get("round", -1) for s in statuses), default=-1)
                if rnd > last_round:
                    last_round = rnd
                    print(f"round {rnd}: {status_line(statuses)}", file=out, flush=True)
        except KeyboardInterrupt:
            pass
    return 0
