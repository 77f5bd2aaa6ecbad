"""Buffered asynchronous updates (hyper.mode "async") against synchronous rounds, on mixed and equal fleets.

Three parts (all on this machine: 2 shared cores, so every run is short and the figures are noisy; ratios
are taken within one run of this script):

  browser  real headless Chromium trainers (wasm), the paper's network on MNIST, T = 1 s: a mixed fleet
           (one page at 1x, one `mlitb worker --cpu-throttle 4`) and an equal one (1x and 1x). The weights
           are fetched every 2 s and their test error computed here on the first 2,000 MNIST test images.
  sim      in-process simulated trainers with a real learning signal (softmax regression on MNIST in NumPy, median
           300 samples/s; bench/async_sim.py), 16 trainers, a 10x speed spread and 20% churn per minute, against
           an equal fleet without churn; the real runtime, scheduler and strategies (in memory, no sockets), on a
           virtual clock by default (load-independent). Each mode runs every setting of SIM_GRID (learning rate;
           and K for async) on --sim-seeds seeds and is compared at its own best mean time to target.
           `--sim-network paper` trains the issue's network instead (NumPy gradients, about 1,000 samples per second
           of wall time, so with one setting per mode: --sim-lr, --sim-k), e.g. a fleet shaped like the browser
           part's: --sim-clients 2 --sim-median-sps 1500 --sim-lr 0.05 --sim-k 1 --sim-target 0.05 --sim-budget 100.
  scale    `mlitb simulate`: 1,024 simulated trainers over real WebSockets in one client process, paper net,
           T = 4 s, 10x spread; server CPU per applied result in async vs per gradient in sync.

For each run: time to the target test error, test error at the budget, updates per second, mean staleness.
The sim part then prints each fleet's per-seed speed-ups at the modes' best settings and both fleets' speed-ups
(targets: >= 1.5x mixed, >= 0.9x equal); the last line is the speed-up on the 10x-spread mixed fleet. The sim's
clock is virtual, but the server's ingest time (which staggers sync work times by milliseconds) is measured CPU
time, so a sync figure can move by an evaluation step (0.25 s) between runs.

    .venv/bin/python bench/async.py [--parts sim,browser,scale] [--budget 120] [--sim-budget 40]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # measured: threaded BLAS on a loaded 2-core machine is 12x slower
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from bench.convergence import paper_forward_error, weights  # noqa: E402
from mlitb.config import Settings  # noqa: E402
from mlitb.data import load_mnist  # noqa: E402
from mlitb.model import PAPER_NETWORK  # noqa: E402
from mlitb.server.run import BackgroundServer  # noqa: E402
from mlitb.workers.browser import BrowserPool  # noqa: E402
from bench import async_sim  # noqa: E402
from tests.mnist_softmax import mnist_subset  # noqa: E402


def summary(name: str, points: list[tuple[float, float]], records: list[dict], elapsed: float, target: float) -> dict:
    """points: (seconds since start, test error)."""
    reached = next((t for t, e in points if e <= target), None)
    stale = [r["staleness_mean"] for r in records if r.get("staleness_mean") is not None]
    row = {"name": name, "time_to_target": reached, "end_error": points[-1][1] if points else math.nan,
           "updates_per_s": len(records) / elapsed if elapsed else 0.0,
           "staleness": float(np.mean(stale)) if stale else 0.0,
           "samples_per_s": sum(r["samples"] for r in records) / elapsed if elapsed else 0.0}
    print(f"  {name:34s} time to {target * 100:.0f}%: "
          f"{'not reached' if reached is None else f'{reached:6.1f} s':>11}, error at {elapsed:.0f} s "
          f"{row['end_error'] * 100:5.2f}%, {row['updates_per_s']:6.2f} updates/s, {row['samples_per_s']:7.0f} "
          f"samples/s, mean staleness {row['staleness']:.2f}", flush=True)
    return row


# ---- sim: in-memory trainers with emulated speeds (bench/async_sim.py), each mode at its best of a small grid ------
SIM_GRID = {"sync": [{"learning_rate": lr} for lr in (0.05, 0.1, 0.2)],
            "async": [{"learning_rate": lr, "buffer_size": k} for k in (4, 8, 16) for lr in (0.05, 0.1, 0.2)]}


def sim_clients(args) -> int:
    """Trainers per fleet: one per --sim-speeds rate if given, else --sim-clients."""
    return len(args.sim_speeds.split(",")) if args.sim_speeds else args.sim_clients


def sim_grid(args) -> dict:
    """SIM_GRID, or the one setting per mode that --sim-lr and --sim-k name (the paper network is too slow in
    NumPy for a grid: one run of two trainers to 5% takes about 3 minutes of wall time)."""
    if args.sim_lr is None:
        return SIM_GRID
    return {"sync": [{"learning_rate": args.sim_lr}],
            "async": [{"learning_rate": args.sim_lr, "buffer_size": args.sim_k or max(1, sim_clients(args) // 2)}]}


def sim_speeds(args, fleet: str) -> list[float] | None:
    """--sim-speeds for the mixed fleet (e.g. the browser pair's measured rates); the equal fleet gets their median
    for every trainer. None: drawn around --sim-median-sps."""
    if not args.sim_speeds:
        return None
    speeds = [float(v) for v in args.sim_speeds.split(",")]
    return speeds if fleet == "mixed" else [float(np.median(speeds))] * len(speeds)


def sim_part(args) -> dict:
    """Every setting of the grid on every seed; a mode's figure is its best setting's mean time to target (a seed
    that does not reach it counts as the budget), so neither mode is compared at a setting chosen for the other."""
    test_size = 2000 if args.sim_network == "softmax" else 1000  # the paper network's evaluation costs wall time
    data = mnist_subset(20000, test_size)
    seeds = list(range(args.sim_first_seed, args.sim_first_seed + args.sim_seeds))
    grid, clients = sim_grid(args), sim_clients(args)
    print(f"sim: {clients} in-memory trainers ("
          + (f"samples/s {args.sim_speeds}" if args.sim_speeds else f"median {args.sim_median_sps:g} samples/s")
          + f"), {args.sim_network} "
          f"network on MNIST (20,000 train / {test_size:,} test), T = 1 s, AdaGrad, {args.sim_clock} clock; target "
          f"{args.sim_target * 100:.0f}% test error, budget {args.sim_budget:.0f} s, seeds {seeds}; each mode at its "
          f"best setting of {grid}")
    rows = {}
    fleets = (("mixed", 10.0, 0.2), ("equal", 1.0, 0.0))
    for fleet, spread, churn in (f for f in fleets if f[0] in args.sim_fleets.split(",")):
        for mode, settings in grid.items():
            best = None
            for setting in settings:
                hyper = {"period_s": 1, "mode": mode, **setting}
                runs = [async_sim.run(async_sim.sim_run(hyper, data, spread, churn, args.sim_budget, args.sim_target,
                                                        clients=clients, seed=seed,
                                                        median_sps=args.sim_median_sps, network=args.sim_network,
                                                        speeds=sim_speeds(args, fleet)),
                                      args.sim_clock) for seed in seeds]
                times = [r["time_to_target"] for r in runs]
                score = float(np.mean([args.sim_budget if t is None else t for t in times]))
                print(f"  sim {fleet} {mode:5s} {setting}: time to target {times}, mean {score:.2f} s; "
                      f"{np.mean([r['updates_per_s'] for r in runs]):.2f} updates/s, "
                      f"{np.mean([r['samples_per_s'] for r in runs]):.0f} samples/s, "
                      f"mean staleness {np.mean([r['staleness'] for r in runs]):.2f}", flush=True)
                for seed, r in zip(seeds, runs):  # the error curve, every 4th sample
                    print(f"    seed {seed} test error %: "
                          + " ".join(f"{e * 100:.1f}@{t:.0f}s" for t, e in r["points"][::4]), flush=True)
                if best is None or score < best["time_to_target"]:
                    best = {"time_to_target": score, "setting": setting, "reached": all(t is not None for t in times),
                            "per_seed": [args.sim_budget if t is None else t for t in times]}
            print(f"  sim {fleet} {mode}: best {best['setting']}, mean time to target {best['time_to_target']:.2f} s"
                  + ("" if best["reached"] else " (some seeds did not reach it: counted as the budget)"), flush=True)
            rows[fleet, mode] = best
    return rows


# ---- browser: real headless Chromium trainers, throttled 1x and 4x -------------------------------------------------
def browser_run(server_url: str, mode: str, throttles: tuple[float, ...], budget_s: float, target: float, test) -> dict:
    hyper = {"period_s": 1, "learning_rate": 0.05, "mode": mode, **({"buffer_size": 1} if mode == "async" else {})}
    with httpx.Client(base_url=server_url, timeout=60) as http:
        project = http.post("/api/projects", json={"name": f"bench {mode}", "dataset": "mnist", "network": PAPER_NETWORK,
                                                   "hyper": hyper}).json()
        pid = project["id"]
        procs = [subprocess.Popen([sys.executable, "-m", "mlitb.cli", "worker", "--server", server_url, "--project",
                                   str(pid), "--browsers", "1", "--trackers", "0", "--backend", "wasm", "--cpu-throttle",
                                   f"{r:g}", "--duration", str(budget_s + 120)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for r in throttles]
        try:
            deadline = time.monotonic() + 120
            while True:  # the clock starts when every trainer's results are being applied
                metrics = http.get(f"/api/projects/{pid}/metrics").json()
                if any(m["trainers"] == len(throttles) and m["samples"] for m in metrics):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the browser trainers did not all join within 120 s ({mode})")
                time.sleep(0.5)
            first = max(m["round"] for m in metrics) + 1
            t0, snaps = time.monotonic(), []
            while (now := time.monotonic() - t0) < budget_s:
                snaps.append((now, weights(http, pid)[1]))
                time.sleep(2.0)
            elapsed = time.monotonic() - t0
            snaps.append((elapsed, weights(http, pid)[1]))
            records = [m for m in http.get(f"/api/projects/{pid}/metrics").json() if m["round"] >= first]
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)
        http.delete(f"/api/projects/{pid}", headers={"Authorization": f"Bearer {project['owner_token']}"})
    points = [(t, paper_forward_error(w, *test)) for t, w in snaps]
    label = "+".join(f"{r:g}x" for r in throttles)
    return summary(f"browser {mode:5s} trainers {label}", points, records, elapsed, target)


def browser_part(args) -> dict:
    mnist = load_mnist()
    test = (mnist.test.images[:2000], mnist.test.labels[:2000])
    print(f"browser: headless Chromium trainers (wasm), paper network on MNIST, T = 1 s, AdaGrad lr 0.05, async "
          f"K = 1; target {args.target * 100:.0f}% test error (2,000 test images), budget {args.budget:.0f} s")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="mlitb-bench-async-") as scratch:
        with BackgroundServer(Settings(port=0, data_dir=Path(scratch))) as server:
            fleets = (("mixed", (1.0, args.mixed_throttle)), ("equal", (1.0, 1.0)))
            for fleet, throttles in (f for f in fleets if f[0] in args.fleets.split(",")):
                for mode in ("sync", "async"):
                    rows[fleet, mode] = browser_run(server.url, mode, throttles, args.budget, args.target, test)
    return rows


# ---- scale: 1,024 simulated trainers over WebSockets ----------------------------------------------------------------
def scale_part(args) -> None:
    from mlitb.workers.simulate import ServerProcess, create_project, simulate

    print(f"scale: {args.clients} simulated trainers over real WebSockets, one client process, paper net, T = 4 s, "
          "10x speed spread, async K = 128; server CPU from /proc")
    per = {}
    with ServerProcess() as server:
        for mode, rounds in (("sync", 4), ("async", 24)):
            info = create_project(server.url, None, 4.0, name=f"scale {mode}", mode=mode, buffer_size=128)
            result = simulate(server.url, info["id"], info["param_count"], args.clients, rounds, period_s=4.0,
                              speed_spread=10, processes=1, server_pid=server.pid)
            recs = result.records
            applied = sum(r["contributions"] for r in recs)
            cpu = sum(r["server_cpu_s"] or 0 for r in recs)
            per[mode] = 1000 * cpu / max(applied, 1)
            stale = [r["staleness_mean"] for r in recs if r.get("staleness_mean") is not None]
            print(f"  {mode:5s}: {len(recs)} updates, {applied} results applied, server CPU {cpu:.2f} s = "
                  f"{per[mode]:.3f} ms per applied result"
                  + (f", mean staleness {np.mean(stale):.2f}, refused stale {sum(r['refused_stale'] for r in recs)}"
                     if mode == "async" else ""), flush=True)
            httpx.delete(f"{server.url}/api/projects/{info['id']}",
                         headers={"Authorization": f"Bearer {info['owner_token']}"}, timeout=30)
    print(f"  server CPU per applied result, async/sync: {per['async'] / per['sync']:.2f}")


def speedup(rows: dict, fleet: str, budget: float | None = None) -> str:
    s, a = rows[fleet, "sync"]["time_to_target"], rows[fleet, "async"]["time_to_target"]
    if s is None and a is not None and budget is not None:  # at least the budget over async's time
        return f"> {budget / a:.2f}x (sync did not reach the target in the {budget:g} s budget, async in {a:.1f} s)"
    if s is None or a is None:
        return f"not measurable (time to target: sync {s}, async {a})"
    short = [m for m in ("sync", "async") if not rows[fleet, m].get("reached", True)]
    return f"{s / a:.2f}x (sync {s:.1f} s, async {a:.1f} s" + (f"; {'/'.join(short)} not on every seed)" if short else ")")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--parts", default="sim,browser,scale", help="which parts to run, comma-separated")
    p.add_argument("--budget", type=float, default=120.0, help="browser part: seconds of training per run")
    p.add_argument("--mixed-throttle", type=float, default=4.0,
                   help="browser part: CPU throttling of the mixed fleet's second trainer (the first runs at 1x)")
    p.add_argument("--fleets", default="mixed,equal", help="browser part: which fleets to run, comma-separated")
    p.add_argument("--target", type=float, default=0.05, help="browser part: target test error")
    p.add_argument("--sim-budget", type=float, default=40.0, help="sim part: seconds of training per run")
    p.add_argument("--sim-target", type=float, default=0.15, help="sim part: target test error")
    p.add_argument("--sim-seeds", type=int, default=3, help="sim part: seeds (fleets and data draws) per setting")
    p.add_argument("--sim-first-seed", type=int, default=0, help="sim part: the first seed (to split seeds over runs)")
    p.add_argument("--sim-clock", choices=("virtual", "wall"), default="virtual",
                   help="sim part: simulated time (load-independent, see bench/async_sim.py) or real time")
    p.add_argument("--sim-network", choices=tuple(async_sim.NETWORKS), default="softmax",
                   help="sim part: softmax regression (cheap: a grid, several seeds) or the paper's network")
    p.add_argument("--sim-clients", type=int, default=16, help="sim part: simulated trainers per fleet")
    p.add_argument("--sim-median-sps", type=float, default=300.0,
                   help="sim part: median samples/s of a trainer (speeds spread log-uniformly around it)")
    p.add_argument("--sim-speeds", default="",
                   help="sim part: the mixed fleet's samples/s per trainer, comma-separated (replaces --sim-clients and "
                        "the drawn spread; the equal fleet runs their median)")
    p.add_argument("--sim-fleets", default="mixed,equal", help="sim part: which fleets to run, comma-separated")
    p.add_argument("--sim-lr", type=float, default=None,
                   help="sim part: run only this learning rate (and async only K = --sim-k) instead of the grid")
    p.add_argument("--sim-k", type=int, default=None, help="sim part with --sim-lr: async K (default: half the trainers)")
    p.add_argument("--clients", type=int, default=1024, help="scale part: simulated trainers")
    args = p.parse_args()
    parts = set(args.parts.split(","))
    sim = browser = None
    if "scale" in parts:
        scale_part(args)
    if "browser" in parts:
        browser = browser_part(args)
        print(f"browser async/sync time-to-target speed-up: mixed 1x+{args.mixed_throttle:g}x "
              f"{speedup(browser, 'mixed', args.budget) if ('mixed', 'sync') in browser else 'not run'}; "
              f"equal 1x+1x {speedup(browser, 'equal', args.budget) if ('equal', 'sync') in browser else 'not run'}")
    if "sim" in parts:
        sim = sim_part(args)
        for fleet in (f for f in ("mixed", "equal") if (f, "sync") in sim):
            pairs = zip(sim[fleet, "sync"]["per_seed"], sim[fleet, "async"]["per_seed"])
            print(f"  sim {fleet} fleet, each mode at its best setting, async/sync speed-up per seed: "
                  + ", ".join(f"{s / a:.2f}x ({s:.2f} s / {a:.2f} s)" for s, a in pairs))
        if ("equal", "sync") in sim:
            print(f"sim equal fleet async/sync time-to-target speed-up: {speedup(sim, 'equal')}")
        if ("mixed", "sync") in sim:
            shape = f"samples/s {args.sim_speeds}" if args.sim_speeds else "10x spread"
            print(f"async/sync time-to-target speed-up on the mixed fleet ({shape}, 20%/min churn): "
                  f"{speedup(sim, 'mixed')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
