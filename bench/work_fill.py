"""Prints how much of each round a browser trainer computes: work_ms / period and work_ms / (T - round trip), and late results.

Two projects on one in-process server, each with one headless-Chromium trainer, T = 2 s:
  slow: the CIFAR-size network (77,859 parameters), whose 32-batch takes a good part of the period here;
  fast: the paper's network, whose 32-batch takes a few tens of milliseconds.
Each round's work time comes from the clients table (`GET /api/projects/{id}/clients`), the late count
from the metrics. The summary line per project gives the median and the lowest share after the start-up
rounds, and the late results. Run with another checkout's PYTHONPATH to measure that code the same way.

Run after `cd web && npm run build`:  .venv/bin/python bench/work_fill.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from project_run import CIFAR_SIZE_NETWORK, colour_zip, create_project, run_trainers  # noqa: E402

from mlitb.model import PAPER_NETWORK  # noqa: E402

# the paper's network on this data set's 32x32x3 images and 3 classes
PAPER = [{"type": "input", "shape": [32, 32, 3]}, *PAPER_NETWORK[1:-1], {**PAPER_NETWORK[-1], "units": 3}]

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20, help="rounds that trained, per project (default 20)")
    ap.add_argument("--skip", type=int, default=5, help="start-up rounds left out of the summary (default 5)")
    ap.add_argument("--period", type=float, default=2.0, help="T in seconds (default 2)")
    ap.add_argument("--public", action="store_true",
                    help="treat the loopback trainers as public volunteers: spot checks, the vote bound's reference "
                         "gradient, proof of work (by default loopback is exempt, like the demo's own trainers)")
    args = ap.parse_args()

    from mlitb.config import Settings
    from mlitb.server.run import BackgroundServer

    hyper = {"period_s": args.period, "learning_rate": 0.001, "batch_size": 32}
    with tempfile.TemporaryDirectory() as data, BackgroundServer(Settings(
            port=0, data_dir=Path(data), **({"address_limits_exempt": ()} if args.public else {}))) as srv:
        projects = {name: create_project(srv.url, name, net, hyper, colour_zip(60))
                    for name, net in (("slow", CIFAR_SIZE_NETWORK), ("fast", PAPER))}
        runs: dict = {}
        threads = [threading.Thread(target=lambda n=n, p=p: runs.__setitem__(n, run_trainers(srv.url, p, 1, args.rounds)))
                   for n, p in projects.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    period_ms = 1000 * args.period
    for name, run in runs.items():
        print(f"== {name} trainer ({run.project['name']}), T = {args.period:g} s"
              f"{', public (checked) trainers' if args.public else ''} ==")
        print("round  work_ms  latency_ms  work/T  work/(T-RT)  samples")
        for rnd, rows in sorted(run.clients.items()):
            for row in rows:
                print(f"{rnd:5d}  {row['work_ms']:7d}  {row['latency_ms']:10.1f}  {row['work_ms'] / period_ms:6.3f}  "
                      f"{row['work_ms'] / (period_ms - row['latency_ms']):11.3f}  {row['last_samples']:7d}")
        fill = run.work_fill(skip=args.skip)
        share = [row["work_ms"] / period_ms for rnd, rows in run.clients.items() if rnd >= args.skip for row in rows]
        late = sum(r["late"] for r in run.metrics)
        print(f"{name}: work_ms / period median {statistics.median(share):.3f}; work / (T - round trip) median "
              f"{statistics.median(fill):.3f}, lowest {min(fill):.3f} (rounds >= {args.skip}); late results {late} "
              f"in {len(run.metrics)} rounds; {sum(r['samples'] for r in run.metrics) / len(run.metrics):.0f} samples per round")


if __name__ == "__main__":
    main()
