"""Cluster benchmark: the project side's CPU per round against N clients and G gateways, the ingest cost per gradient
at a gateway against one process, and a cost model of capacity on a bigger machine.

It runs the real code (GatewayRuntime's frame checks and aggregator, ProjectCore's partial checks, sum and optimizer
step) in one process without Ray, so that each cost is CPU time of one thread, measured exactly: on a 2-core
machine shared with other work, processes would only measure the scheduler. What Ray adds (one object per gateway
and round each way) is outside these figures and is named in the cost model. Usage:
    .venv/bin/python bench/cluster.py [--params 31786] [--clients 16,64,256] [--gateways 1,2,4] [--rounds 5]
        [--e2e N --e2e-gateways 1,2 --e2e-rounds 4]
With --e2e N it also runs N simulated trainers end to end over real Ray actors and WebSockets (bench/cluster_e2e.py)
and prints the scaling efficiency; --e2e-only skips the in-process figures.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

import numpy as np

from mlitb.cluster.core import LocalUpstream, ProjectCore
from mlitb.cluster.gateway import GatewayRuntime
from mlitb.config import Settings
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import ProjectSpec
from mlitb.model import PAPER_NETWORK
from mlitb.protocol import MessageType, decode, encode


class Timer:
    """Thread CPU seconds spent inside the wrapped calls."""

    def __init__(self):
        self.seconds, self.calls = 0.0, 0

    def wrap(self, fn):
        def timed(*a, **kw):
            t = time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                self.seconds += time.thread_time() - t
                self.calls += 1
        return timed


class Trainer:
    """Answers WORK at once with a pre-encoded real-sized GRADIENT (decoded per frame, as the server does)."""

    def __init__(self, runtime, seed: int, rounds: int):
        self.runtime, self.rounds = runtime, rounds
        grad = (np.random.default_rng(seed).standard_normal(runtime.param_count) * 0.01).astype(np.float32)
        self.grad = grad
        self.cid = runtime.add_client(self, "trainer", "cpu").id

    def send(self, frame: bytes) -> bool:
        if frame[0] == MessageType.WORK:
            f = decode(frame, len(frame))
            if f.round < self.rounds:
                data = encode(MessageType.GRADIENT, project=self.runtime.id, round=f.round, count=32, value=70.0,
                              payload=self.grad)
                asyncio.get_running_loop().call_soon(lambda: self.runtime.on_frame(self.cid, decode(data, len(data))))
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        pass


def spec(params: int | None, aggregation: str = "mean") -> ProjectSpec:
    network = PAPER_NETWORK if params is None else [
        {"type": "input", "shape": [28, 28, 1]}, {"type": "flatten"},
        {"type": "dense", "units": max(1, params // 785 - 1), "activation": "relu"},
        {"type": "dense", "units": 10, "activation": "softmax"}]
    return ProjectSpec(name="bench", network=network, hyper={"period_s": 30.0, "aggregation": aggregation,
                                                             "spot_checks": False})


async def until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0)


async def single(s: ProjectSpec, n: int, rounds: int) -> float:
    rt = ProjectRuntime(1, s, s.build_network(), None, Settings())
    ingest, close = Timer(), Timer()
    rt.on_frame = ingest.wrap(rt.on_frame)
    rt.finish_update = close.wrap(rt.finish_update)
    for k in range(n):
        Trainer(rt, k, rounds)
    task = asyncio.create_task(rt.run())
    await until(lambda: rt.round >= rounds)
    rt.stop()
    await task
    return (ingest.seconds + close.seconds) / ingest.calls  # its round close (the step) shared by the gradients


async def cluster(s: ProjectSpec, n: int, g: int, rounds: int) -> tuple[float, float, float]:
    core = ProjectCore(ProjectRuntime(1, s, s.build_network(), None, Settings()))
    project = Timer()
    core.submit = project.wrap(core.submit)
    core.runtime.finish_update = project.wrap(core.runtime.finish_update)
    ingest, partial = Timer(), Timer()  # a gateway's round close: its telemetry record (the step is upstream)
    gateways = []
    for i in range(g):
        core.hello(f"g{i}")
        gw = GatewayRuntime(1, s, s.build_network(), None, Settings(), upstream=LocalUpstream(core), gateway=f"g{i}")
        gw.on_frame = ingest.wrap(gw.on_frame)
        gw.finish_update = partial.wrap(gw.finish_update)
        gateways.append(gw)
    for k in range(n):
        Trainer(gateways[k % g], k, rounds)
    tasks = [asyncio.create_task(core.run())] + [asyncio.create_task(gw.run()) for gw in gateways]
    await until(lambda: core.runtime.round >= rounds)
    core.stop()
    for gw in gateways:
        gw.stop()
    await asyncio.gather(*tasks)
    done = core.runtime.round
    return project.seconds / done, ingest.seconds / ingest.calls, partial.seconds / max(1, partial.calls)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=int, default=None, help="dense network of about this many parameters "
                                                             "(default: the paper's network, 31,786)")
    ap.add_argument("--clients", default="16,64,256")
    ap.add_argument("--gateways", default="1,2,4")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--period", type=float, default=4.0, help="round period T of the cost model (s)")
    ap.add_argument("--cores", type=int, default=16, help="cores of the machine the cost model sizes")
    ap.add_argument("--aggregation", default="mean", help="the projects' rule (in-process rows and --e2e)")
    ap.add_argument("--e2e", type=int, default=0, help="end to end over Ray: N simulated trainers (0: skip)")
    ap.add_argument("--e2e-gateways", default="1,2")
    ap.add_argument("--e2e-rounds", type=int, default=4)
    ap.add_argument("--e2e-speed", type=float, default=2200.0, help="samples/s of each simulated trainer")
    ap.add_argument("--e2e-only", action="store_true")
    return ap.parse_args()


async def main(args) -> None:
    logging.getLogger("mlitb").setLevel(logging.ERROR)  # each run's last partial is refused as the run stops
    s = spec(args.params, args.aggregation)
    P = s.build_network().param_count
    ns = [int(x) for x in args.clients.split(",")]
    gs = [int(x) for x in args.gateways.split(",")]
    print(f"parameters {P}; aggregation {args.aggregation}; {args.rounds} rounds per row; CPU seconds of one thread "
          f"(time.thread_time)")
    print(f"{'G':>3} {'N':>5} {'project ms/round':>17} {'gateway us/gradient':>20} {'single us/gradient':>19} "
          f"{'ratio':>6} {'gateway round-close ms':>23}")
    worst = {}
    for g in gs:
        for n in ns:
            one = await single(s, n, args.rounds)
            proj, ing, close = await cluster(s, n, g, args.rounds)
            per_gradient = ing + close * g / n  # the gateway's round close (its partial) shared by its clients
            print(f"{g:>3} {n:>5} {proj * 1e3:>17.3f} {per_gradient * 1e6:>20.1f} {one * 1e6:>19.1f} "
                  f"{per_gradient / one:>6.2f} {close * 1e3:>23.3f}")
            worst[g] = max(worst.get(g, 0.0), proj)
            if n == max(ns):  # steady state: at small N a gateway's round close weighs on few gradients
                worst["ingest"] = max(worst.get("ingest", 0.0), per_gradient)
    # cost model: a gateway core keeps ingest within 10% of the period (efficiency >= 0.9 from the server side);
    # the project core must check and sum G partials and take one step within the same 10%
    budget = 0.1 * args.period
    per_gateway = int(budget / worst["ingest"])
    project_per_g = max(worst[g] / g for g in gs)
    gateways = args.cores - 1
    print(f"\ncost model for {args.cores} cores, T = {args.period} s, efficiency >= 0.9 (server CPU <= 10% of T):")
    print(f"  one gateway core ingests {per_gateway} clients ({worst['ingest'] * 1e6:.1f} us per gradient, largest N)")
    print(f"  project core: {project_per_g * 1e3:.3f} ms per gateway per round (worst row) -> "
          f"{int(budget / project_per_g)} gateways fit its budget")
    print(f"  {gateways} gateways + 1 project core: about {gateways * per_gateway} clients "
          f"(plus one Ray object of {4 * P / 1e6:.2f} MB per gateway and round each way, not measured here)")
    print("  the WebSocket read of each frame (the same at a gateway as in one process) is not in these figures: "
          "bench/scaling.py measures it; an upper bound, not a promise")


if __name__ == "__main__":
    cli = parse_args()
    if not cli.e2e_only:
        asyncio.run(main(cli))
    if cli.e2e:
        from cluster_e2e import run_e2e  # bench/ is on sys.path when this file runs

        run_e2e([int(x) for x in cli.e2e_gateways.split(",")], cli.e2e, cli.period, cli.e2e_rounds, cli.e2e_speed,
                cli.aggregation)
