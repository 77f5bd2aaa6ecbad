"""Convergence with 1, 2 and 4 real headless-browser trainers for the same wall-clock budget.

Each configuration gets a fresh project (the paper's network on real MNIST, T = 1 s) on one
server, k headless Chromium trainers (`BrowserPool`, TF.js in Web Workers) and `--budget`
seconds of training counted from the first gradient. The parameters after 50 and 100 rounds
(and at the end of the budget) are fetched from the server as they go by and evaluated here
on the full 10,000-image MNIST test set with a NumPy forward pass of the network, so the
test errors are exact and need no tracker page competing for the cores. Printed: rounds
done, samples/s, and the test error after 50 rounds, 100 rounds and at the end.

    .venv/bin/python bench/convergence.py [--budget 120] [--trainers 1,2,4]

On a machine with fewer cores than trainers, the trainers share cores (the output says so):
more trainers then add little power, and the comparison shows the cost of synchronising.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from mlitb.config import Settings  # noqa: E402
from mlitb.data import load_mnist  # noqa: E402
from mlitb.model import PAPER_NETWORK  # noqa: E402
from mlitb.server.run import BackgroundServer  # noqa: E402
from mlitb.workers.browser import BrowserPool, status_line  # noqa: E402

MILESTONES = (50, 100)


def paper_forward_error(params: np.ndarray, images: np.ndarray, labels: np.ndarray, batch: int = 500) -> float:
    """Test error of the paper's network (conv 5x5x16 same + ReLU, maxpool 2, dense 10) from TF.js-ordered params."""
    kernel = params[:400].reshape(5, 5, 1, 16)[:, :, 0, :]  # HWIO, one input channel
    bias = params[400:416]
    dense = params[416:416 + 3136 * 10].reshape(3136, 10)
    dense_bias = params[416 + 31360:]
    wrong = 0
    for s in range(0, len(images), batch):
        x = images[s:s + batch, :, :, 0].astype(np.float32) / 255
        x = np.pad(x, ((0, 0), (2, 2), (2, 2)))
        windows = np.lib.stride_tricks.sliding_window_view(x, (5, 5), axis=(1, 2))  # [n, 28, 28, 5, 5]
        h = np.maximum(np.tensordot(windows, kernel, axes=([3, 4], [0, 1])) + bias, 0)  # [n, 28, 28, 16]
        h = h.reshape(len(x), 14, 2, 14, 2, 16).max(axis=(2, 4))  # maxpool 2
        logits = h.reshape(len(x), -1) @ dense + dense_bias  # flatten in HWC order, as TF.js does
        wrong += int(np.count_nonzero(logits.argmax(axis=1) != labels[s:s + batch]))
    return wrong / len(images)


def weights(http: httpx.Client, pid: int) -> tuple[int, np.ndarray]:
    r = http.get(f"/api/projects/{pid}/model/weights.bin")
    return int(r.headers["x-mlitb-round"]), np.frombuffer(r.content, "<f4").copy()


def run(server: BackgroundServer, k: int, budget_s: float, period_s: float, learning_rate: float, test) -> dict:
    spec = {"name": f"convergence {k}", "dataset": "mnist", "network": PAPER_NETWORK,
            "hyper": {"period_s": period_s, "learning_rate": learning_rate}}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        project = http.post("/api/projects", json=spec).json()
        pid = project["id"]
        snaps: dict[int, tuple[int, np.ndarray]] = {}
        started = None
        t0 = time.monotonic()
        with BrowserPool(server.url) as pool:
            for _ in range(k):
                pool.open(pid, "trainer")
            while True:
                pool.wait(0.2)
                now = time.monotonic()
                rnd, params = weights(http, pid)
                for m in MILESTONES:
                    if m not in snaps and rnd >= m:
                        snaps[m] = (rnd, params)
                if started is None:
                    metrics = http.get(f"/api/projects/{pid}/metrics").json()
                    first = next((m for m in metrics if m["samples"] > 0), None)
                    if first is not None:
                        started = now
                        first_round = first["round"]
                    elif now - t0 > 180:
                        raise RuntimeError(f"no gradient within 180 s: {status_line(pool.statuses())}")
                elif now - started >= budget_s:
                    break
            end_round, end_params = weights(http, pid)
            backends = sorted({s.get("backend", "?") for s in pool.statuses()})
        metrics = http.get(f"/api/projects/{pid}/metrics").json()
        http.delete(f"/api/projects/{pid}", headers={"Authorization": f"Bearer {project['owner_token']}"})
    trained = [m for m in metrics if m["round"] >= first_round]
    elapsed = sum(m["duration_s"] for m in trained)
    row = {"trainers": k, "rounds": len(trained), "samples_per_s": sum(m["samples"] for m in trained) / elapsed,
           "backends": ",".join(backends), "end_round": end_round, "end_error": paper_forward_error(end_params, *test)}
    for m in MILESTONES:
        if m in snaps:
            row[f"round_{m}"], row[f"error_{m}"] = snaps[m][0], paper_forward_error(snaps[m][1], *test)
    return row


def fmt_error(row: dict, m: int) -> str:
    if f"error_{m}" not in row:
        return "not reached"
    return f"{row[f'error_{m}'] * 100:6.2f}%" + (f" (r{row[f'round_{m}']})" if row[f"round_{m}"] != m else "")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--budget", type=float, default=120.0, help="seconds of training per configuration")
    p.add_argument("--trainers", default="1,2,4", help="comma-separated numbers of browser trainers")
    p.add_argument("--period", type=float, default=1.0, help="round duration T in seconds")
    p.add_argument("--learning-rate", type=float, default=0.05, help="AdaGrad learning rate")
    args = p.parse_args()
    counts = [int(x) for x in args.trainers.split(",")]
    cores = os.cpu_count() or 1
    mnist = load_mnist()
    test = (mnist.test.images, mnist.test.labels)
    print(f"convergence: paper network on MNIST, T = {args.period} s, learning rate {args.learning_rate}, "
          f"{args.budget:.0f} s of training per configuration; test error on all {len(test[1])} test images")
    if max(counts) > cores - 1:
        print(f"note: this machine has {cores} CPU cores for the server and up to {max(counts)} browser trainers: "
              "the trainers share cores, so more trainers add little power here")
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlitb-convergence-") as scratch:
        with BackgroundServer(Settings(port=0, data_dir=Path(scratch))) as server:
            for k in counts:
                row = run(server, k, args.budget, args.period, args.learning_rate, test)
                rows.append(row)
                print(f"  {k} trainer(s): {row['rounds']} rounds, {row['samples_per_s']:.0f} samples/s, "
                      f"error after 50 rounds {fmt_error(row, 50)}, after 100 {fmt_error(row, 100)}", flush=True)
    head = f"{'trainers':>8} {'backend':>8} {'rounds':>6} {'samples/s':>9} {'@50 rounds':>16} {'@100 rounds':>16} {'at end':>8}"
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['trainers']:8d} {r['backends']:>8} {r['rounds']:6d} {r['samples_per_s']:9.0f} {fmt_error(r, 50):>16} "
              f"{fmt_error(r, 100):>16} {r['end_error'] * 100:7.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
