"""A mixed fleet: one headless-Chromium trainer (wasm) and one torch trainer train MNIST together in one project,
on the same parameters and protocol, to below 5% test error; the model reached is checked here too, on the
10,000 test images, independently of the tracker's report."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from mlitb.config import Settings
from mlitb.model import PAPER_NETWORK
from mlitb.server.run import BackgroundServer
from mlitb.workers.browser import BrowserPool
from mlitb.workers.native.engine import engine_from_artifacts

pytestmark = pytest.mark.browser
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUDGET_S = 240


def test_a_browser_and_a_torch_trainer_train_mnist_together_below_five_percent_test_error(tmp_path):
    settings = Settings(port=0, data_dir=tmp_path / "data", trainer_capacity=30_000)
    with BackgroundServer(settings) as server:
        p = httpx.post(f"{server.url}/api/projects", json={"name": "mixed", "dataset": "mnist", "network": PAPER_NETWORK,
                                                           "hyper": {"period_s": 1, "learning_rate": 0.05}}).json()
        base = f"{server.url}/api/projects/{p['id']}"
        worker = subprocess.Popen([sys.executable, "-m", "mlitb.cli", "worker", "--engine", "torch", "--server",
                                   server.url, "--project", str(p["id"]), "--trainers", "1", "--trackers", "1",
                                   "--threads", "1", "--cache-dir", str(tmp_path / "cache"), "--duration", str(BUDGET_S)],
                                  cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.DEVNULL)
        try:
            with BrowserPool(server.url) as pool:
                pool.open(p["id"], "trainer")
                deadline = time.monotonic() + BUDGET_S
                rows: list[dict] = []
                while time.monotonic() < deadline:
                    pool.wait(2)
                    rows = httpx.get(f"{base}/metrics").json()
                    both = [r for r in rows if r["contributions"] == 2]
                    err = rows[-1]["test_error"] if rows else None
                    if len(both) >= 20 and err is not None and err < 0.04:
                        break
                statuses = pool.statuses()
                clients = httpx.get(f"{base}/clients").json()
                model = httpx.get(f"{base}/model/model.json").json()
                weights = httpx.get(f"{base}/model/weights.bin").content
        finally:
            worker.terminate()
            worker.wait(20)
        test = httpx.get(f"{base}/data/test", params={"start": 0, "count": 10_000}, timeout=60).content
    backends = sorted(c["backend"].split(" ")[0] for c in clients if c["role"] == "trainer")
    assert backends == ["torch-cpu", "wasm"], clients
    assert next(s for s in statuses if s["role"] == "trainer")["samplesPerS"] > 0
    both = [r for r in rows if r["contributions"] == 2]
    trained = [r for r in rows if r["samples"] > 0]
    assert len(both) >= 0.5 * len(trained), "the browser trainer must contribute in most rounds, not be starved"
    assert rows[-1]["test_error"] < 0.05, [r["test_error"] for r in rows[-10:]]
    engine = engine_from_artifacts(model, weights)
    error, _ = engine.evaluate(np.frombuffer(test, np.uint8, offset=10_000).reshape(10_000, 28, 28, 1),
                               np.frombuffer(test, np.uint8, 10_000))
    print(f"mixed fleet: {len(trained)} rounds ({len(both)} with both trainers), tracker {rows[-1]['test_error']:.4f}, "
          f"final model {error:.4f}, clients {clients}")
    assert error < 0.05, error
