"""An uploaded zip of real PNG and JPEG MNIST digits trains in a headless browser."""

import io
import time
import zipfile

import httpx
import numpy as np
from PIL import Image

from mlitb.data import load_mnist
from mlitb.data.upload import upload_zip
from mlitb.model import PAPER_NETWORK
from mlitb.workers.browser import BrowserPool


def digits_zip(path, split, per_class):
    mnist = load_mnist()
    part = mnist.train if split == "train" else mnist.test
    with zipfile.ZipFile(path, "w") as zf:
        for c in range(10):
            for k, i in enumerate(np.flatnonzero(part.labels == c)[:per_class]):
                out, fmt = io.BytesIO(), ("PNG", "JPEG")[k % 2]
                Image.fromarray(part.images[i, :, :, 0]).save(out, fmt)
                zf.writestr(f"mnist-{split}/{c}/{i}.{fmt.lower()}", out.getvalue())
    return path


def test_a_zip_of_png_and_jpeg_digits_uploads_and_trains_in_a_headless_browser(server, tmp_path):
    p = httpx.post(f"{server.url}/api/projects", json={"name": "uploaded", "network": PAPER_NETWORK,
                                                       "hyper": {"period_s": 1, "learning_rate": 0.05}}).json()
    log = io.StringIO()
    report = upload_zip(digits_zip(tmp_path / "train.zip", "train", 300), server.url, p["id"], p["owner_token"], out=log)
    assert report["count"] == 3000 and report["labels"] == [str(d) for d in range(10)]
    assert "100.0%" in log.getvalue()  # progress was shown
    upload_zip(digits_zip(tmp_path / "test.zip", "test", 50), server.url, p["id"], p["owner_token"], "test", out=log)
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
