"""Storage quotas and the free-disk watermark over REST: uploads and added examples just inside and just past
the project's quota, a server quota hit while an upload streams in, and a disk below the watermark."""

import io
import os

import httpx
import numpy as np
import pytest
from PIL import Image

from mlitb.config import Settings
from mlitb.server.run import BackgroundServer
from mlitb.server.storage import tree_bytes
from tests.helpers import digits_zip

NET = [{"type": "input", "shape": [28, 28, 1]}, {"type": "flatten"}, {"type": "dense", "units": 3, "activation": "softmax"}]
EXAMPLE_BYTES = 28 * 28  # one added example as stored: the decoded grey image
SMALL = digits_zip(4, (0, 1, 2))


def create(url):
    r = httpx.post(f"{url}/api/projects", json={"name": "q", "network": NET})
    assert r.status_code == 201, r.text
    return r.json()


def upload(url, p, body, split="train"):
    return httpx.put(f"{url}/api/projects/{p['id']}/data/{split}", content=body, timeout=60,
                     headers={"Content-Type": "application/zip", "Authorization": f"Bearer {p['owner_token']}"})


def add_example(url, p, label="0"):
    out = io.BytesIO()
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(out, "PNG")
    return httpx.post(f"{url}/api/projects/{p['id']}/examples", params={"label": label}, content=out.getvalue(),
                      headers={"Content-Type": "image/png", "Authorization": f"Bearer {p['owner_token']}"}, timeout=30)


@pytest.fixture(scope="module")
def decoded_bytes(server):
    """What the SMALL zip takes on disk once decoded, measured on a server without tight quotas."""
    p = create(server.url)
    assert upload(server.url, p, SMALL).status_code == 200
    return tree_bytes(server.settings.data_dir / "datasets" / str(p["id"]))


def test_uploads_and_examples_fit_the_project_quota_exactly_and_one_byte_more_is_refused(tmp_path, decoded_bytes):
    quota = decoded_bytes + EXAMPLE_BYTES
    with BackgroundServer(Settings(port=0, data_dir=tmp_path, max_project_bytes=quota)) as srv:
        p = create(srv.url)
        assert upload(srv.url, p, SMALL).status_code == 200
        r = add_example(srv.url, p)  # the project now stores exactly its quota
        assert r.status_code == 200, r.text
        r = add_example(srv.url, p, "1")
        assert r.status_code == 507 and r.json()["code"] == "PROJECT_QUOTA_EXCEEDED"
        assert "at most" in r.json()["message"]
        assert upload(srv.url, p, SMALL).status_code == 200  # replacing the data frees what it replaces
        other = create(srv.url)  # a larger data set does not fit, and nothing of it stays
        r = upload(srv.url, other, digits_zip(5, (0, 1, 2)))
        assert r.status_code == 507 and r.json()["code"] == "PROJECT_QUOTA_EXCEEDED"
        assert tree_bytes(tmp_path / "datasets" / str(other["id"])) == 0
        assert os.listdir(tmp_path / "uploads") == []


def test_an_upload_passing_the_server_quota_is_refused_while_it_streams_and_leaves_nothing(tmp_path):
    with BackgroundServer(Settings(port=0, data_dir=tmp_path, max_server_bytes=3 * 1024**2)) as srv:
        p = create(srv.url)
        r = upload(srv.url, p, os.urandom(4 * 1024**2))
        assert r.status_code == 507 and r.json()["code"] == "SERVER_QUOTA_EXCEEDED"
        assert os.listdir(tmp_path / "uploads") == [] and srv.server.config.app.state.storage.in_flight == 0
        assert upload(srv.url, p, SMALL).status_code == 200  # the refused bytes no longer count


def test_below_the_free_disk_watermark_uploads_examples_and_closures_are_refused_with_a_clear_error(tmp_path):
    with BackgroundServer(Settings(port=0, data_dir=tmp_path, min_free_disk_bytes=1 << 60)) as srv:
        p = create(srv.url)
        r = upload(srv.url, p, SMALL)
        assert r.status_code == 507 and r.json()["code"] == "DISK_LOW"
        assert "free" in r.json()["message"] and "keeps at least" in r.json()["message"]
        closure = httpx.post(f"{srv.url}/api/projects/{p['id']}/closures",
                             headers={"Authorization": f"Bearer {p['owner_token']}"}, timeout=60)
        assert closure.status_code == 507 and closure.json()["code"] == "DISK_LOW"
        zoo = httpx.post(f"{srv.url}/api/closures", content=b"PK", headers={"Content-Type": "application/zip"})
        assert zoo.status_code == 507 and zoo.json()["code"] == "DISK_LOW"
