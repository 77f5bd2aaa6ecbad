"""The independent data server: the master only allocates ids; browsers fetch the examples
from a separate server process (cross-origin, under COOP/COEP), including uploaded data."""

import time

import httpx

from mlitb.config import Settings
from mlitb.data.server import create_data_app
from mlitb.model import PAPER_NETWORK
from mlitb.server.run import BackgroundServer
from mlitb.workers.browser import BrowserPool


def test_browser_trainers_fetch_their_examples_from_the_independent_data_server(tmp_path):
    with BackgroundServer(Settings(port=0, data_dir=tmp_path), app_factory=create_data_app) as data_srv, \
            BackgroundServer(Settings(port=0, data_dir=tmp_path, data_url=data_srv.url)) as master:
        data_app = data_srv.server.config.loaded_app
        while hasattr(data_app, "app"):  # uvicorn wraps the app in middleware
            data_app = data_app.app
        p = httpx.post(f"{master.url}/api/projects", json={"name": "ds", "dataset": "mnist", "network": PAPER_NETWORK,
                                                           "private": True, "hyper": {"period_s": 1}}).json()
        # the data server reads the master's store: it knows the project and guards it the same way
        denied = httpx.get(f"{data_srv.url}/api/projects/{p['id']}/data/train", params={"start": 0, "count": 1})
        assert denied.status_code == 401
        with BrowserPool(master.url, token=p["invite_token"]) as pool:
            pool.open(p["id"], "trainer")
            deadline = time.monotonic() + 90
            while not any(m["samples"] for m in httpx.get(f"{master.url}/api/projects/{p['id']}/metrics",
                                                          params={"token": p["invite_token"]}).json()):
                assert time.monotonic() < deadline, pool.statuses()
                pool.wait(0.5)
        assert data_app.state.requests >= 1 + 2  # the refused request, then 3,000 examples in chunks of 2,000


def test_a_class_learnt_on_the_fly_reaches_a_browser_trainer_through_the_data_server(tmp_path):
    """`--data-url` plus POST /examples: the trainer downloads the new picture from the data server (its id is past
    the uploaded data), keeps what it held, and trains the grown network."""
    import io

    import numpy as np
    from PIL import Image

    from tests.helpers import digits_zip

    net = [{"type": "input", "shape": [28, 28, 1]}, {"type": "flatten"},
           {"type": "dense", "units": 10, "activation": "softmax"}]
    with BackgroundServer(Settings(port=0, data_dir=tmp_path), app_factory=create_data_app) as data_srv, \
            BackgroundServer(Settings(port=0, data_dir=tmp_path, data_url=data_srv.url)) as master:
        p = httpx.post(f"{master.url}/api/projects", json={"name": "teach-ds", "network": net,
                                                           "hyper": {"period_s": 1}}).json()
        owner = {"Authorization": f"Bearer {p['owner_token']}"}
        r = httpx.put(f"{master.url}/api/projects/{p['id']}/data/train", content=digits_zip(3),
                      headers={**owner, "Content-Type": "application/zip"}, timeout=60)
        assert r.status_code == 200
        metrics = lambda: httpx.get(f"{master.url}/api/projects/{p['id']}/metrics").json()  # noqa: E731
        with BrowserPool(master.url) as pool:
            pool.open(p["id"], "trainer")
            deadline = time.monotonic() + 90
            while not any(m["samples"] for m in metrics()):
                assert time.monotonic() < deadline, pool.statuses()
                pool.wait(0.5)
            picture = io.BytesIO()
            Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(picture, "PNG")
            added = httpx.post(f"{master.url}/api/projects/{p['id']}/examples", params={"label": "diagonal"},
                               content=picture.getvalue(), headers={**owner, "Content-Type": "image/png"}).json()
            assert added["new_class"] and added["train_count"] == 31
            deadline = time.monotonic() + 60
            while True:
                status = pool.statuses()[0]
                grown = [m for m in metrics() if m["round"] >= added["from_round"] and m["classes"] == 11]
                if status.get("allocated") == 31 and status.get("downloaded") == 31 and any(m["samples"] for m in grown):
                    break
                assert time.monotonic() < deadline and status.get("state") != "error", status
                pool.wait(0.5)
            assert status.get("kept") == 30  # the uploaded examples stayed; only the new one was downloaded
