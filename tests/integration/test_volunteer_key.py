"""`mlitb worker --volunteer-key KEY` (or $MLITB_VOLUNTEER_KEY): the worker's trainers are credited under the key's
public id; a malformed key is refused before anything starts, saying what a key is."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from mlitb.cli import main
from tests.mnist_softmax import SOFTMAX_REGRESSION

KEY = "volunteer-key-of-h13a_" + "7" * 10


def public(key: str) -> str:
    return "v" + hashlib.sha256(key.encode()).hexdigest()[:16]


@pytest.fixture
def project(server):
    r = httpx.post(f"{server.url}/api/projects", json={"name": "keyed", "dataset": "mnist",
                                                       "network": SOFTMAX_REGRESSION, "hyper": {"period_s": 1}})
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.mark.parametrize("given", ["flag", "env"])
def test_a_torch_worker_with_a_volunteer_key_is_credited_under_its_public_id(server, project, tmp_path, monkeypatch,
                                                                              given):
    args = ["worker", "--engine", "torch", "--server", server.url, "--project", str(project), "--trainers", "1",
            "--trackers", "0", "--threads", "1", "--duration", "15", "--cache-dir", str(tmp_path)]
    if given == "flag":
        monkeypatch.setenv("MLITB_VOLUNTEER_KEY", "x" * 20 + "-not-this-one")  # the flag wins
        args += ["--volunteer-key", KEY]
    else:
        monkeypatch.setenv("MLITB_VOLUNTEER_KEY", KEY)
    assert main(args) == 0
    board = httpx.get(f"{server.url}/api/projects/{project}/volunteers").json()
    mine = [row for row in board if row["volunteer"] == public(KEY)]
    assert mine and mine[0]["samples"] > 0 and mine[0]["results"] >= 2, board
    assert len(board) == 1  # the other key of the flag case earned nothing


@pytest.mark.parametrize("key", ["short", "x" * 129, "has space in the key!", "tab\there-and-more-chars", "x" * 20 + "\n"])
@pytest.mark.parametrize("given", ["flag", "env"])
def test_a_malformed_volunteer_key_is_refused_before_joining_saying_what_a_key_is(key, given, monkeypatch, capsys):
    args = ["worker", "--engine", "torch", "--server", "http://127.0.0.1:9", "--project", "1"]
    if given == "flag":
        args += ["--volunteer-key", key]
    else:
        monkeypatch.setenv("MLITB_VOLUNTEER_KEY", key)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "16 to 128 characters of A-Z a-z 0-9 - _" in err
    assert ("--volunteer-key" if given == "flag" else "$MLITB_VOLUNTEER_KEY") in err
    assert key not in err  # a secret: not echoed
