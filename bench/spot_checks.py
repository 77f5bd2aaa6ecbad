"""Measures spot-check verification against issue 13's targets: catch rate, extra compute, master CPU, false positives.

1. Catch rate (the wrapper's policy, mlitb/trust/spot_check.py, drawn as it draws): a volunteer that fakes a
   share f of its results from its first result; over --trials simulated volunteers, the share struck at least
   once ("caught") and quarantined (2 strikes) within 50 rounds. Every faked result that is checked is struck
   (a fake differs from the recomputation by far more than the tolerance: tests/integration/test_spot_checks.py).
2. Cost per checked example, measured: a real runtime (in memory) with --trainers trainers from stranger
   addresses, each a new keyed volunteer, training --network (softmax | paper) on MNIST, --batch examples per
   result; the master's CPU per recomputed example against the trainer's CPU per example of the same NumPy
   computation (the "same-engine ratio"). Against the real wasm browser trainer the ratio is printed by
   tests/e2e/test_spot_checks_browser.py (small conv net: master 284 us vs wasm 293 us per example, 0.97).
   Also the master's spot-check CPU in its busiest round against the bound (cpu_share x period + burst).
3. Extra compute in total = share of results checked x ratio, over a stated fleet mix: volunteers keep their
   key (the page keeps one in the browser's storage), so their record persists (the credit row) and a volunteer
   is a newcomer once per project. A volunteer that contributes L results in its life is checked
   0.9 x min(L, 50) + p_known x max(0, L - 50) times. The fleet's share is checks / results over the mix.
4. False positives: honest results recomputed and compared: strikes, and the worst relative difference.

Run:  .venv/bin/python bench/spot_checks.py [--trials 20000] [--rounds 20] [--trainers 4] [--batch 500]
      [--network softmax|paper]
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlitb.config import Settings  # noqa: E402
from mlitb.master.loop import ProjectRuntime  # noqa: E402
from mlitb.master.project import ProjectSpec  # noqa: E402
from mlitb.model import parse_network  # noqa: E402
from mlitb.trust.example_order import examples_used  # noqa: E402
from mlitb.trust.numpy_net import gradient_sum  # noqa: E402
from mlitb.trust.spot_check import SpotCheckPolicy  # noqa: E402
from mlitb.workers.simulated import MemoryTrainer  # noqa: E402
from mlitb.model import PAPER_NETWORK  # noqa: E402
from bench._trust_common import arguments  # noqa: E402
from tests.mnist_softmax import SOFTMAX_REGRESSION, mnist_subset  # noqa: E402

NETWORKS = {"softmax": SOFTMAX_REGRESSION, "paper": PAPER_NETWORK}
# (share of volunteers, results each contributes in its life): a tail of one-visit volunteers, a core of regulars
FLEET_MIX = ((0.4, 10), (0.3, 100), (0.2, 1_000), (0.1, 10_000))


def catch_rates(share: float, rounds: int, trials: int, policy: SpotCheckPolicy, rng: random.Random,
                standing_at_start: int = 0) -> tuple[float, float]:
    """(caught: >= 1 strike, quarantined: >= quarantine_after strikes) within `rounds`, as the wrapper draws."""
    caught = quarantined = 0
    for _ in range(trials):
        standing, strikes = standing_at_start, 0
        for _ in range(rounds):
            p = policy.p_new if standing < policy.new_results else policy.p_known
            if rng.random() < p and rng.random() < share:
                strikes += 1
                standing = 0
                if strikes >= policy.quarantine_after:
                    break
            else:
                standing += 1
        caught += strikes >= 1
        quarantined += strikes >= policy.quarantine_after
    return caught / trials, quarantined / trials


async def measured_cost(args) -> dict:
    data = mnist_subset(20_000, 100)
    spec = ProjectSpec(name="checked", network=NETWORKS[args.network], hyper={"period_s": 1})
    network = parse_network(NETWORKS[args.network])
    # the master's own machine is exempt by default; these trainers play strangers
    rt = ProjectRuntime(1, spec, spec.build_network(), data, Settings(address_limits_exempt=()))
    train_cpu = [0.0]

    def seeded(i: int):
        def gradient(params, ids):
            client = trainers[i].client
            seed, held, _ = client.work_checks[max(client.work_checks)]
            started = time.thread_time()
            used = examples_used(seed, held, args.batch)
            grad, loss = gradient_sum(network, params, data.train.images[used], data.train.labels[used])
            train_cpu[0] += time.thread_time() - started
            return grad, args.batch, loss
        return gradient

    trainers: list[MemoryTrainer] = []
    for i in range(args.trainers):
        trainers.append(MemoryTrainer(rt, seeded(i), address=f"10.0.0.{i + 1}", volunteer=f"bench-volunteer-{i:08d}"))
    await asyncio.sleep(0)
    busiest = last = 0.0
    busiest_wall = 1.0
    for _ in range(args.rounds):
        started = time.monotonic()
        await rt.run_round()
        if rt.spot.stats.cpu_s - last > busiest:
            busiest, busiest_wall = rt.spot.stats.cpu_s - last, time.monotonic() - started
        last = rt.spot.stats.cpu_s
    for t in trainers:
        t.leave()
    s = rt.spot.stats
    results = sum(r["contributions"] for r in rt.metrics)
    return {"results": results, "checks": s.checks, "failed": s.failed, "worst": s.worst, "deferred": s.deferred,
            "probation": s.probation, "busiest_round_s": busiest, "busiest_wall_s": busiest_wall, "tolerance": rt.metrics[-1]["spot_check_tolerance"],
            "master_s_per_example": s.cpu_s / max(s.samples, 1),
            "trainer_s_per_example": train_cpu[0] / max(results * args.batch, 1),
            "rejected": sum(r["rejected"] for r in rt.metrics)}


def fleet_share(policy: SpotCheckPolicy, mix=FLEET_MIX) -> float:
    checks = sum(w * (min(life, policy.new_results) * policy.p_new + max(0, life - policy.new_results) * policy.p_known)
                 for w, life in mix)
    return checks / sum(w * life for w, life in mix)


def main(args) -> None:
    policy = SpotCheckPolicy()
    rng = random.Random(args.seed)
    print(f"policy: p_new {policy.p_new} for a volunteer's first {policy.new_results} results, then p_known "
          f"{policy.p_known}; quarantine after {policy.quarantine_after} strikes; tolerance per network (tolerance_for)")
    print("1. catch rate within 50 rounds (simulated draws of the wrapper's policy)")
    for share in (0.05, 0.1, 0.2, 0.5, 1.0):
        caught, quarantined = catch_rates(share, 50, args.trials, policy, rng)
        print(f"   faking {share:>4.0%} of results: struck >= once {caught:.4f}, quarantined {quarantined:.4f} "
              f"({args.trials} volunteers)")
    for rounds in (50, 1000):
        caught, quarantined = catch_rates(0.1, rounds, args.trials // 4, policy, rng, policy.new_results)
        print(f"   an established volunteer that starts faking 10% of results: struck within {rounds} rounds {caught:.4f}, "
              f"quarantined {quarantined:.4f} (BOINC's trade-off: a record buys fewer checks)")
    cost = asyncio.run(measured_cost(args))
    ratio = cost["master_s_per_example"] / max(cost["trainer_s_per_example"], 1e-12)
    print(f"2. cost ({args.network}): {cost['checks']} checks of {cost['results']} results ({args.trainers} new volunteers, "
          f"{args.rounds} rounds, {args.batch} examples each; {cost['deferred']} finished later, {cost['probation']} taken on "
          f"probation); master CPU per checked example {cost['master_s_per_example'] * 1e6:.1f} us vs trainer "
          f"{cost['trainer_s_per_example'] * 1e6:.1f} us (same-engine ratio {ratio:.2f}); busiest round's check CPU "
          f"{cost['busiest_round_s']:.3f} s in a round of {cost['busiest_wall_s']:.2f} s (bound: {policy.cpu_share} x the round's "
          f"wall time + {policy.burst_s} s burst = {policy.cpu_share * cost['busiest_wall_s'] + policy.burst_s:.2f} s)")
    print("3. extra compute = share checked x ratio (same-engine ratio above; 0.97 for the wasm browser trainer of a "
          "small conv net)")
    for life in (50, 200, 1000, 5000):
        share = fleet_share(policy, ((1.0, life),))
        print(f"   a volunteer's life of {life:>5} results: share checked {share:.3f}, extra compute {share * ratio:.1%} "
              f"(same engine), {share * 0.97:.1%} (wasm conv)")
    mix = ", ".join(f"{w:.0%} x {life:,}" for w, life in FLEET_MIX)
    share = fleet_share(policy)
    print(f"   fleet mix (share of volunteers x results in its life: {mix}): share checked {share:.3f}, extra compute "
          f"{share * ratio:.1%} (same engine), {share * 0.97:.1%} (wasm conv)")
    for p_known in (0.01, 0.02, 0.03):
        share = fleet_share(replace(policy, p_known=p_known))
        print(f"   the same mix with p_known {p_known}: share checked {share:.3f}, extra compute {share * ratio:.1%} "
              f"(same engine), {share * 0.97:.1%} (wasm conv)")
    print(f"4. false positives: {cost['failed']} strikes of honest results in {cost['checks']} checks; worst relative "
          f"difference {cost['worst']:.2g} (tolerance {cost['tolerance']:g}); results refused {cost['rejected']}")

if __name__ == "__main__":
    main(arguments(__doc__, choices={"network": sorted(NETWORKS)}, trials=20_000, rounds=20, network="softmax",
                   trainers=4, batch=500, seed=0))
