"""Errors say what is wrong in the registry's shape: an unknown split is one code naming it on every route, the
data server answers {code, number, message} for unknown paths and methods, image errors name no Python objects,
an upload with no usable image says so, and the documented label limit is the enforced one."""

import io
import zipfile

import httpx
import pytest

from mlitb.config import Settings
from mlitb.data.examples import MAX_LABEL_CHARS
from mlitb.data.server import create_data_app
from mlitb.server.run import BackgroundServer
from tests.helpers import TINY_NETWORK, digits_zip, zip_of

NET = [{"type": "input", "shape": [28, 28, 1]}, {"type": "flatten"}, {"type": "dense", "units": 10, "activation": "softmax"}]


def create(server, network=NET, **extra):
    body = httpx.post(f"{server.url}/api/projects", json={"name": "e", "network": network, **extra}).json()
    return body, {"Authorization": f"Bearer {body['owner_token']}"}


def test_an_unknown_split_is_one_code_naming_it_on_get_and_put(server):
    p, owner = create(server, dataset="mnist")
    got = httpx.get(f"{server.url}/api/projects/{p['id']}/data/valid", params={"start": 0, "count": 1})
    put = httpx.put(f"{server.url}/api/projects/{p['id']}/data/valid", content=b"PK",
                    headers={**owner, "Content-Type": "application/zip"})
    for res in (got, put):
        assert (res.status_code, res.json()["code"]) == (404, "UNKNOWN_SPLIT"), res.text
        assert "'valid'" in res.json()["message"] and "'train'" in res.json()["message"]


def test_the_data_server_answers_unknown_paths_methods_splits_and_bad_queries_in_the_registry_shape(tmp_path):
    with BackgroundServer(Settings(port=0, data_dir=tmp_path), app_factory=create_data_app) as data_srv, \
            BackgroundServer(Settings(port=0, data_dir=tmp_path, data_url=data_srv.url)) as master:
        pid = httpx.post(f"{master.url}/api/projects", json={"name": "d", "dataset": "mnist",
                                                             "network": NET}).json()["id"]
        cases = [(httpx.get(f"{data_srv.url}/nowhere"), 404, "NOT_FOUND"),
                 (httpx.delete(f"{data_srv.url}/api/projects/{pid}/data/train"), 405, "METHOD_NOT_ALLOWED"),
                 (httpx.get(f"{data_srv.url}/api/projects/{pid}/data/valid", params={"start": 0, "count": 1}), 404,
                  "UNKNOWN_SPLIT"),
                 (httpx.get(f"{data_srv.url}/api/projects/{pid}/data/train"), 422, "INVALID_REQUEST")]
        for res, status, code in cases:
            assert res.status_code == status and set(res.json()) == {"code", "number", "message"}, res.text
            assert res.json()["code"] == code


@pytest.mark.parametrize("body", [b"certainly not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_a_bad_image_message_names_no_python_object(server, body):
    p, owner = create(server, dataset="mnist")
    res = httpx.post(f"{server.url}/api/projects/{p['id']}/examples", params={"label": "x"}, content=body,
                     headers={**owner, "Content-Type": "image/png"})
    assert res.json()["code"] == "BAD_IMAGE"
    message = res.json()["message"]
    assert "0x" not in message and "<" not in message and "BytesIO" not in message, message


def test_an_upload_with_no_usable_image_says_so_not_that_it_has_one_class(server):
    p, owner = create(server)
    res = httpx.put(f"{server.url}/api/projects/{p['id']}/data/train", headers={**owner, "Content-Type": "application/zip"},
                    content=zip_of({"dog/1.png": b"broken", "dog/2.jpg": b"also broken"}))
    assert res.json()["code"] == "EMPTY_DATASET"
    assert res.json()["message"].startswith("none of the 2 images could be decoded"), res.text


def test_a_class_whose_images_are_all_corrupt_is_not_counted(server):
    p, owner = create(server, network=TINY_NETWORK)
    good = digits_zip(1, (0,))
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    files["mnist-train/dog/1.png"] = b"broken"
    res = httpx.put(f"{server.url}/api/projects/{p['id']}/data/train", headers={**owner, "Content-Type": "application/zip"},
                    content=zip_of(files))
    assert res.json()["code"] == "EMPTY_DATASET"
    assert res.json()["message"].startswith("only one class ('0') has usable images"), res.text


def test_the_openapi_label_limit_is_the_one_the_server_enforces(server):
    schema = httpx.get(f"{server.url}/openapi.json").json()
    params = schema["paths"]["/api/projects/{project_id}/examples"]["post"]["parameters"]
    label = next(p for p in params if p["name"] == "label")["schema"]
    assert label["maxLength"] == MAX_LABEL_CHARS == 64
    p, owner = create(server, dataset="mnist")
    res = httpx.post(f"{server.url}/api/projects/{p['id']}/examples", params={"label": "x" * 65}, content=b"",
                     headers={**owner, "Content-Type": "image/png"})
    assert res.status_code == 422 and res.json()["code"] == "INVALID_REQUEST"
