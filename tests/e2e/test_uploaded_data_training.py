"""An uploaded zip of real PNG and JPEG MNIST digits trains in a headless browser."""

import io
import time

import httpx

from mlitb.data.upload import upload_zip
from mlitb.model import PAPER_NETWORK
from mlitb.workers.browser import BrowserPool
from tests.helpers import digits_zip


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_a_zip_of_png_and_jpeg_digits_uploads_and_trains_in_a_headless_browser(server, tmp_path):
    p = httpx.post(f"{server.url}/api/projects", json={"name": "uploaded", "network": PAPER_NETWORK,
                                                       "hyper": {"period_s": 1, "learning_rate": 0.05}}).json()
    log = io.StringIO()
    report = upload_zip(write(tmp_path / "train.zip", digits_zip(300)), server.url, p["id"], p["owner_token"], out=log)
    assert report["count"] == 3000 and report["labels"] == [str(d) for d in range(10)]
    assert "100.0%" in log.getvalue()  # progress was shown
    upload_zip(write(tmp_path / "test.zip", digits_zip(50, split="test")), server.url, p["id"], p["owner_token"], "test", out=log)
    with BrowserPool(server.url) as pool:
        pool.open(p["id"], "trainer")
        pool.open(p["id"], "tracker")
        deadline = time.monotonic() + 120
        while True:
            m = httpx.get(f"{server.url}/api/projects/{p['id']}/metrics").json()
            trained = [r for r in m if r["samples"] > 0]
            if len(trained) >= 10 and trained[-1]["test_error"] is not None:
                break
            assert time.monotonic() < deadline, pool.statuses()
            pool.wait(0.5)
    assert trained[-1]["loss"] < 0.6 * trained[0]["loss"], [r["loss"] for r in trained]
    assert trained[-1]["test_error"] < 0.5
