"""`mlitb worker --ray --browsers N`: headless-browser trainers placed on a Ray cluster's nodes as actors, each
joining a gateway of `mlitb serve --ray` (least loaded first, from GET /api/gateways). Each `BrowserActor` is one
headless Chromium with one page per trainer (mlitb/workers/browser.py), for the run's duration."""

from __future__ import annotations

import sys
import time

import httpx
import ray

from mlitb.workers.gateways import ranked


@ray.remote(num_cpus=0)
class BrowserActor:
    def run(self, server: str, project: int, trainers: int, seconds: float, backend: str = "auto",
            token: str | None = None) -> dict:
        from mlitb.workers.browser import BrowserPool

        with BrowserPool(server, backend, token) as pool:
            for _ in range(trainers):
                pool.open(project, "trainer")
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                pool.wait(min(1.0, max(0.0, end - time.monotonic())))
            statuses = pool.statuses()
        return {"server": server, "node": ray.util.get_node_ip_address(), "statuses": statuses}


def browsers_on_ray(server: str, project: int, browsers: int, actors: int, seconds: float, backend: str = "auto",
                    token: str | None = None) -> list[dict]:
    """Spread `browsers` trainer pages over `actors` BrowserActors (Ray's SPREAD placement), each on the next
    gateway of the least-loaded-first list; Ray must be initialised."""
    server = server.rstrip("/")
    gateways = ranked(server, httpx.get(f"{server}/api/gateways", timeout=30).json()) or [server]
    actors = max(1, min(actors, browsers))
    shares = [browsers // actors + (i < browsers % actors) for i in range(actors)]
    runs = [BrowserActor.options(scheduling_strategy="SPREAD").remote()
            .run.remote(gateways[i % len(gateways)], project, n, seconds, backend, token) for i, n in enumerate(shares)]
    return ray.get(runs)


def run_browsers_ray(address: str | None, server: str, project: int, browsers: int, actors: int, seconds: float,
                     backend: str, token: str | None, out=None) -> int:
    """The command; exit status 0 when every trainer page trained."""
    out = out or sys.stdout
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        results = browsers_on_ray(server, project, browsers, actors, seconds, backend, token)
    finally:
        ray.shutdown()
    ok = 0
    for r in results:
        trainers = [s for s in r["statuses"] if s.get("role") == "trainer"]
        ok += sum(1 for s in trainers if (s.get("samplesPerS") or 0) > 0)
        rates = ", ".join(f"{s.get('samplesPerS', 0):.0f}" for s in trainers)
        print(f"{r['node']} -> {r['server']}: {len(trainers)} trainers, samples/s {rates}", file=out)
    print(f"total: {ok}/{browsers} trainers trained", file=out)
    return 0 if ok == browsers else 1
