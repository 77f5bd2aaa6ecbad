"""Prints training samples/s of the paper's network in a headless-Chromium Web Worker and in 1-thread PyTorch, and their ratio.

Network: 28x28x1 -> conv 5x5x16 same + ReLU -> maxpool 2 -> dense 10 softmax (31,786 parameters).
Both sides sum per-sample cross-entropy gradients over mini-batches of the same size from uint8
images scaled to [0, 1] per batch, for the same number of seconds; each figure is the median of
timed windows after a warm-up. The last line is the ratio browser / torch.

Run after `cd web && npm run build`:  .venv/bin/python bench/trainer_throughput.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from static_server import STATIC_DIR, StaticServer  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def browser_rate(seconds: float, batch: int, window_ms: int, backend: str | None, stock: bool = False) -> dict:
    from playwright.sync_api import sync_playwright

    query = f"check=throughput&seconds={seconds}&batch={batch}&window={window_ms}"
    if backend:
        query += f"&backend={backend}"
    if stock:
        query += "&stock=1"
    with StaticServer() as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout((seconds * 4 + 120) * 1000)
            page.goto(server.url(f"/static/selftest.html?{query}"))
            return page.evaluate("window.selftest")
        finally:
            browser.close()


def torch_rate(seconds: float, batch: int, window_ms: int) -> float:
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(16 * 14 * 14, 10))
    gen = torch.Generator().manual_seed(3)
    count = 4096
    images = torch.randint(0, 256, (count, 1, 28, 28), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (count,), generator=gen)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")  # softmax + summed per-sample cross-entropy
    order = torch.randperm(count, generator=gen)
    cursor = 0

    def window(ms: float) -> float:
        nonlocal cursor, order
        model.zero_grad(set_to_none=True)
        samples, start = 0, time.perf_counter()
        while True:
            if cursor + batch > count:
                order, cursor = torch.randperm(count, generator=gen), 0
            idx = order[cursor:cursor + batch]
            cursor += batch
            x = images[idx].float().div_(255)
            loss_fn(model(x), labels[idx]).backward()  # .grad accumulates: the summed gradient
            samples += batch
            elapsed = time.perf_counter() - start
            if elapsed * 1000 >= ms:
                return samples / elapsed

    window(min(1000, window_ms))  # warm-up
    rates, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        rates.append(window(window_ms))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10, help="timed seconds per side (default 10)")
    ap.add_argument("--batch", type=int, default=32, help="mini-batch size on both sides (default 32)")
    ap.add_argument("--window-ms", type=int, default=1000, help="length of one timed window (default 1000)")
    ap.add_argument("--backend", default=None, help="force a TF.js backend (default: the trainer's choice)")
    ap.add_argument("--with-stock", action="store_true",
                    help="also measure TF.js's stock wasm kernels (only the missing filter gradient added)")
    ap.add_argument("--torch-worker", action="store_true",
                    help="also measure the torch worker through the real protocol and server beside raw PyTorch, for "
                         "the paper's and the CIFAR-size network (bench/torch_worker_throughput.py)")
    args = ap.parse_args()
    if not (STATIC_DIR / "selftest_worker.js").exists():
        sys.exit("mlitb/static is not built: run `cd web && npm install && npm run build` first")

    result = browser_rate(args.seconds, args.batch, args.window_ms, args.backend)
    browser = result["results"][0]["samplesPerSec"]
    print(f"backend: {result['backend']['name']} ({result['backend']['detail']})")
    print(f"browser (Chromium Web Worker, {result['backend']['name']}), batch {args.batch}: "
          f"{browser:,.0f} samples/s (median of {result['results'][0]['windows']} windows)")
    if args.with_stock:
        stock = browser_rate(args.seconds, args.batch, args.window_ms, args.backend, stock=True)
        print(f"browser with stock TF.js kernels ({', '.join(stock['stockKernels'])} not replaced), "
              f"batch {args.batch}: {stock['results'][0]['samplesPerSec']:,.0f} samples/s")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("ratio browser/torch: n/a (PyTorch is not importable)")
        return
    torch_sps = torch_rate(args.seconds, args.batch, args.window_ms)
    print(f"PyTorch CPU 1 thread, batch {args.batch}: {torch_sps:,.0f} samples/s")
    print(json.dumps({"browser": round(browser), "torch": round(torch_sps)}))
    print(f"ratio browser/torch: {browser / torch_sps:.3f}")
    if args.torch_worker:
        torch_worker_section(args.seconds)


def torch_worker_section(seconds: float) -> None:
    """The native worker's part (issue: native workers): its samples/s through protocol and server vs raw PyTorch."""
    from torch_worker_throughput import torch_worker_figures

    print("-- torch worker (mlitb worker --engine torch, 1 thread) --")
    torch_worker_figures(["paper", "cifar"], max(seconds, 10), period=2.0)


if __name__ == "__main__":
    main()
