"""A trainer starts on the first examples while the rest download, and a reloaded page takes
its examples from IndexedDB instead of downloading them again."""

import io
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
        assert first["fromCache"] == 0 and first["allocated"] == 3_000
        pool.close_page(0)
        pool.open(pid, "trainer")  # same browser profile: same IndexedDB
        second = wait_status(pool, lambda s: s.get("allocated") and s.get("downloaded") == s["allocated"])
    assert second["fromCache"] == second["downloaded"] == 3_000


def test_a_trainer_keeps_the_examples_it_still_owns_when_a_newcomer_cuts_the_pie(server, tmp_path):
    from mlitb.data.upload import upload_zip
    from tests.helpers import digits_zip

    p = httpx.post(f"{server.url}/api/projects", json={"name": "pie", "network": PAPER_NETWORK,
                                                       "hyper": {"period_s": 1}}).json()
    (tmp_path / "d.zip").write_bytes(digits_zip(60))
    upload_zip(tmp_path / "d.zip", server.url, p["id"], p["owner_token"], out=io.StringIO())
    with BrowserPool(server.url) as pool:
        pool.open(p["id"], "trainer")
        wait_status(pool, lambda s: s.get("allocated") == 600 and s.get("downloaded") == 600)
        pool.open(p["id"], "trainer")
        deadline = time.monotonic() + 30
        while True:
            first, second = pool.statuses()
            if first.get("allocated") == 300 and first.get("state") != "downloading" and second.get("downloaded") == 300:
                break
            assert time.monotonic() < deadline, pool.statuses()
            pool.wait(0.25)
    assert first["kept"] == 300 and first["downloaded"] == 300  # nothing fetched again
