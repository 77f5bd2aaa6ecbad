"""Every uploaded body is capped while it is read: by its declared length before anything is read, and by
the bytes that arrive when it declares none (chunked), for images, weights and closure files alike."""

import httpx
import numpy as np

from mlitb.model import PAPER_NETWORK
from mlitb.server import closures, examples

MB = 1 << 20


def chunked(data: bytes):
    """The body as a generator: httpx sends it chunked, with no Content-Length."""
    for i in range(0, len(data), MB):
        yield data[i:i + MB]


def test_an_example_image_past_the_cap_is_refused_declared_or_chunked(server):
    p = httpx.post(f"{server.url}/api/projects", json={"name": "cap", "dataset": "mnist", "network": PAPER_NETWORK}).json()
    big = b"\0" * (examples.MAX_IMAGE_BYTES + 1)
    headers = {"Authorization": f"Bearer {p['owner_token']}", "Content-Type": "image/png"}
    url = f"{server.url}/api/projects/{p['id']}/examples?label=x"
    for body in (big, chunked(big)):
        r = httpx.post(url, content=body, headers=headers, timeout=60)
        assert (r.status_code, r.json()["code"]) == (413, "UPLOAD_TOO_LARGE"), r.text


def test_weights_longer_or_shorter_than_the_model_are_refused_declared_or_chunked(server):
    p = httpx.post(f"{server.url}/api/projects", json={"name": "cap", "network": PAPER_NETWORK}).json()
    url = f"{server.url}/api/projects/{p['id']}/model/weights.bin"
    auth = {"Authorization": f"Bearer {p['owner_token']}"}
    size = 4 * p["param_count"]
    for body in (b"\0" * (size + 4), chunked(b"\0" * (size + 4)), chunked(b"\0" * (size - 4))):
        r = httpx.put(url, content=body, headers=auth, timeout=60)
        assert (r.status_code, r.json()["code"]) == (400, "WRONG_LENGTH"), r.text
    ok = httpx.put(url, content=chunked(np.zeros(p["param_count"], "<f4").tobytes()), headers=auth, timeout=60)
    assert ok.status_code == 200, ok.text


def test_a_closure_file_past_the_cap_is_refused_chunked(server, monkeypatch):
    monkeypatch.setattr(closures, "MAX_UPLOAD_BYTES", 2 * MB)  # the server runs in this process
    r = httpx.post(f"{server.url}/api/closures", content=chunked(b"\0" * (3 * MB)),
                   headers={"Content-Type": "application/zip"}, timeout=60)
    assert (r.status_code, r.json()["code"]) == (413, "CLOSURE_TOO_LARGE"), r.text
