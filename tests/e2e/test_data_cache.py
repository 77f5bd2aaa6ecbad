"""A trainer starts on the first examples while the rest download, and a reloaded page takes
its examples from IndexedDB instead of downloading them again."""

import time

import httpx

from mlitb.model import PAPER_NETWORK
from mlitb.workers.browser import BrowserPool


def wait_status(pool, predicate, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        s = pool.statuses()
        if s and predicate(s[-1]):
            return s[-1]
        pool.wait(0.25)
    raise AssertionError(pool.statuses())


def test_a_reloaded_trainer_takes_its_examples_from_the_browser_cache(server):
    pid = httpx.post(f"{server.url}/api/projects", json={"name": "cache", "dataset": "mnist", "network": PAPER_NETWORK,
                                                         "hyper": {"period_s": 1}}).json()["id"]
    with BrowserPool(server.url) as pool:
        pool.open(pid, "trainer")
        first = wait_status(pool, lambda s: s.get("allocated") and s.get("downloaded") == s["allocated"] and s.get("round"))
        assert first["fromCache"] == 0 and first["allocated"] == 30_000
        pool.close_page(0)
        pool.open(pid, "trainer")  # same browser profile: same IndexedDB
        second = wait_status(pool, lambda s: s.get("allocated") and s.get("downloaded") == s["allocated"])
    assert second["fromCache"] == second["downloaded"] == 30_000
