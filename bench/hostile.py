"""Prints the MNIST test error of a project under hostile trainers, over real sockets, per attack and aggregation rule.

A real server (default settings unless a rule is named) on loopback; honest trainers, each from its own
loopback address (127.0.0.2, .3, ...), answer every round with the summed cross-entropy gradient of a
mini-batch of 100 of their allocated MNIST examples (softmax regression, tests/mnist_softmax.py).
Hostile raw-WebSocket clients answer with one of issue 13's attacks (mlitb/workers/hostile.py): `fixed`
direction with the largest allowed count, `sign_flip` (x -100), `random` (noise 100 per coordinate and
sample), `inflate` (the flipped gradient over the largest allowed count); either ONE hostile client
(`alone`, from 127.0.0.9) or a colluding `swarm` of --swarm clients from one address (127.0.0.9). Each
scenario trains a fresh project for --rounds rounds (T = 1 s; rounds close as soon as everyone answered),
then reads the server's parameters and measures the test error on the 10,000 MNIST test digits.

Columns: test error; results refused (ERROR frames, as the round metrics count them: spot-check strikes,
quarantined results, ...); results whose count was cut to the claim allowance (`clamped`); hostile
connections refused at JOIN (the per-address cap); connections quarantined by spot checks; verification
cost: spot checks made and the master's CPU seconds spent recomputing (dense networks are recomputed in
NumPy: mlitb/trust/spot_check.py).
Link: loopback (the network is free); the figures are about robustness, not speed.

Run:  .venv/bin/python bench/hostile.py [--rounds 40] [--honest 2] [--swarm 3] [--rules default,mean,...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlitb.config import Settings  # noqa: E402
from mlitb.server.run import BackgroundServer  # noqa: E402
from mlitb.workers.hostile import HOSTILE_KINDS  # noqa: E402
from tests.socket_training import train  # noqa: E402

RULES = ("default", "mean", "clipped_mean", "median", "trimmed_mean")


async def scenario(url: str, rule: str, kind: str, shape: str, args) -> dict:
    honest = [f"127.0.0.{2 + i}" for i in range(args.honest)]
    hostile = [] if kind == "none" else [("127.0.0.9", kind)] * (args.swarm if shape == "swarm" else 1)
    hyper = {"period_s": 1} if rule == "default" else {"period_s": 1, "aggregation": rule}
    out = await train(url, honest, hostile, args.rounds, timeout_s=600, hyper=hyper)
    refused_at_join = sum(1 for log in out.hostile if not log.joined)
    last = out.metrics[-1]
    return {"rule": rule, "kind": kind, "shape": shape, "error": out.error,
            "refused": sum(m["rejected"] for m in out.metrics), "clamped": sum(m.get("clamped", 0) for m in out.metrics),
            "join_refused": refused_at_join, "quarantined": last["quarantined_total"],
            "checks": last["spot_checks_total"], "check_cpu_s": last["spot_check_cpu_s_total"]}


async def main(args) -> None:
    rules = args.rules.split(",")
    for rule in rules:
        if rule not in RULES:
            raise SystemExit(f"unknown rule {rule!r}; known: {', '.join(RULES)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlitb-hostile-") as scratch:
        with BackgroundServer(Settings(port=0, data_dir=Path(scratch))) as server:
            t0 = time.perf_counter()
            for rule in rules:
                rows.append(await scenario(server.url, rule, "none", "-", args))
                print(_line(rows[-1]), flush=True)
                for kind in HOSTILE_KINDS:
                    for shape in ("alone", "swarm"):
                        rows.append(await scenario(server.url, rule, kind, shape, args))
                        print(_line(rows[-1]), flush=True)
    print(f"\n{args.honest} honest trainers, {args.rounds} rounds each, swarm = {args.swarm} connections from one "
          f"address; {len(rows)} scenarios in {time.perf_counter() - t0:.0f} s (loopback)")
    print(f"{'attack':<18}" + "".join(f"{r:>14}" for r in rules))
    for kind in ("none",) + HOSTILE_KINDS:
        for shape in (("-",) if kind == "none" else ("alone", "swarm")):
            cells = [next(x for x in rows if x["rule"] == r and x["kind"] == kind and x["shape"] == shape) for r in rules]
            print(f"{kind + ('' if shape == '-' else ' ' + shape):<18}" + "".join(f"{c['error']:>14.3f}" for c in cells))


def _line(r: dict) -> str:
    return (f"{r['rule']:>13} {r['kind']:>9} {r['shape']:>5}: test error {r['error']:.3f} | refused {r['refused']} | "
            f"clamped {r['clamped']} | refused at JOIN {r['join_refused']} | quarantined {r['quarantined']} | "
            f"verification: {r['checks']} checks, {r['check_cpu_s']:.2f} s master CPU")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--honest", type=int, default=2)
    p.add_argument("--swarm", type=int, default=3)
    p.add_argument("--rules", default=",".join(RULES))
    asyncio.run(main(p.parse_args()))
