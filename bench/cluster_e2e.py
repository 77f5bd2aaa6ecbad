"""The end-to-end half of bench/cluster.py: real Ray actors (one project actor, G gateways running uvicorn) and
real WebSockets from simulated trainers (mlitb/cluster/fleet.py, the lean clients of `mlitb simulate`, spread over
the gateways), on a local Ray cluster of this machine. Efficiency = power(N) / (N x power(1)), both measured in
the same cluster of G gateways (power: the project actor's samples per second, median over the measured rounds).
On a 2-core machine the trainers, the gateways and the project actor share the cores: the figures say what the
cluster costs here, not what it gives on a machine with a core per gateway."""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/cluster's port helper, when run as a script

from mlitb.config import Settings  # noqa: E402
from mlitb.model import PAPER_NETWORK  # noqa: E402
from mlitb.workers.sim_fleet import FleetSpec  # noqa: E402


def _status(ray, cluster) -> dict:
    return ray.get(cluster.projects[1].status.remote(), timeout=60)


async def _power(ray, cluster, n: int, period: float, rounds: int, speed: float, params: int) -> dict:
    """N trainers on the cluster's gateways for `rounds` measured rounds (after every trainer joined and one more
    round); the median power, contributions and round duration of those rounds (latencies are measured at the
    gateways, not in the project's records)."""
    from mlitb.cluster.fleet import ClusterFleet

    spec = FleetSpec(url=cluster.urls[0], project=1, param_count=params, clients=n, speed=speed,
                     latency_ms=(10.0, 50.0), period_s=period)
    fleet = ClusterFleet(spec, cluster.urls)
    t0 = time.monotonic()
    await fleet.start()
    print(f"  ({n} trainers connected in {time.monotonic() - t0:.1f} s)", file=sys.stderr, flush=True)
    try:
        start = _status(ray, cluster)["round"] + 2  # the round every trainer joined in, and one more
        deadline = time.monotonic() + (rounds + 4) * (period + 2) + 60
        while _status(ray, cluster)["round"] < start + rounds and time.monotonic() < deadline:
            await asyncio.sleep(period / 2)
        records = [m for m in _status(ray, cluster)["metrics"] if start <= m["round"] < start + rounds]
    finally:
        await fleet.stop()
    if not records:
        return {"clients": n, "power": 0.0, "rounds": 0, "contributions": 0, "duration": float("nan")}
    return {"clients": n, "power": statistics.median(m["samples_per_s"] for m in records), "rounds": len(records),
            "contributions": statistics.median(m["contributions"] for m in records),
            "duration": statistics.median(m["duration_s"] for m in records)}


def run_e2e(gateways: list[int], n: int, period: float, rounds: int, speed: float, aggregation: str) -> None:
    import ray

    from mlitb.cluster.launch import start_cluster
    from tests.cluster.conftest import free_ports

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=512 << 20, log_to_driver=False,
             configure_logging=False)
    try:
        print(f"\nend to end over Ray and WebSockets: paper network, T = {period} s, {rounds} measured rounds, "
              f"trainers at {speed:.0f} samples/s, aggregation {aggregation}")
        print(f"{'G':>3} {'N':>5} {'power(1)':>10} {'power(N)':>11} {'efficiency':>11} {'contrib. N':>11} "
              f"{'round s':>8}")
        for g in gateways:
            with tempfile.TemporaryDirectory() as tmp:
                # every simulated trainer connects from 127.0.0.1: the per-address connection limit (64 by
                # default) would hold all but 64 of them out (why N = 128 "never connected" in an earlier run)
                settings = Settings(data_dir=Path(tmp), checkpoint_every=1000, max_connections_per_address=n + 64)
                hyper = {"period_s": period, "aggregation": aggregation, "spot_checks": False}
                spec = {"name": "bench", "network": PAPER_NETWORK, "hyper": hyper}
                cluster = start_cluster(settings, g, free_ports(g), [spec], public_host="127.0.0.1")
                try:
                    params = ray.get(cluster.projects[1].state.remote())["params"].size
                    one = asyncio.run(_power(ray, cluster, 1, period, rounds, speed, params))
                    many = asyncio.run(_power(ray, cluster, n, period, rounds, speed, params))
                finally:
                    for h in cluster.gateways + list(cluster.projects.values()):
                        ray.kill(h)
            eff = many["power"] / (n * one["power"]) if one["power"] else float("nan")
            print(f"{g:>3} {n:>5} {one['power']:>10.0f} {many['power']:>11.0f} {eff:>11.3f} "
                  f"{many['contributions']:>11.0f} {many['duration']:>8.2f}", flush=True)
    finally:
        ray.shutdown()
