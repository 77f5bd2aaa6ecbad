"""`mlitb simulate --ray`: simulated trainers spread over a Ray cluster's nodes as actors, against a project served by
gateways (`mlitb serve --ray`). Each `FleetActor` runs a `ClusterFleet` (mlitb/cluster/fleet.py: clients start
spread over the gateways and fail over when one goes away) for the run's duration and reports its counts."""

from __future__ import annotations

import asyncio
import sys

import httpx
import ray

from mlitb.cluster.fleet import ClusterFleet
from mlitb.workers.gateways import ranked
from mlitb.workers.sim_fleet import FleetSpec


@ray.remote(num_cpus=0)
class FleetActor:
    async def run(self, spec: FleetSpec, gateways: list[str], index: int, seconds: float) -> dict:
        fleet = ClusterFleet(spec, gateways, index)
        await fleet.start()
        await asyncio.sleep(seconds)
        status = fleet.status()
        await fleet.stop()
        return {"fleet": index, "clients": spec.clients, "joined": status.joined, "gradients": status.gradients_sent,
                "work": status.work_frames, "reconnects": fleet.reconnects, "errors": dict(status.errors),
                "failover_s_max": round(max(fleet.failover_s), 3) if fleet.failover_s else None}


def simulate_on_ray(server: str, project: int, clients: int, fleets: int, seconds: float, speed: float = 2200.0,
                    latency_ms: tuple[float, float] = (10.0, 50.0), seed: int = 0, token: str | None = None) -> list[dict]:
    """Run `clients` simulated trainers in `fleets` actors (Ray's SPREAD placement) for `seconds`; Ray must be
    initialised. `server` is any gateway's URL."""
    server = server.rstrip("/")
    gateways = ranked(server, httpx.get(f"{server}/api/gateways", timeout=30).json()) or [server]
    info = httpx.get(f"{server}/api/projects/{project}", params={"token": token} if token else None, timeout=30)
    info.raise_for_status()
    body = info.json()
    fleets = max(1, min(fleets, clients))
    shares = [clients // fleets + (i < clients % fleets) for i in range(fleets)]
    runs = []
    for i, n in enumerate(shares):
        spec = FleetSpec(url=gateways[i % len(gateways)], project=project, param_count=body["param_count"], clients=n,
                         speed=speed, latency_ms=latency_ms, period_s=body["hyper"]["period_s"], seed=seed, token=token)
        # each fleet starts on a different gateway order, so the fleets' clients spread over all of them
        order = gateways[i % len(gateways):] + gateways[:i % len(gateways)]
        runs.append(FleetActor.options(scheduling_strategy="SPREAD").remote().run.remote(spec, order, i, seconds))
    return ray.get(runs)


def run_simulate_ray(address: str | None, server: str, project: int, clients: int, fleets: int, seconds: float,
                     speed: float, latency_ms: tuple[float, float], seed: int, token: str | None, out=None) -> int:
    """The command; exit status 0 when every client joined and gradients were sent."""
    out = out or sys.stdout
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        results = simulate_on_ray(server, project, clients, fleets, seconds, speed, latency_ms, seed, token)
    finally:
        ray.shutdown()
    for r in results:
        print(f"fleet {r['fleet']}: {r['joined']}/{r['clients']} joined, {r['gradients']} gradients, "
              f"{r['reconnects']} reconnects (slowest {r['failover_s_max']} s), errors {r['errors']}", file=out)
    joined, sent = sum(r["joined"] for r in results), sum(r["gradients"] for r in results)
    print(f"total: {joined}/{clients} joined, {sent} gradients in {seconds:g} s", file=out)
    return 0 if joined == clients and sent > 0 else 1
