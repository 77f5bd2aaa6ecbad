"""Test helpers: small projects, tiny data sets, and a `mlitb serve` process of a test's own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from mlitb.config import Settings
from mlitb.data import Dataset, Split
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import ProjectSpec

TINY_NETWORK = [{"type": "input", "shape": [2, 2, 1]}, {"type": "flatten"}, {"type": "dense", "units": 3, "activation": "softmax"}]

# Every layer type and activation of mlitb/model/spec.py in one small network (odd sizes, stride 2, both paddings,
# a pool whose stride is not its size): what the torch engine is checked against, in float64 (tests/unit/
# test_torch_layout.py) and against the browser's wasm path (tests/e2e/test_torch_parity.py).
EVERY_LAYER_NETWORK = [
    {"type": "input", "shape": [12, 11, 3]},
    {"type": "conv2d", "filters": 6, "kernel": 3, "stride": 2, "padding": "same", "activation": "tanh"},
    {"type": "conv2d", "filters": 5, "kernel": 2, "stride": 1, "padding": "same", "activation": "sigmoid"},
    {"type": "relu"},
    {"type": "maxpool2d", "size": 2, "stride": 1},
    {"type": "conv2d", "filters": 4, "kernel": 3, "stride": 1, "padding": "valid", "activation": "linear"},
    {"type": "tanh"},
    {"type": "maxpool2d", "size": 2},
    {"type": "flatten"},
    {"type": "dropout", "rate": 0.0},
    {"type": "dense", "units": 7, "activation": "relu"},
    {"type": "sigmoid"},
    {"type": "dense", "units": 6, "activation": "tanh"},
    {"type": "dense", "units": 4, "activation": "linear"},
    {"type": "softmax"},
]


def tiny_dataset(n: int = 30) -> Dataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 2, 2, 1), dtype=np.uint8)
    labels = (np.arange(n) % 3).astype(np.uint8)
    return Dataset("tiny", ("a", "b", "c"), Split(images, labels), Split(images[:6], labels[:6]))


def make_runtime(period_s: float = 1.0, n: int = 30, clock=None, **hyper) -> ProjectRuntime:
    """A runtime of the tiny network on `n` examples; `clock`: its time source (default: time.monotonic)."""
    spec = ProjectSpec(name="tiny", network=TINY_NETWORK, hyper={"period_s": period_s, **hyper})
    return ProjectRuntime(1, spec, spec.build_network(), tiny_dataset(n), Settings(),
                          **({"clock": clock} if clock else {}))


def digits_zip(per_class: int, classes=range(10), split: str = "train", offset: int = 0) -> bytes:
    """A zip of real MNIST digits as PNG and JPEG files in class folders (mnist-SPLIT/LABEL/ID.png)."""
    import io

    from PIL import Image

    from mlitb.data import load_mnist

    part = getattr(load_mnist(), split)
    files = {}
    for c in classes:
        for k, i in enumerate(np.flatnonzero(part.labels == c)[offset:offset + per_class]):
            out, fmt = io.BytesIO(), ("PNG", "JPEG")[k % 2]
            Image.fromarray(part.images[i, :, :, 0]).save(out, fmt)
            files[f"mnist-{split}/{c}/{i}.{fmt.lower()}"] = out.getvalue()
    return zip_of(files)


def zip_of(files: dict[str, bytes]) -> bytes:
    """A zip archive of these members (name -> bytes), in this order."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


async def protocol_trainer(url: str, project: int, rounds: int, samples: int | None = None) -> None:
    """A trainer over a real WebSocket that answers `rounds` WORK frames with a small gradient (0.01 per value)
    over `samples` examples or, when None, over exactly the examples the master named (deterministic rounds)."""
    import asyncio

    import websockets

    from mlitb.protocol import MessageType, decode, encode

    async with websockets.connect(url.replace("http://", "ws://") + "/ws", max_size=None) as ws:
        await ws.send(encode(MessageType.JOIN, project=project, payload={"role": "trainer", "backend": "test"}))
        done, size = 0, 0
        while done < rounds:
            f = decode(await asyncio.wait_for(ws.recv(), 10), 1 << 30)
            if f.type == MessageType.WELCOME:
                size = f.json()["param_count"]
            elif f.type == MessageType.WORK:
                n = len(f.payload) // 4 if samples is None else samples
                await ws.send(encode(MessageType.GRADIENT, project=project, round=f.round, count=n, aux=5,
                                     value=float(n), payload=np.full(size, 0.01, dtype=np.float32)))
                done += 1


WEB = Path(__file__).resolve().parents[1] / "web"


def run_in_node(source: str, out_dir: Path, script: str, request) -> object:
    """Bundle web/src/`source` for Node with esbuild, run `script` (an ES module in which BUNDLE names the bundle's
    path and INPUT the parsed JSON `request`) and return what it prints as JSON; skips without Node or esbuild."""
    import pytest

    esbuild, node = WEB / "node_modules" / ".bin" / "esbuild", shutil.which("node")
    if not esbuild.exists() or node is None:
        pytest.skip("needs Node and web/node_modules (npm --prefix web install)")
    out = out_dir / (Path(source).stem + ".mjs")
    subprocess.run([str(esbuild), str(WEB / "src" / source), "--bundle", "--format=esm", f"--outfile={out}",
                    "--log-level=warning"], check=True)
    prelude = (f"const BUNDLE = {json.dumps(str(out))};"
               "const INPUT = JSON.parse((await import('node:fs')).readFileSync(0, 'utf8'));")
    done = subprocess.run([node, "--input-type=module", "-e", prelude + script], input=json.dumps(request),
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@dataclass
class Served:
    url: str
    proc: subprocess.Popen

    def stop(self) -> str:
        """SIGTERM (a clean shutdown, as an operator's), then everything the process wrote (if it was captured)."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        return out or ""


@contextlib.contextmanager
def serve_process(data_dir, *args: str, log_level: str = "warning", capture: bool = False):
    """A `mlitb serve` in a process of its own on a free loopback port (its own GIL, its own logs), up and answering
    when this yields; killed on the way out if the test did not stop it. `capture` keeps its output for `stop()`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "mlitb.cli", "serve", "--port", str(port), "--data-dir",
                             str(data_dir), "--log-level", log_level, *args], stdout=out, stderr=subprocess.STDOUT,
                            text=True, cwd=root, env={**os.environ, "PYTHONPATH": root})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/projects", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        yield Served(url, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@contextlib.asynccontextmanager
async def running(*loops):
    """Each object's `run()` (a round loop: a runtime, a cluster's project core, a gateway) on a task of this event
    loop for the length of the block; then each is stopped and its task awaited."""
    tasks = [asyncio.create_task(x.run()) for x in loops]
    try:
        yield
    finally:
        for x in loops:
            x.stop()
        await asyncio.gather(*tasks)


async def wait_for(predicate, timeout_s: float, what: str) -> float:
    """Seconds until `predicate()` held, polled every 0.1 s; fails the test after `timeout_s`."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout_s, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)
    return time.monotonic() - start
