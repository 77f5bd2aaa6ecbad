"""Measures spot-check verification against issue 13's targets: catch rate, extra compute, master CPU, false positives.

1. Catch rate (the wrapper's real draw, mlitb/trust/spot_check.py, with the default policy): a volunteer
   that fakes a share f of its results from its first round; over --trials simulated volunteers, the share
   struck at least once ("caught") and quarantined (2 strikes) within 50 rounds. Every faked result that is
   checked is struck (a fake differs from the recomputation by far more than the tolerance:
   tests/integration/test_spot_checks.py).
2. Cost, measured: a real runtime with --trainers in-memory trainers of a dense network (softmax regression on
   MNIST, --batch examples per result) whose results the master recomputes; master CPU per checked example
   against the trainer's CPU per example of the same NumPy computation (a wasm browser trainer is slower
   per example, so this ratio overstates the share). Extra compute = share of results checked x that ratio;
   the share checked over a volunteer's life of L results is (50 p_new + (L - 50) p_known) / L.
3. False positives: honest results recomputed and compared; the worst relative difference and any strike.
   Against the real wasm trainer see tests/e2e/test_spot_checks_browser.py (measured worst 3.2e-7 < 1e-4).

Run:  .venv/bin/python bench/spot_checks.py [--trials 20000] [--rounds 30] [--trainers 4] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
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
from tests.mnist_softmax import SOFTMAX_REGRESSION, mnist_subset  # noqa: E402


def catch_rates(share: float, rounds: int, trials: int, policy: SpotCheckPolicy, rng: random.Random) -> tuple[float, float]:
    """(caught: >= 1 strike, quarantined: >= quarantine_after strikes) within `rounds`, as the wrapper draws."""
    caught = quarantined = 0
    for _ in range(trials):
        standing = strikes = 0
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
    spec = ProjectSpec(name="checked", network=SOFTMAX_REGRESSION, hyper={"period_s": 1})
    network = parse_network(SOFTMAX_REGRESSION)
    # the master's own machine is exempt by default; these trainers play strangers
    rt = ProjectRuntime(1, spec, spec.build_network(), data, Settings(address_limits_exempt=()))
    train_cpu = [0.0]

    def seeded(i: int):
        def gradient(params, ids):
            client = trainers[i].client
            _, seed, held, _ = client.work_check
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
    for _ in range(args.rounds):
        await rt.run_round()
    for t in trainers:
        t.leave()
    s = rt.spot.stats
    results = sum(r["contributions"] for r in rt.metrics)
    return {"results": results, "checks": s.checks, "failed": s.failed, "worst": s.worst,
            "master_s_per_example": s.cpu_s / max(s.samples, 1),
            "trainer_s_per_example": train_cpu[0] / max(results * args.batch, 1),
            "max_checks_per_round": rt.spot.policy.max_checks_per_round, "rejected": sum(r["rejected"] for r in rt.metrics)}


def main(args) -> None:
    policy = SpotCheckPolicy()
    rng = random.Random(args.seed)
    print(f"policy: p_new {policy.p_new} for a volunteer's first {policy.new_results} results, then p_known "
          f"{policy.p_known}; quarantine after {policy.quarantine_after} strikes; tolerance {policy.tolerance:g}")
    print("1. catch rate within 50 rounds (simulated draws of the wrapper's policy)")
    for share in (0.05, 0.1, 0.2, 0.5, 1.0):
        caught, quarantined = catch_rates(share, 50, args.trials, policy, rng)
        print(f"   faking {share:>4.0%} of results: struck >= once {caught:.4f}, quarantined {quarantined:.4f} "
              f"({args.trials} volunteers)")
    cost = asyncio.run(measured_cost(args))
    ratio = cost["master_s_per_example"] / max(cost["trainer_s_per_example"], 1e-12)
    print(f"2. cost: {cost['checks']} checks of {cost['results']} results ({args.trainers} new volunteers, {args.rounds} "
          f"rounds, {args.batch} examples each); master CPU per checked example "
          f"{cost['master_s_per_example'] * 1e6:.1f} us vs trainer {cost['trainer_s_per_example'] * 1e6:.1f} us "
          f"(ratio {ratio:.2f}); at most {cost['max_checks_per_round']} checks of <= {policy.max_samples:,} examples "
          f"per round")
    for life in (50, 200, 1000, 5000):
        share = (min(life, policy.new_results) * policy.p_new + max(0, life - policy.new_results) * policy.p_known) / life
        print(f"   volunteer life {life:>5} results: share checked {share:.3f}, extra compute {share * ratio:.2%} "
              f"(same-engine ratio); a wasm trainer is slower per example, which lowers it")
    print(f"3. false positives: {cost['failed']} strikes of honest results in {cost['checks']} checks; worst relative "
          f"difference {cost['worst']:.2g} (tolerance {policy.tolerance:g}); results refused {cost['rejected']}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--trainers", type=int, default=4)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    main(p.parse_args())
