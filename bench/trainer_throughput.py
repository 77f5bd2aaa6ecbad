"""Prints training samples/s of a network in a headless-Chromium Web Worker, stock TF.js and 1-thread PyTorch, their ratio, and a kernel profile.

Networks (`--network`, default both):
  paper: 28x28x1 -> conv 5x5x16 same + ReLU -> maxpool 2 -> dense 10 softmax (31,786 parameters);
  cifar: 32x32x3 -> conv 3x3x32 -> conv 3x3x32 -> maxpool -> conv 3x3x64 -> conv 3x3x64 -> maxpool
         -> dense 3 softmax (ReLU, same padding; 77,859 parameters; issue 14).
Every side sums per-sample cross-entropy gradients over mini-batches of the same size from uint8
images scaled to [0, 1] per batch. The sides alternate (`--repeat` times: our wasm trainer, the same page
alternating windows with and without its own wasm kernels (web/assembly), stock TF.js kernels, PyTorch), each for `--seconds`, so a busy shared machine slows all of them alike; each figure
is the median of its timed windows, and a ratio is computed from figures of the same repetition. Then
one training step is profiled per kernel (forward and backward, and by layer type, with its share of
the step) so the slow kernels are named. The last line is the median ratio wasm trainer / PyTorch.

Run after `cd web && npm run build`:  .venv/bin/python bench/trainer_throughput.py [--network cifar]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from static_server import STATIC_DIR, StaticServer  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


class Browser:
    """One headless Chromium serving the self-test page; each check runs in a fresh page and Web Worker."""

    def __enter__(self) -> Browser:
        from playwright.sync_api import sync_playwright

        self._server = StaticServer().__enter__()
        self._pw_cm = sync_playwright()
        self._pw = self._pw_cm.__enter__()
        self._browser = self._pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        return self

    def __exit__(self, *exc: object) -> None:
        self._browser.close()
        self._pw_cm.__exit__(*exc)
        self._server.__exit__(*exc)

    def check(self, query: str, timeout_s: float) -> dict:
        page = self._browser.new_page()
        try:
            page.set_default_timeout(timeout_s * 1000)
            page.goto(self._server.url(f"/static/selftest.html?{query}"))
            return page.evaluate("window.selftest")
        finally:
            page.close()


def torch_model(network: str):
    from torch import nn

    if network == "paper":
        return nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(16 * 14 * 14, 10)), (1, 28, 28), 10
    conv = lambda i, o: [nn.Conv2d(i, o, 3, padding=1), nn.ReLU()]  # noqa: E731
    layers = [*conv(3, 32), *conv(32, 32), nn.MaxPool2d(2), *conv(32, 64), *conv(64, 64), nn.MaxPool2d(2),
              nn.Flatten(), nn.Linear(64 * 8 * 8, 3)]
    return nn.Sequential(*layers), (3, 32, 32), 3


def torch_rate(network: str, seconds: float, batch: int, window_ms: int) -> float:
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, shape, classes = torch_model(network)
    gen = torch.Generator().manual_seed(3)
    count = 2048
    images = torch.randint(0, 256, (count, *shape), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, classes, (count,), generator=gen)
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


def torch_available() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def print_profile(r: dict) -> None:
    print(f"  one step of batch {r['batchSize']}: {r['stepMs']:.1f} ms in kernels ({r['wallMs']:.1f} ms wall)")
    for row in r["byLayer"][:8]:
        print(f"    {row['name']:<28} {row['ms']:8.2f} ms  {100 * row['share']:5.1f}%")
    print("  slowest kernels:")
    for row in r["kernels"][:8]:
        print(f"    {row['phase']:<9} {row['name']:<22} {row['ms']:8.2f} ms  {100 * row['share']:5.1f}%")
    # per call (kernel and input shapes, so per layer), each its fastest repetition: steadier on a busy machine
    calls = r["byCall"]
    print(f"  slowest calls (fastest of the repetitions; {sum(c['ms'] for c in calls):.1f} ms in all):")
    for row in calls[:12]:
        print(f"    {row['ms']:8.2f} ms  {100 * row['share']:5.1f}%  {row['name']}")


def bench_network(b: Browser, network: str, args: argparse.Namespace, torch_version: str | None) -> float | None:
    common = f"network={network}&seconds={args.seconds}&batch={args.batch}&window={args.window_ms}"
    if args.backend:
        common += f"&backend={args.backend}"
    if args.threads is not None:
        common += f"&threads={args.threads}"
    timeout = args.seconds * 6 + 180
    ratios: list[float] = []
    print(f"== {network} network, batch {args.batch} ==")
    for rep in range(args.repeat):
        ours = b.check(f"check=throughput&{common}", timeout)
        sps = ours["results"][0]["samplesPerSec"]
        if rep == 0:
            print(f"backend: {ours['backend']['name']} ({ours['backend']['detail']}); {ours['paramCount']:,} parameters")
        line = f"[{rep + 1}] wasm trainer (Chromium Web Worker): {sps:,.1f} samples/s"
        if args.compare_own:  # in one page, windows alternating with and without our own kernels
            r = b.check(f"check=throughput&own=ab&{common}", timeout)["results"][0]
            paired = statistics.median(r["pairedRatios"])
            line += (f"; own kernels on/off alternating: {r['samplesPerSec']:,.1f} / {r['withoutOwnSamplesPerSec']:,.1f}"
                     f" samples/s, paired x{paired:.2f}")
        if args.with_stock:
            try:
                stock = b.check(f"check=throughput&stock=1&{common}", timeout)
                line += f"; stock TF.js kernels: {stock['results'][0]['samplesPerSec']:,.1f} samples/s"
            except Exception as e:  # noqa: BLE001 - reported, the other figures still count
                line += f"; stock TF.js kernels: fails ({str(e).splitlines()[0][:120]})"
        if torch_version:
            t = torch_rate(network, args.seconds, args.batch, args.window_ms)
            ratios.append(sps / t)
            line += f"; PyTorch {torch_version} 1 thread: {t:,.1f} samples/s; ratio {sps / t:.3f}"
        print(line, flush=True)
    if args.profile:
        print_profile(b.check(f"check=profile&network={network}&batch={args.batch}&reps=5"
                              + (f"&threads={args.threads}" if args.threads is not None else ""), timeout))
    return statistics.median(ratios) if ratios else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", choices=["paper", "cifar", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=6, help="timed seconds per side and repetition (default 6)")
    ap.add_argument("--repeat", type=int, default=2, help="alternating repetitions of all sides (default 2)")
    ap.add_argument("--batch", type=int, default=32, help="mini-batch size on every side (default 32)")
    ap.add_argument("--window-ms", type=int, default=1000, help="length of one timed window (default 1000)")
    ap.add_argument("--backend", default=None, help="force a TF.js backend (default: the trainer's choice)")
    ap.add_argument("--threads", type=int, default=None,
                    help="wasm threads (0 = single-threaded build; default: the trainer's choice)")
    ap.add_argument("--no-stock", dest="with_stock", action="store_false",
                    help="skip TF.js's stock wasm kernels (only the missing filter gradient added)")
    ap.add_argument("--no-compare-own", dest="compare_own", action="store_false",
                    help="skip the wasm trainer without its own wasm kernels (web/assembly; the XNNPACK-composed ones)")
    ap.add_argument("--no-profile", dest="profile", action="store_false", help="skip the per-kernel profile")
    ap.add_argument("--torch-worker", action="store_true",
                    help="also measure the torch worker through the real protocol and server beside raw PyTorch, for "
                         "the paper's and the CIFAR-size network (bench/torch_worker_throughput.py)")
    args = ap.parse_args()
    if not (STATIC_DIR / "selftest_worker.js").exists():
        sys.exit("mlitb/static is not built: run `cd web && npm install && npm run build` first")
    torch_version = torch_available()
    if not torch_version:
        print("PyTorch is not importable here: no ratio (install torch==2.13.0, CPU wheel)")
    ratios = {}
    with Browser() as b:
        for network in (["paper", "cifar"] if args.network == "both" else [args.network]):
            ratios[network] = bench_network(b, network, args, torch_version)
    for network, ratio in ratios.items():
        print(f"ratio wasm trainer / PyTorch 1 thread, {network}: "
              + (f"{ratio:.3f} (median of {args.repeat})" if ratio is not None else "n/a (no PyTorch)"))
    if args.torch_worker:
        torch_worker_section(args.seconds)


def torch_worker_section(seconds: float) -> None:
    """The native worker's part (issue: native workers): its samples/s through protocol and server vs raw PyTorch."""
    from torch_worker_throughput import torch_worker_figures

    print("== torch worker (mlitb worker --engine torch, 1 thread) ==")
    torch_worker_figures(["paper", "cifar"], max(seconds, 10), period=2.0)


if __name__ == "__main__":
    main()
