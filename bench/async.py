"""Buffered asynchronous updates (hyper.mode "async") against synchronous rounds, on mixed and equal fleets.

Three parts (all on this machine: 2 shared cores, so every run is short and the figures are noisy; ratios
are taken within one run of this script):

  browser  real headless Chromium trainers (wasm), the paper's network on MNIST, T = 1 s: a mixed fleet
           (one page at 1x, one `mlitb worker --cpu-throttle 4`) and an equal one (1x and 1x). The weights
           are fetched every 2 s and their test error computed here on the first 2,000 MNIST test images.
  sim      in-process simulated trainers with a real learning signal (softmax regression on MNIST in NumPy, median
           300 samples/s;
           a trainer's speed is emulated: it computes speed x work-time samples and answers after that long
           plus its round trip), 16 trainers, a 10x speed spread and 20% churn per minute, against an equal
           fleet without churn; the real runtime, scheduler and strategies (in memory, no sockets).
  scale    `mlitb simulate`: 1,024 simulated trainers over real WebSockets in one client process, paper net,
           T = 4 s, 10x spread; server CPU per applied result in async vs per gradient in sync.

For each run: time to the target test error, test error at the budget, updates per second, mean staleness.
The last line is the async/sync time-to-target speed-up on the 10x-spread mixed fleet (sim part).

    .venv/bin/python bench/async.py [--parts sim,browser,scale] [--budget 120] [--sim-budget 40]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
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
from mlitb.master.loop import ProjectRuntime  # noqa: E402
from mlitb.master.project import ProjectSpec  # noqa: E402
from mlitb.master.transport import MemoryLink  # noqa: E402
from mlitb.model import PAPER_NETWORK  # noqa: E402
from mlitb.protocol import MessageType, decode, encode  # noqa: E402
from mlitb.server.run import BackgroundServer  # noqa: E402
from mlitb.workers.browser import BrowserPool  # noqa: E402
from tests.mnist_softmax import SOFTMAX_REGRESSION, error_rate, mnist_subset, probabilities  # noqa: E402


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


# ---- sim: in-memory trainers with emulated speeds and a real softmax-regression gradient ----------------------
class SpeedTrainer:
    def __init__(self, rt: ProjectRuntime, split, speed: float, rtt_s: float, seed: int):
        self.rt, self.split, self.speed, self.rtt_s = rt, split, speed, rtt_s
        self.rng = np.random.default_rng(seed)
        self.link = MemoryLink()
        self.client = rt.add_client(self.link, "trainer", "memory")
        self.ids = np.zeros(0, np.uint32)
        self.params = None
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while (data := await self.link.inbox.get()) is not None:
            f = decode(data, 1 << 30)
            if f.type == MessageType.ALLOC:
                self.ids = f.uint32s().copy()
            elif f.type == MessageType.PARAMS:
                self.params = f.floats().copy()
            elif f.type == MessageType.WORK and len(self.ids):
                n = max(32, int(self.speed * f.aux / 1000) // 32 * 32)
                pick = self.rng.choice(self.ids, size=min(n, len(self.ids)), replace=False)
                x = self.split.images[pick].reshape(len(pick), -1).astype(np.float32) / 255
                p = probabilities(self.params, self.split.images[pick])
                rows = np.arange(len(pick))
                loss = float(-np.log(p[rows, self.split.labels[pick]] + 1e-12).sum())
                p[rows, self.split.labels[pick]] -= 1
                grad = np.concatenate([(x.T @ p).ravel(), p.sum(axis=0)]).astype(np.float32)
                compute_ms = 1000 * n / self.speed
                await asyncio.sleep(compute_ms / 1000 + self.rtt_s)
                if self.client.id not in self.rt.clients:
                    return
                try:
                    self.rt.on_frame(self.client.id, decode(encode(
                        MessageType.GRADIENT, project=self.rt.id, round=f.round, count=len(pick), aux=int(compute_ms),
                        value=loss, payload=grad), self.rt.max_frame_bytes))
                except Exception:
                    self.rt.note_rejected()

    def leave(self) -> None:
        self.rt.remove_client(self.client.id)
        self.link.close()


async def sim_run(mode: str, data, spread: float, churn_per_min: float, budget_s: float, target: float,
                  clients: int = 16, seed: int = 0) -> dict:
    hyper = {"period_s": 1, "learning_rate": 0.05, "mode": mode, **({"buffer_size": 4} if mode == "async" else {})}
    spec = ProjectSpec(name="sim", network=SOFTMAX_REGRESSION, hyper=hyper)
    rt = ProjectRuntime(1, spec, spec.build_network(), data, Settings())
    rng = random.Random(seed)
    speeds = [300 * math.exp(rng.uniform(-0.5, 0.5) * math.log(spread)) for _ in range(clients)]
    trainers = {i: SpeedTrainer(rt, data.train, s, rng.uniform(0.01, 0.05), seed + i) for i, s in enumerate(speeds)}
    loop = asyncio.get_running_loop()

    def churn_tick() -> None:  # every second, each trainer leaves with probability churn/60 and rejoins later
        for i, t in list(trainers.items()):
            if t is not None and rng.random() < churn_per_min / 60:
                t.leave()
                trainers[i] = None
                loop.call_later(rng.uniform(0.5, 1.5), lambda i=i: trainers.__setitem__(
                    i, SpeedTrainer(rt, data.train, speeds[i], rng.uniform(0.01, 0.05), seed + i + 1000)))
        ticker[0] = loop.call_later(1.0, churn_tick)

    ticker = [loop.call_later(1.0, churn_tick)] if churn_per_min else [None]
    await asyncio.sleep(0)
    t0, points, records, last = time.monotonic(), [], [], -1.0
    while (now := time.monotonic() - t0) < budget_s:
        records.append(await rt.run_round())
        if now - last >= 0.25:
            last = now
            points.append((now, error_rate(rt.params, data.test)))
    if ticker[0]:
        ticker[0].cancel()
    rt.stop()
    return summary(f"sim {mode:5s} spread {spread:g}x churn {churn_per_min:.0%}/min", points, records,
                   time.monotonic() - t0, target)


def sim_part(args) -> dict:
    data = mnist_subset(20000, 2000)
    print(f"sim: 16 in-memory trainers, softmax regression on MNIST (20,000 train / 2,000 test), T = 1 s, "
          f"AdaGrad lr 0.05, async K = 4; target {args.sim_target * 100:.0f}% test error, budget {args.sim_budget:.0f} s")
    rows = {}
    for fleet, spread, churn in (("mixed", 10.0, 0.2), ("equal", 1.0, 0.0)):
        for mode in ("sync", "async"):
            rows[fleet, mode] = asyncio.run(sim_run(mode, data, spread, churn, args.sim_budget, args.sim_target))
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
            for fleet, throttles in (("mixed", (1.0, 4.0)), ("equal", (1.0, 1.0))):
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


def speedup(rows: dict, fleet: str) -> str:
    s, a = rows[fleet, "sync"]["time_to_target"], rows[fleet, "async"]["time_to_target"]
    if s is None or a is None:
        return f"not measurable (time to target: sync {s}, async {a})"
    return f"{s / a:.2f}x (sync {s:.1f} s, async {a:.1f} s)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--parts", default="sim,browser,scale", help="which parts to run, comma-separated")
    p.add_argument("--budget", type=float, default=120.0, help="browser part: seconds of training per run")
    p.add_argument("--target", type=float, default=0.05, help="browser part: target test error")
    p.add_argument("--sim-budget", type=float, default=40.0, help="sim part: seconds of training per run")
    p.add_argument("--sim-target", type=float, default=0.12, help="sim part: target test error")
    p.add_argument("--clients", type=int, default=1024, help="scale part: simulated trainers")
    args = p.parse_args()
    parts = set(args.parts.split(","))
    sim = browser = None
    if "scale" in parts:
        scale_part(args)
    if "browser" in parts:
        browser = browser_part(args)
        print(f"browser async/sync time-to-target speed-up: mixed 1x+4x {speedup(browser, 'mixed')}; "
              f"equal 1x+1x {speedup(browser, 'equal')}")
    if "sim" in parts:
        sim = sim_part(args)
        print(f"sim equal fleet async/sync time-to-target speed-up: {speedup(sim, 'equal')}")
        print(f"async/sync time-to-target speed-up on the mixed fleet (10x spread, 20%/min churn): {speedup(sim, 'mixed')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
