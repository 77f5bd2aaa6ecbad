"""A real headless Chromium joins a real server, trains the paper network on MNIST, and the
model it trains loads in stock TF.js with the same predictions."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from mlitb.model import PAPER_NETWORK
from mlitb.workers.browser import BrowserPool

PROJECT = {"name": "e2e", "dataset": "mnist", "network": PAPER_NETWORK,
           "hyper": {"period_s": 1, "learning_rate": 0.05}}


def wait_for(predicate, timeout_s, poll=None, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        (poll or time.sleep)(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what() if callable(what) else what}")


def train_and_track(url: str, project: dict, done, timeout_s: float, what: str):
    """One browser trainer and one tracker work on a new project until `done(metrics)`: (its id, the metrics at
    that moment, the workers' statuses)."""
    pid = httpx.post(f"{url}/api/projects", json=project).json()["id"]
    with BrowserPool(url) as pool:
        pool.open(pid, "trainer")
        pool.open(pid, "tracker")

        def ready():
            m = httpx.get(f"{url}/api/projects/{pid}/metrics").json()
            return m if done(m) else None

        metrics = wait_for(ready, timeout_s, poll=pool.wait, what=lambda: f"{what}: {pool.statuses()}")
        statuses = pool.statuses()
    return pid, metrics, statuses


@pytest.fixture(scope="module")
def trained(server):
    """One browser trainer and one tracker train a project for a dozen rounds."""
    def done(m):
        trained_rounds = [r for r in m if r["samples"] > 0]
        return len(trained_rounds) >= 12 and trained_rounds[-1]["test_error"] is not None

    return train_and_track(server.url, PROJECT, done, 150, "12 trained rounds")


def test_a_browser_trainer_joins_trains_and_the_training_loss_falls(trained):
    _, metrics, statuses = trained
    losses = [m["loss"] for m in metrics if m["samples"] > 0]
    assert np.mean(losses[-3:]) < 0.6 * losses[0], losses
    assert all(m["trainers"] == 1 for m in metrics if m["samples"] > 0)
    trainer = next(s for s in statuses if s["role"] == "trainer")
    assert trainer["backend"] == "wasm", trainer  # headless Chromium has only a software GPU here
    # on a loaded machine a gradient may arrive after its round closed: refused, never fatal
    assert (trainer.get("error") or "STALE_ROUND").startswith("STALE_ROUND"), trainer
    assert trainer["samplesPerS"] > 0


def test_the_tracker_reports_a_falling_test_error(trained):
    _, metrics, _ = trained
    errors = [m["test_error"] for m in metrics if m["test_error"] is not None]
    assert errors[-1] < 0.5 and errors[-1] < errors[0], errors


def test_exported_model_loads_in_stock_tfjs_and_predicts_the_same_as_the_trainer(server, trained, chromium):
    pid, _, _ = trained
    page = chromium.new_page()
    page.goto(f"{server.url}/static/check.html")
    page.wait_for_function("window.modelCheck !== undefined")
    n = 64
    stock = np.array(page.evaluate(f"window.modelCheck.stockPredict({pid}, {n})")).reshape(n, 10)
    mine = page.evaluate(f"window.modelCheck.trainerPredict({pid}, {n}, 'wasm')")
    trainer = np.array(mine["probs"]).reshape(n, 10)
    page.close()
    assert mine["backend"] == "wasm"
    np.testing.assert_allclose(stock.sum(axis=1), 1, atol=1e-4)
    np.testing.assert_allclose(stock, trainer, atol=1e-4)
    assert (stock.argmax(1) == trainer.argmax(1)).all()


def test_api_docs_page_renders_offline_from_local_assets(server, chromium):
    page = chromium.new_page()
    failed = []
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.goto(f"{server.url}/docs")
    page.get_by_text("/api/projects").first.wait_for(timeout=20_000)
    page.close()
    assert not failed, failed
