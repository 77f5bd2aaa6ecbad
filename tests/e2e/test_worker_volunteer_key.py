"""`mlitb worker --volunteer-key KEY` in headless Chromium: the pool's pages are credited under the key (its own
module: the pool starts Playwright itself, which cannot run beside another module's `chromium` fixture)."""

from __future__ import annotations

import hashlib

import httpx

from mlitb.workers.browser import BrowserPool
from tests.mnist_softmax import SOFTMAX_REGRESSION


def test_headless_workers_given_a_volunteer_key_are_credited_under_it(server):
    # `mlitb worker --volunteer-key KEY`: its pool stores the key before the page's scripts run, so the trainer sends
    # it in JOIN instead of a fresh profile's own
    key = "headless-volunteer-" + "k" * 12
    public = "v" + hashlib.sha256(key.encode()).hexdigest()[:16]
    pid = httpx.post(f"{server.url}/api/projects", json={"name": "keyed", "dataset": "mnist",
                                                          "network": SOFTMAX_REGRESSION,
                                                          "hyper": {"period_s": 1}}).json()["id"]
    with BrowserPool(server.url, backend="wasm", volunteer=key) as pool:
        pool.open(pid, "trainer")
        for _ in range(90):
            board = httpx.get(f"{server.url}/api/projects/{pid}/volunteers").json()
            if board and board[0]["samples"] > 0:
                break
            pool.wait(1)
        assert pool.pages[0].evaluate("localStorage.getItem('mlitb-volunteer-key')") == key
    assert [row["volunteer"] for row in board] == [public] and board[0]["samples"] > 0, board
