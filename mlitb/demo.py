"""`mlitb demo`: the paper's network on real MNIST, trained by headless browser trainers.

Starts a master, creates the project, launches the trainers and one tracker in headless
Chromium, prints one progress line per round and writes one JSON object per round.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

from mlitb.config import Settings
from mlitb.model import PAPER_NETWORK
from mlitb.server.run import BackgroundServer
from mlitb.workers.browser import BrowserPool, status_line

METRIC_KEYS = ("round", "trainers", "samples", "samples_per_s", "latency_ms_mean", "latency_ms_max", "loss", "test_error")


def progress_line(m: dict, elapsed: float) -> str:
    err = m.get("test_error")
    return (f"[{elapsed:6.1f}s] round {m['round']:4d} | trainers {m['trainers']} | samples {m['samples']:6d} | "
            f"{m['samples_per_s']:8.1f} samples/s | latency {m['latency_ms_mean'] or 0:7.1f} ms (max "
            f"{m['latency_ms_max'] or 0:7.1f}) | loss {m['loss'] if m['loss'] is not None else float('nan'):.4f} | "
            f"test error {'   -  ' if err is None else f'{err * 100:5.2f}%'}")


def run_demo(workers: int = 2, duration_s: float = 300.0, port: int = 8000, host: str = "127.0.0.1",
             metrics_out: str | None = None, period_s: float = 1.0, learning_rate: float = 0.05,
             backend: str = "auto", data_dir: str | None = None, trainer_capacity: int = 30_000,
             out=None) -> int:
    out = out or sys.stdout  # the stdout of when it runs, not of the import
    if workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mlitb-demo-") as scratch:
        # the demo lets each of its few trainers hold 30,000 digits (the server's default is the
        # paper's 3,000, refreshed over time), so 2 trainers see all of MNIST from the start
        settings = Settings(host=host, port=port, data_dir=Path(data_dir or scratch), trainer_capacity=trainer_capacity)
        return _demo(settings, workers, duration_s, metrics_out, period_s, learning_rate, backend, out)


def _demo(settings: Settings, workers: int, duration_s: float, metrics_out: str | None, period_s: float,
          learning_rate: float, backend: str, out) -> int:
    host, port = settings.host, settings.port
    try:
        server = BackgroundServer(settings).start()
    except (RuntimeError, OSError) as exc:
        print(f"error: could not start the server on {host}:{port} ({exc}); try --port 0", file=sys.stderr)
        return 2
    sink = open(metrics_out, "w") if metrics_out else None
    try:
        spec = {"name": "mnist-cnn (paper network)", "dataset": "mnist", "network": PAPER_NETWORK,
                "hyper": {"period_s": period_s, "learning_rate": learning_rate}}
        r = httpx.post(f"{server.url}/api/projects", json=spec, timeout=60)
        if r.status_code != 201:
            print(f"error: creating the project failed: {r.text}", file=sys.stderr)
            return 1
        pid, owner = r.json()["id"], r.json()["owner_token"]
        print(f"MLitB demo: project {pid} on {server.url}/ — open it in a browser and press 'Join as trainer' "
              f"to help. {workers} headless trainer(s) + 1 tracker, T = {period_s} s, {duration_s:.0f} s of training.",
              file=out, flush=True)
        # the demo user owns the demo project: the link fills the owner token on the page (learning rate, teach a
        # class, save a closure); the token is in the fragment, which the browser never sends
        print(f"Owner token of project {pid}: {owner}\n  as the owner: {server.url}/?project={pid}#owner={owner}",
              file=out, flush=True)
        with BrowserPool(server.url, backend=backend) as pool:
            for _ in range(workers):
                pool.open(pid, "trainer")
            pool.open(pid, "tracker")
            return _follow(server.url, pid, pool, duration_s, sink, out)
    finally:
        if sink:
            sink.close()
        server.stop()


def _follow(url: str, pid: int, pool: BrowserPool, duration_s: float, sink, out) -> int:
    seen = 0
    started = None  # the clock starts with the first completed round
    t0 = time.monotonic()
    last: dict | None = None
    while True:
        pool.wait(0.25)
        now = time.monotonic()
        for m in httpx.get(f"{url}/api/projects/{pid}/metrics", params={"since": seen}, timeout=30).json():
            seen = m["round"] + 1
            if m["samples"] == 0 and started is None:
                continue  # workers still loading: not yet training
            started = started or now
            last = m
            print(progress_line(m, now - t0), file=out, flush=True)
            if sink:
                sink.write(json.dumps({k: m.get(k) for k in METRIC_KEYS}) + "\n")
                sink.flush()
        if started is None and now - t0 > 120:
            print(f"error: no trainer produced a gradient within 120 s: {status_line(pool.statuses())}", file=sys.stderr)
            return 1
        if started is not None and now - started >= duration_s:
            break
    err = last.get("test_error") if last else None
    print(f"done: {seen} rounds in {time.monotonic() - t0:.0f} s ({duration_s:.0f} s training); final test error "
          f"{'unknown' if err is None else f'{err * 100:.2f}%'}", file=out, flush=True)
    return 0
