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
