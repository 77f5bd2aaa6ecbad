"""Research closures over REST and the CLI: save (owner only, while training), list, download, upload,
fork into a new project that continues from the weights or restarts from the seed."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile

import httpx
import numpy as np
import pytest

from mlitb.cli import main
from mlitb.closure import load
from mlitb.model import PAPER_NETWORK, glorot_init, parse_network
from tests.helpers import protocol_trainer, zip_of

PROJECT = {"name": "closure-api", "dataset": "mnist", "network": PAPER_NETWORK, "seed": 7,
           "hyper": {"period_s": 1, "learning_rate": 0.05}}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def trained(server):
    project = httpx.post(f"{server.url}/api/projects", json=PROJECT).json()
    asyncio.run(protocol_trainer(server.url, project["id"], 3, samples=8))
    return project


def test_saving_needs_the_owner_token(server, trained):
    url = f"{server.url}/api/projects/{trained['id']}/closures"
    assert httpx.post(url, json={}).json()["code"] == "AUTH_REQUIRED"
    assert httpx.post(url, json={}, headers=bearer("wrong")).json()["code"] == "FORBIDDEN"


def test_a_saved_closure_is_listed_downloaded_and_holds_the_trained_weights(server, trained):
    res = httpx.post(f"{server.url}/api/projects/{trained['id']}/closures", json={"description": "three rounds"},
                     headers=bearer(trained["owner_token"]))
    assert res.status_code == 201, res.text
    info = res.json()
    assert info["rounds"] >= 3 and info["description"] == "three rounds" and "owner_hash" not in info
    assert info["id"] in [c["id"] for c in httpx.get(f"{server.url}/api/closures").json()]
    raw = httpx.get(f"{server.url}/api/closures/{info['id']}/download").content
    c = load(raw)
    weights = np.frombuffer(httpx.get(f"{server.url}/api/projects/{trained['id']}/model/weights.bin").content, "<f4")
    assert not np.array_equal(c.closure.params, glorot_init(parse_network(PAPER_NETWORK), 7))  # trained
    assert c.closure.params.shape == weights.shape
    assert len(c.metrics) == info["rounds"]


def test_forking_continues_from_the_weights_or_restarts_from_the_seed(server, trained):
    info = httpx.post(f"{server.url}/api/projects/{trained['id']}/closures", json={},
                      headers=bearer(trained["owner_token"])).json()
    stored = load(httpx.get(f"{server.url}/api/closures/{info['id']}/download").content).closure
    cont = httpx.post(f"{server.url}/api/closures/{info['id']}/fork", json={"mode": "continue", "name": "again"})
    assert cont.status_code == 201, cont.text
    body = cont.json()
    assert body["owner_token"] and body["name"] == "again" and body["round"] == stored.manifest["round"]
    w = np.frombuffer(httpx.get(f"{server.url}/api/projects/{body['id']}/model/weights.bin").content, "<f4")
    np.testing.assert_array_equal(w, stored.params)
    restart = httpx.post(f"{server.url}/api/closures/{info['id']}/fork", json={"mode": "restart"}).json()
    w = np.frombuffer(httpx.get(f"{server.url}/api/projects/{restart['id']}/model/weights.bin").content, "<f4")
    np.testing.assert_array_equal(w, glorot_init(parse_network(PAPER_NETWORK), 7))
    assert restart["round"] == 0 and restart["hyper"] == trained["hyper"]


def test_an_uploaded_tampered_closure_is_refused_and_nothing_is_stored(server, trained):
    info = httpx.post(f"{server.url}/api/projects/{trained['id']}/closures", json={},
                      headers=bearer(trained["owner_token"])).json()
    raw = httpx.get(f"{server.url}/api/closures/{info['id']}/download").content
    before = len(httpx.get(f"{server.url}/api/closures").json())
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        parts = {i.filename: zf.read(i) for i in zf.infolist()}
    config = json.loads(parts["config.json"])
    config["project"]["hyper"]["learning_rate"] = 9.0
    parts["config.json"] = json.dumps(config).encode()
    res = httpx.post(f"{server.url}/api/closures", content=zip_of(parts))
    assert res.status_code == 422 and res.json()["code"] == "CLOSURE_TAMPERED" and "config.json" in res.json()["message"]
    assert len(httpx.get(f"{server.url}/api/closures").json()) == before
    assert httpx.post(f"{server.url}/api/closures", content=raw).status_code == 201


def test_a_private_projects_closure_is_hidden_from_others(server):
    project = httpx.post(f"{server.url}/api/projects", json={**PROJECT, "private": True}).json()
    info = httpx.post(f"{server.url}/api/projects/{project['id']}/closures", json={},
                      headers=bearer(project["owner_token"])).json()
    assert info["id"] not in [c["id"] for c in httpx.get(f"{server.url}/api/closures").json()]
    assert httpx.get(f"{server.url}/api/closures/{info['id']}/download").json()["code"] == "AUTH_REQUIRED"
    assert httpx.get(f"{server.url}/api/closures/{info['id']}/download",
                     headers=bearer(project["owner_token"])).status_code == 200
    assert httpx.get(f"{server.url}/api/closures/nope").json()["code"] == "UNKNOWN_CLOSURE"


def test_the_cli_saves_a_closure_and_loads_it_into_a_new_project(server, trained, tmp_path, capsys):
    out = tmp_path / "c.zip"
    assert main(["closure", "save", "--server", server.url, "--project", str(trained["id"]), "-o", str(out),
                 f"--token={trained['owner_token']}", "--description", "from the cli"]) == 0
    assert load(out).description == "from the cli"
    assert main(["closure", "load", str(out), "--server", server.url, "--mode", "restart"]) == 0
    assert "started from the closure (restart) at round 0" in capsys.readouterr().out
    out.write_bytes(out.read_bytes()[:-100])
    assert main(["closure", "load", str(out), "--server", server.url]) == 1
    assert "not loaded" in capsys.readouterr().err


def test_the_cli_save_without_the_owner_token_fails_and_names_the_reason(server, trained, tmp_path, capsys):
    out = tmp_path / "c.zip"
    assert main(["closure", "save", "--server", server.url, "--project", str(trained["id"]), "-o", str(out)]) == 1
    assert "AUTH_REQUIRED" in capsys.readouterr().err and not out.exists()
