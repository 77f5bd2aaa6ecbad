"""Buffered asynchronous mode with real browsers: two headless Chromium trainers, one throttled 4x (`mlitb worker
--cpu-throttle 4`, its own process), and a tracker train one async project below 5% MNIST test error; a closure
saved from it while it trains verifies (`mlitb closure verify` recomputes the tracker's reported error with the
stored code) and `replay` refuses it with NOT_REPLAYABLE."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from mlitb.cli import main
from mlitb.model import PAPER_NETWORK
from mlitb.workers.browser import BrowserPool

TARGET = 0.05
PROJECT = {"name": "async e2e", "dataset": "mnist", "network": PAPER_NETWORK,
           "hyper": {"period_s": 1, "learning_rate": 0.05, "mode": "async", "buffer_size": 1}}


def test_two_browser_trainers_one_throttled_4x_train_an_async_project_below_5_percent_test_error(server, tmp_path,
                                                                                                  capsys):
    project = httpx.post(f"{server.url}/api/projects", json=PROJECT).json()
    pid, closure = project["id"], tmp_path / "async.zip"
    slow = subprocess.Popen([sys.executable, "-m", "mlitb.cli", "worker", "--server", server.url, "--project",
                             str(pid), "--browsers", "1", "--trackers", "0", "--backend", "wasm", "--cpu-throttle",
                             "4", "--duration", "400"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ})
    try:
        with BrowserPool(server.url, backend="wasm") as pool:
            pool.open(pid, "trainer")
            pool.open(pid, "tracker")
            deadline, metrics = time.monotonic() + 360, []
            while time.monotonic() < deadline:
                pool.wait(2)
                metrics = httpx.get(f"{server.url}/api/projects/{pid}/metrics").json()
                errors = [m["test_error"] for m in metrics if m["test_error"] is not None]
                if errors and errors[-1] < TARGET and max(m["trainers"] for m in metrics) == 2:
                    break
            statuses = pool.statuses()
            saved = main(["closure", "save", "--server", server.url, "--project", str(pid), "-o", str(closure),
                          f"--token={project['owner_token']}"])
    finally:
        slow.terminate()
        out = slow.communicate(timeout=30)[0].decode(errors="replace")
    errors = [m["test_error"] for m in metrics if m["test_error"] is not None]
    assert errors and errors[-1] < TARGET, (errors[-5:], statuses, out[-2000:])
    assert "CPU throttled 4x" in out
    applied = [m for m in metrics if m["contributions"]]
    assert all(m["mode"] == "async" and m["contributions"] == 1 for m in applied)
    assert max(m["trainers"] for m in metrics) == 2
    # both trainers' results were applied: the throttled one's computed from older versions now and then
    assert any((m["staleness_max"] or 0) >= 1 for m in applied)
    assert not any(s.get("error") for s in statuses if s["role"] == "trainer"), statuses
    # the closure of an async run: its hashes check and the reported test error is recomputed with the stored code
    assert saved == 0
    capsys.readouterr()
    assert main(["closure", "verify", str(closure)]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "hashes: all" in out and "verified" in out and "NOT verified" not in out, out
    assert main(["closure", "replay", str(closure)]) == 1
    assert "trained in asynchronous mode" in capsys.readouterr().err
