"""The independent data server serves examples labelled on the fly (POST /examples) exactly as the master does:
the ids the master allocates, the same bytes, the same content version (ETag)."""

import io

import httpx
import numpy as np
from PIL import Image

from mlitb.config import Settings
from mlitb.data.server import create_data_app
from mlitb.server.run import BackgroundServer
from tests.helpers import digits_zip

NET = [{"type": "input", "shape": [28, 28, 1]}, {"type": "flatten"}, {"type": "dense", "units": 10, "activation": "softmax"}]


def png(value: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((28, 28), value, np.uint8)).save(out, "PNG")
    return out.getvalue()


def test_examples_added_on_the_fly_are_served_by_the_independent_data_server(tmp_path):
    with BackgroundServer(Settings(port=0, data_dir=tmp_path), app_factory=create_data_app) as data_srv, \
            BackgroundServer(Settings(port=0, data_dir=tmp_path, data_url=data_srv.url)) as master:
        p = httpx.post(f"{master.url}/api/projects", json={"name": "ds", "network": NET}).json()
        owner = {"Authorization": f"Bearer {p['owner_token']}"}
        r = httpx.put(f"{master.url}/api/projects/{p['id']}/data/train", content=digits_zip(2),
                      headers={**owner, "Content-Type": "application/zip"}, timeout=60)
        assert r.status_code == 200 and r.json()["count"] == 20
        ranges = {"start": 0, "count": 20}
        assert httpx.get(f"{data_srv.url}/api/projects/{p['id']}/data/train", params=ranges).status_code == 200
        for label, value in (("star", 255), ("7", 128), ("star", 60)):  # a new class, a known one, the new one again
            r = httpx.post(f"{master.url}/api/projects/{p['id']}/examples", params={"label": label},
                           content=png(value), headers={**owner, "Content-Type": "image/png"})
            assert r.status_code == 200, r.text
        assert r.json()["train_count"] == 23 and r.json()["classes"] == 11
        every = {"start": 0, "count": 23}
        served = httpx.get(f"{data_srv.url}/api/projects/{p['id']}/data/train", params=every)
        own = httpx.get(f"{master.url}/api/projects/{p['id']}/data/train", params=every)
        assert served.status_code == 200, served.text
        assert served.content == own.content and served.headers["etag"] == own.headers["etag"]
        labels = served.content[:23]
        assert list(labels[20:]) == [10, 7, 10] and served.content[23 + 20 * 784:23 + 21 * 784] == bytes([255]) * 784
        # past the end: the same refusal from both
        past = {"start": 23, "count": 1}
        assert httpx.get(f"{data_srv.url}/api/projects/{p['id']}/data/train", params=past).json()["code"] == "BAD_RANGE"
    # a restarted data server (reading what the master stored) serves them too
    with BackgroundServer(Settings(port=0, data_dir=tmp_path), app_factory=create_data_app) as data_srv:
        again = httpx.get(f"{data_srv.url}/api/projects/{p['id']}/data/train", params=every)
        assert again.content == own.content and again.headers["etag"] == own.headers["etag"]


def test_the_data_server_keeps_one_cached_data_set_per_project(tmp_path):
    with BackgroundServer(Settings(port=0, data_dir=tmp_path), app_factory=create_data_app) as data_srv, \
            BackgroundServer(Settings(port=0, data_dir=tmp_path, data_url=data_srv.url)) as master:
        p = httpx.post(f"{master.url}/api/projects", json={"name": "ds", "network": NET}).json()
        owner = {"Authorization": f"Bearer {p['owner_token']}"}
        httpx.put(f"{master.url}/api/projects/{p['id']}/data/train", content=digits_zip(1),
                  headers={**owner, "Content-Type": "application/zip"}, timeout=60)
        for k in range(4):  # each example makes a new version; the old ones are not kept
            httpx.post(f"{master.url}/api/projects/{p['id']}/examples", params={"label": "x"}, content=png(k),
                       headers={**owner, "Content-Type": "image/png"})
            assert httpx.get(f"{data_srv.url}/api/projects/{p['id']}/data/train",
                             params={"start": 10 + k, "count": 1}).status_code == 200
        app = data_srv.server.config.loaded_app
        while hasattr(app, "app"):
            app = app.app
        assert len(app.state.datasets) == 1
