"""Churn with real browsers: a third of the trainers leave and new ones join while training."""

import time

import httpx

from mlitb.model import PAPER_NETWORK
from mlitb.workers.browser import BrowserPool


def test_real_browser_trainers_leave_and_join_while_training_goes_on(server):
    pid = httpx.post(f"{server.url}/api/projects", json={"name": "churn", "dataset": "mnist", "network": PAPER_NETWORK,
                                                         "hyper": {"period_s": 1, "learning_rate": 0.05}}).json()["id"]
    metrics = lambda: httpx.get(f"{server.url}/api/projects/{pid}/metrics").json()  # noqa: E731
    churn_rounds = []
    with BrowserPool(server.url) as pool:
        for _ in range(3):
            pool.open(pid, "trainer")
        for _ in range(2):  # two churn events: one of three trainers leaves, a new one joins
            deadline = time.monotonic() + 90
            while sum(m["samples"] > 0 for m in metrics()) < 6 * (len(churn_rounds) + 1):
                assert time.monotonic() < deadline, pool.statuses()
                pool.wait(0.5)
            churn_rounds.append(metrics()[-1]["round"])
            pool.close_page(0)
            pool.open(pid, "trainer")
        deadline = time.monotonic() + 90
        while not [m for m in metrics() if m["round"] > churn_rounds[-1] + 2 and m["trainers"] == 3 and m["samples"]]:
            assert time.monotonic() < deadline, pool.statuses()
            pool.wait(0.5)
    rows = metrics()
    trained = [m for m in rows if m["samples"] > 0]
    assert all(m["unallocated"] == 0 for m in rows), [m["unallocated"] for m in rows]
    for r in churn_rounds:  # training went on after each churn event
        assert any(m["round"] > r and m["samples"] > 0 for m in rows)
    first, last = trained[:3], trained[-3:]
    assert sum(m["loss"] for m in last) < 0.7 * sum(m["loss"] for m in first), [m["loss"] for m in trained]
