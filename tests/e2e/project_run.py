"""Runs a project with headless-Chromium trainers and records, per round, the metrics and each trainer's work time.

Shared by the end-to-end tests of real networks and by bench/work_fill.py: a CIFAR-size network, a small
data set of coloured 32x32 RGB images uploaded as a zip, and the share of the period every trainer was
given to compute (`work_ms / period`) next to its measured round trip.
"""

from __future__ import annotations

import io
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

# 32x32x3 -> conv 3x3x32 -> conv 3x3x32 -> maxpool -> conv 3x3x64 -> conv 3x3x64 -> maxpool -> dense softmax:
# what people train on CIFAR-10; with 3 classes 77,859 parameters (issue 14).
CIFAR_SIZE_NETWORK = [
    {"type": "input", "shape": [32, 32, 3]},
    {"type": "conv2d", "filters": 32, "kernel": 3, "stride": 1, "padding": "same", "activation": "relu"},
    {"type": "conv2d", "filters": 32, "kernel": 3, "stride": 1, "padding": "same", "activation": "relu"},
    {"type": "maxpool2d", "size": 2},
    {"type": "conv2d", "filters": 64, "kernel": 3, "stride": 1, "padding": "same", "activation": "relu"},
    {"type": "conv2d", "filters": 64, "kernel": 3, "stride": 1, "padding": "same", "activation": "relu"},
    {"type": "maxpool2d", "size": 2},
    {"type": "flatten"},
    {"type": "dense", "units": 3, "activation": "softmax"},
]


def colour_zip(per_class: int, seed: int = 0) -> bytes:
    """A zip of noisy 32x32 RGB PNGs in 3 class folders: a bright square of the class's colour (red, green or
    blue) somewhere on a dark noisy background, so a conv net must find it to tell the classes apart."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for c, name in enumerate(("red", "green", "blue")):
            for k in range(per_class):
                img = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
                y, x = rng.integers(0, 22, 2)
                img[y:y + 10, x:x + 10, c] = rng.integers(170, 256)
                out = io.BytesIO()
                Image.fromarray(img).save(out, "PNG")
                zf.writestr(f"colours/{name}/{k}.png", out.getvalue())
    return buf.getvalue()


@dataclass
class Run:
    """What a project run recorded: metrics rows, and per round the trainers' rows of the clients table."""

    project: dict
    metrics: list[dict] = field(default_factory=list)
    clients: dict[int, list[dict]] = field(default_factory=dict)  # round -> trainers' rows seen during it

    def work_fill(self, skip: int = 2) -> list[float]:
        """Per trainer and round after the first `skip`: its work time over (T minus its round trip)."""
        period_ms = 1000 * self.project["hyper"]["period_s"]
        return [row["work_ms"] / (period_ms - row["latency_ms"])
                for rnd, rows in sorted(self.clients.items()) if rnd >= skip for row in rows]


def create_project(url: str, name: str, network: list[dict], hyper: dict, zip_bytes: bytes) -> dict:
    from mlitb.data.upload import upload_zip

    p = httpx.post(f"{url}/api/projects", json={"name": name, "network": network, "hyper": hyper}).json()
    assert "id" in p, p
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.zip"
        path.write_bytes(zip_bytes)
        upload_zip(path, url, p["id"], p["owner_token"], out=io.StringIO())
    return p


def run_trainers(url: str, project: dict, trainers: int, rounds: int, timeout_s: float = 240) -> Run:
    """Opens `trainers` browser trainers on the project and records `rounds` rounds that trained."""
    from mlitb.workers.browser import BrowserPool

    run = Run(project=httpx.get(f"{url}/api/projects/{project['id']}").json())
    with BrowserPool(url) as pool:
        for _ in range(trainers):
            pool.open(project["id"], "trainer")
        deadline = time.monotonic() + timeout_s
        while True:
            m = httpx.get(f"{url}/api/projects/{project['id']}/metrics").json()
            rows = [c for c in httpx.get(f"{url}/api/projects/{project['id']}/clients").json() if c["role"] == "trainer"]
            if m:
                run.clients[m[-1]["round"] + 1] = rows  # the work times given for the round now open
            trained = [r for r in m if r["samples"] > 0]
            if len(trained) >= rounds:
                run.metrics = trained
                return run
            assert time.monotonic() < deadline, (pool.statuses(), m[-3:])
            pool.wait(0.25)
