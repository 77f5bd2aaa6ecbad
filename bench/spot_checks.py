"""Measures spot-check verification against issue 13's targets: catch rate, extra compute, master CPU, false positives.

Commit-and-sample (mlitb/trust/commitments.py): a trainer following a WORK seed sends, with its summed gradient,
per-batch commitments (K projections of each batch's gradient onto +-1 directions from the seed, and the
batch's loss). The master checks every committed result's commitments against its sum (O(K P), no
recomputation) and recomputes ONE batch of a result drawn with probability 0.9, whoever sent it. Results
without commitments (older clients, raw sockets) are checked whole, also at 0.9: no record lowers a rate.

1. Catch rate within 50 rounds (the wrapper's draws, simulated): a volunteer faking a share f of its results,
   from its first result (a newcomer) and after 50 honest ones (an established volunteer turned faker), each
   faked result faking a share q of its batches (q = 1: a lazy faker that computed nothing); struck >= once,
   and quarantined (2 strikes). Every checked faked batch is struck: part 2 measures it.
2. Measured, in memory (a real runtime, its real wrapper): --trainers honest committed NumPy trainers and one
   lazy faker (faking 10% of its results, commitments made to agree with its fake sum) from stranger addresses,
   --network on MNIST, --examples per result in batches of --commit-batch. Master CPU (batch recomputation and
   commitment checks) against the trainers' CPU, and what the faker's checks found.
3. Extra compute in total = master check CPU / trainers' CPU, per fleet mix: committed results cost the same
   whoever sends them (newcomers, one-visit volunteers, established ones); uncommitted ones as before.
   Analytically: p x (one batch / the result) x (master/trainer cost per example) + the commitment checks.
4. False strikes of honest results across engines: torch (if installed) computes --engine-batches batches of
   the paper network and softmax regression; the master recomputes each in NumPy and compares projections and
   loss as a check does (strikes, worst difference against the tolerance). The wasm figure is printed by
   tests/e2e/test_spot_checks_browser.py, the torch worker's by tests/integration/test_torch_spot_checks.py.

Run:  .venv/bin/python bench/spot_checks.py [--trials 20000] [--rounds 30] [--trainers 4] [--examples 2000]
      [--commit-batch 32] [--network softmax|paper] [--engine-batches 300]
"""

from __future__ import annotations

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
from mlitb.model import PAPER_NETWORK, parse_network  # noqa: E402
from mlitb.trust.commitments import BatchCheck, committed_gradient, directions, project  # noqa: E402
from mlitb.trust.example_order import examples_used  # noqa: E402
from mlitb.trust.numpy_net import GradientJob, gradient_sum  # noqa: E402
from mlitb.trust.spot_check import SpotCheckPolicy, tolerance_for  # noqa: E402
from mlitb.workers.hostile import lazy_commitment  # noqa: E402
from mlitb.workers.simulated import MemoryTrainer  # noqa: E402
from bench._trust_common import arguments  # noqa: E402
from tests.mnist_softmax import SOFTMAX_REGRESSION, mnist_subset  # noqa: E402

NETWORKS = {"softmax": SOFTMAX_REGRESSION, "paper": PAPER_NETWORK}
# (share of volunteers, results each contributes in its life): a tail of one-visit volunteers, a core of regulars
FLEET_MIX = ((0.4, 10), (0.3, 100), (0.2, 1_000), (0.1, 10_000))


def catch_rates(share: float, rounds: int, trials: int, policy: SpotCheckPolicy, rng: random.Random,
                committed: bool, batches_faked: float = 1.0) -> tuple[float, float]:
    """(caught: >= 1 strike, quarantined: >= quarantine_after strikes) within `rounds`, as the wrapper draws."""
    caught = quarantined = 0
    for _ in range(trials):
        strikes = 0
        for _ in range(rounds):
            p = policy.p_committed if committed else policy.p_uncommitted  # the record does not lower it
            struck = rng.random() < share and rng.random() < p and (not committed or rng.random() < batches_faked)
            if struck:
                strikes += 1
                if strikes >= policy.quarantine_after:
                    break
        caught += strikes >= 1
        quarantined += strikes >= policy.quarantine_after
    return caught / trials, quarantined / trials


async def measured(args) -> dict:
    data = mnist_subset(20_000, 100)
    spec = ProjectSpec(name="checked", network=NETWORKS[args.network], hyper={"period_s": 1})
    network = parse_network(NETWORKS[args.network])
    # the master's own machine is exempt by default; these trainers play strangers
    rt = ProjectRuntime(1, spec, spec.build_network(), data, Settings(address_limits_exempt=()))
    cpu = {"committed": 0.0, "plain": 0.0, "results": 0}
    faker = {"results": 0, "faked": 0}

    def seeded(i: int, faking: bool):
        def gradient(params, ids):
            client = trainers[i].client
            seed, held, _ = client.work_checks[max(client.work_checks)]
            used = examples_used(seed, held, args.examples)
            started = time.thread_time()  # gathering its examples is part of a trainer's work, as of a check's
            images, labels = data.train.images[used], data.train.labels[used]
            if faking:
                faker["results"] += 1
                if faker["results"] % 10 == 5:  # 10% of its results: half the examples' gradient, commitments to match
                    faker["faked"] += 1
                    half = len(used) // 2
                    g, l = gradient_sum(network, params, images[:half], labels[:half])
                    return g, args.examples, l, lazy_commitment(g, l, seed, args.commit_batch, args.examples)
            grad, loss, commitment = committed_gradient(network, params, images, labels, seed, args.commit_batch)
            if not faking:
                cpu["results"] += 1
                cpu["committed"] += time.thread_time() - started
                started = time.thread_time()
                images, labels = data.train.images[used], data.train.labels[used]
                for at in range(0, len(used), args.commit_batch):  # the same batches without commitments
                    gradient_sum(network, params, images[at:at + args.commit_batch], labels[at:at + args.commit_batch])
                cpu["plain"] += time.thread_time() - started
            return grad, args.examples, loss, commitment
        return gradient

    trainers: list[MemoryTrainer] = []
    for i in range(args.trainers + 1):
        faking = i == args.trainers
        trainers.append(MemoryTrainer(rt, seeded(i, faking), address=f"10.0.0.{i + 1}",
                                      volunteer=f"bench-volunteer-{i:08d}"))
    await asyncio.sleep(0)
    for _ in range(args.rounds):
        await rt.run_round()
    for t in trainers:
        t.leave()
    s = rt.spot.stats
    honest_results = cpu["results"]
    return {"stats": s, "cpu": cpu, "faker": faker, "faker_errors": [e["code"] for e in trainers[-1].errors],
            "honest_results": honest_results, "honest_errors": sum(len(t.errors) for t in trainers[:-1]),
            "rejected": sum(r["rejected"] for r in rt.metrics)}


def engine_differences(network_spec: list, batches: int, batch: int, rng: np.random.Generator) -> dict | None:
    """Torch computes `batches` batches, NumPy recomputes each as a check does: (checks, strikes, worst, tolerance)."""
    try:
        from mlitb.workers.native.engine import TorchEngine
    except ImportError:
        return None
    network = parse_network(network_spec)
    data = mnist_subset(5_000, 10)
    engine = TorchEngine(network, "cpu", seed=1)
    engine.hold(data.train.images, data.train.labels)
    tolerance, worst, strikes = tolerance_for(network), 0.0, 0
    params = None
    for b in range(batches):
        if params is None or b % 10 == 0:  # parameters of a model in training: initial ones, then moved a little
            params = (engine.get_params() + rng.standard_normal(network.param_count).astype(np.float32) * 0.01)
        ids = rng.choice(len(data.train), batch, replace=False)
        engine.set_params(params)
        r = engine.compute_on(ids, batch)
        seed = int(rng.integers(1, 2**32))
        dirs = directions(seed, network.param_count)
        check = BatchCheck(GradientJob(network, params, data.train, ids), dirs)
        check.advance(batch)
        diff = check.difference(project(dirs, r.grad).astype(np.float32), np.float32(r.loss_sum))
        worst, strikes = max(worst, diff), strikes + (diff > tolerance)
    return {"checks": batches, "strikes": strikes, "worst": worst, "tolerance": tolerance}


def main(args) -> None:
    policy = SpotCheckPolicy()
    rng = random.Random(args.seed)
    print(f"policy: committed results (payload kind 6) drawn at {policy.p_committed} for everyone, one batch "
          f"recomputed; uncommitted ones at {policy.p_uncommitted}, checked whole, whatever the record; quarantine after {policy.quarantine_after} strikes; tolerance per network (tolerance_for)")
    print("1. catch rate within 50 rounds (simulated draws of the wrapper's policy)")
    for committed in (True, False):
        label = "committed  " if committed else "uncommitted"
        for who in ("newcomer", "established volunteer turned faker"):  # the same rates: no record lowers them
            caught, quarantined = catch_rates(0.1, 50, args.trials, policy, rng, committed)
            print(f"   {label} faking 10% of results, {who}: struck >= once {caught:.4f}, quarantined {quarantined:.4f}")
    for q in (0.5, 0.25):
        caught, _ = catch_rates(0.1, 50, args.trials, policy, rng, True, batches_faked=q)
        print(f"   committed faking 10% of results, {q:.0%} of each faked result's batches: struck {caught:.4f} "
              f"(a faked share q of batches is caught per check with probability q)")
    m = asyncio.run(measured(args))
    s, cpu = m["stats"], m["cpu"]
    master = s.cpu_s + s.commit_cpu_s
    print(f"2. measured ({args.network}, {args.trainers} honest committed trainers + 1 lazy faker of 10% of its results, "
          f"{args.rounds} rounds, {args.examples} examples per result in batches of {args.commit_batch}):")
    print(f"   {s.committed} committed results, {s.batch_checks} batch checks ({s.samples} examples recomputed), "
          f"{s.deferred} deferred, {s.probation} on probation; honest trainers struck {m['honest_errors']} times")
    print(f"   faker: {m['faker']['faked']} of {m['faker']['results']} results faked; its errors {m['faker_errors']}")
    print(f"   master CPU: batch recomputation {s.cpu_s:.3f} s + commitment checks {s.commit_cpu_s:.3f} s = {master:.3f} s; "
          f"honest trainers' CPU {cpu['committed']:.3f} s (without commitments {cpu['plain']:.3f} s: commitments cost "
          f"the trainer {cpu['committed'] / max(cpu['plain'], 1e-9) - 1:+.1%})")
    # master CPU per committed result over an honest trainer's compute per result (without commitments)
    share = (master / max(s.committed, 1)) / (cpu["plain"] / max(m["honest_results"], 1))
    print("3. extra compute = master check CPU / trainers' compute")
    print(f"   committed results (newcomers, one-visit volunteers and established ones alike): {share:.1%} "
          f"(~ {policy.p_committed} x {args.commit_batch}/{args.examples} of a result, x the master/trainer cost ratio)")
    per_example = s.cpu_s / max(s.samples, 1)
    trainer_example = cpu["plain"] / max(m["honest_results"] * args.examples, 1)
    commit_each = s.commit_cpu_s / max(s.committed, 1)
    for n in (250, 500, 1000, 2000, 10_000):
        batches = -(-n // args.commit_batch)
        cost = policy.p_committed * (n / batches) * per_example + commit_each
        print(f"   a result of {n:>6} examples ({batches:>3} batches): {cost / (n * trainer_example):.1%}")
    for mix, label in ((((1.0, 50),), "newcomers' first 50 results"), (FLEET_MIX, "fleet mix " + ", ".join(
            f"{w:.0%} x {life:,}" for w, life in FLEET_MIX))):
        checks = sum(w * life * policy.p_uncommitted for w, life in mix)
        whole = checks / sum(w * life for w, life in mix)
        print(f"   without commitments, {label}: share checked {whole:.3f} -> extra compute ~ {whole:.0%} x the cost "
              f"ratio; with commitments {share:.1%}")
    print(f"   results refused {m['rejected']}")
    print("4. false strikes of honest results across engines (torch batch vs NumPy recomputation, as a check compares)")
    nrng = np.random.default_rng(args.seed)
    for name in ("softmax", "paper"):
        d = engine_differences(NETWORKS[name], args.engine_batches, args.commit_batch, nrng)
        if d is None:
            print("   torch is not installed: skipped")
            break
        print(f"   {name}: {d['strikes']} strikes in {d['checks']} batch checks; worst difference {d['worst']:.2g} "
              f"(tolerance {d['tolerance']:g}, margin {d['tolerance'] / max(d['worst'], 1e-12):.0f}x)")


if __name__ == "__main__":
    main(arguments(__doc__, choices={"network": sorted(NETWORKS)}, trials=20_000, rounds=30, network="softmax",
                   trainers=4, examples=2000, commit_batch=32, engine_batches=300, seed=0))
