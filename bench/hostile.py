"""Prints the MNIST test error of a project under hostile trainers, over real sockets, per attack and aggregation rule.

A real server (default settings unless a rule is named) on loopback; honest trainers, each from its own
loopback address (127.0.0.2, .3, ...), answer every round with the summed cross-entropy gradient of a
mini-batch of 100 of their allocated MNIST examples (softmax regression, tests/mnist_softmax.py).
Hostile raw-WebSocket clients answer with one of issue 13's attacks (mlitb/workers/hostile.py): `fixed`
direction with the largest allowed count, `sign_flip` (x -100), `random` (noise 100 per coordinate and
sample), `inflate` (the flipped gradient over the largest allowed count); either ONE hostile client
(`alone`, from 127.0.0.9), a colluding `swarm` of --swarm clients from one address (127.0.0.9), or a `big`
swarm of --big-swarm clients from that address, more than the per-address cap (4): the ones past the cap are
refused at JOIN (TOO_MANY_TRAINERS_FROM_ADDRESS) after paying the proof of work their place asked for. Each
scenario trains a fresh project for --rounds rounds (T = 1 s; rounds close as soon as everyone answered),
then reads the server's parameters and measures the test error on the 10,000 MNIST test digits.

Columns: test error; results refused (ERROR frames, as the round metrics count them: spot-check strikes,
quarantined results, ...); results whose count was cut to the claim allowance (`clamped`); hostile
connections refused at JOIN by the per-address cap; connections quarantined by spot checks; public votes
scaled to the master's reference bound (mlitb/master/trust_hooks.py); verification cost: spot checks made,
the master's CPU seconds spent recomputing (dense networks are recomputed in NumPy:
mlitb/trust/spot_check.py, its counters read only) and that as a share of the honest trainers' own compute
seconds in the same scenario (NumPy too, so the ratio is same-engine).
Link: loopback (the network is free); the figures are about robustness, not speed.

Run:  .venv/bin/python bench/hostile.py [--rounds 40] [--honest 2] [--swarm 3] [--big-swarm 6]
                                        [--rules default,mean,...] [--kinds fixed,inflate,...]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._trust_common import arguments  # noqa: E402
from mlitb.config import Settings  # noqa: E402
from mlitb.server.run import BackgroundServer  # noqa: E402
from mlitb.workers.hostile import HOSTILE_KINDS  # noqa: E402
from tests.socket_training import train  # noqa: E402

RULES = ("default", "mean", "clipped_mean", "median", "trimmed_mean")


SHAPES = ("alone", "swarm", "big")


async def scenario(url: str, rule: str, kind: str, shape: str, args) -> dict:
    honest = [f"127.0.0.{2 + i}" for i in range(args.honest)]
    size = {"alone": 1, "swarm": args.swarm, "big": args.big_swarm}.get(shape, 0)
    hostile = [] if kind == "none" else [("127.0.0.9", kind)] * size
    hyper = {"period_s": 1} if rule == "default" else {"period_s": 1, "aggregation": rule}
    out = await train(url, honest, hostile, args.rounds, timeout_s=600, hyper=hyper)
    over_cap = sum(1 for log in out.hostile if not log.joined and log.errors
                   and log.errors[-1]["code"] == "TOO_MANY_TRAINERS_FROM_ADDRESS")
    last = out.metrics[-1]
    return {"rule": rule, "kind": kind, "shape": shape, "error": out.error, "hostile": len(hostile),
            "refused": sum(m["rejected"] for m in out.metrics), "clamped": sum(m.get("clamped", 0) for m in out.metrics),
            "join_refused": over_cap, "quarantined": last["quarantined_total"],
            "bounded": sum(m.get("votes_bounded", 0) for m in out.metrics),
            "checks": last["spot_checks_total"], "check_cpu_s": last["spot_check_cpu_s_total"],
            "honest_s": out.honest_compute_s}


async def main(args) -> None:
    rules, kinds = args.rules.split(","), args.kinds.split(",")
    for rule in rules:
        if rule not in RULES:
            raise SystemExit(f"unknown rule {rule!r}; known: {', '.join(RULES)}")
    for kind in kinds:
        if kind not in HOSTILE_KINDS:
            raise SystemExit(f"unknown kind {kind!r}; known: {', '.join(HOSTILE_KINDS)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlitb-hostile-") as scratch:
        settings = Settings(port=0, data_dir=Path(scratch))
        with BackgroundServer(settings) as server:
            t0 = time.perf_counter()
            for rule in rules:
                rows.append(await scenario(server.url, rule, "none", "-", args))
                print(_line(rows[-1]), flush=True)
                for kind in kinds:
                    for shape in SHAPES:
                        rows.append(await scenario(server.url, rule, kind, shape, args))
                        print(_line(rows[-1]), flush=True)
    print(f"\n{args.honest} honest trainers, {args.rounds} rounds each; swarm = {args.swarm}, big = {args.big_swarm} "
          f"connections from one address (cap {settings.max_trainers_per_address}); {len(rows)} scenarios in "
          f"{time.perf_counter() - t0:.0f} s (loopback)")
    for rule in rules:
        print(f"\nrule {rule}\n| attack | test error | results refused | refused at JOIN (cap) | quarantined | "
              f"votes bounded | spot checks | check CPU s | / honest compute |\n|---|---|---|---|---|---|---|---|---|")
        for kind in ("none",) + tuple(kinds):
            for shape in (("-",) if kind == "none" else SHAPES):
                r = next(x for x in rows if x["rule"] == rule and x["kind"] == kind and x["shape"] == shape)
                label = kind if shape == "-" else f"{kind}, {shape} ({r['hostile']})"
                print(f"| {label} | {r['error']:.3f} | {r['refused']} | {r['join_refused']} | {r['quarantined']} | "
                      f"{r['bounded']} | {r['checks']} | {r['check_cpu_s']:.2f} | {_share(r)} |")


def _share(r: dict) -> str:
    return f"{r['check_cpu_s'] / r['honest_s']:.1%}" if r["honest_s"] > 0 else "-"


def _line(r: dict) -> str:
    return (f"{r['rule']:>13} {r['kind']:>9} {r['shape']:>5}: test error {r['error']:.3f} | refused {r['refused']} | "
            f"clamped {r['clamped']} | refused at JOIN {r['join_refused']} | quarantined {r['quarantined']} | "
            f"bounded {r['bounded']} | verification: {r['checks']} checks, {r['check_cpu_s']:.2f} s master CPU "
            f"= {_share(r)} of the honest trainers' {r['honest_s']:.2f} s")


if __name__ == "__main__":
    asyncio.run(main(arguments(__doc__, rounds=40, honest=2, swarm=3, big_swarm=6, rules=",".join(RULES),
                               kinds=",".join(HOSTILE_KINDS))))
