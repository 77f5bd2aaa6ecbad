"""Commands that talk to a server: one clean error line naming the URL and a non-zero exit when it cannot be
reached, and a worker that says a private project needs a token (not that it does not exist)."""

import socket

import httpx
import pytest

from mlitb.cli import main
from mlitb.closure.format import build_closure, snapshot
from tests.helpers import TINY_NETWORK, make_runtime


@pytest.fixture(scope="module")
def dead_url():
    """A loopback URL nothing listens on (a port bound, then freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def closure_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("closure") / "c.closure.zip"
    path.write_bytes(build_closure(snapshot(make_runtime())))
    return path


def _commands(dead_url, closure_file, tmp_path):
    (tmp_path / "d.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    return {
        "data upload": ["data", "upload", str(tmp_path / "d.zip"), "--project", "1", "--server", dead_url],
        "closure save": ["closure", "save", "--project", "1", "-o", str(tmp_path / "o.zip"), "--server", dead_url],
        "closure load": ["closure", "load", str(closure_file), "--server", dead_url],
        "worker": ["worker", "--project", "1", "--server", dead_url],
        "simulate --server --project": ["simulate", "--clients", "1", "--server", dead_url, "--project", "1"],
        "simulate --server": ["simulate", "--clients", "1", "--server", dead_url],
    }


@pytest.mark.parametrize("name", ["data upload", "closure save", "closure load", "worker",
                                  "simulate --server --project", "simulate --server"])
def test_an_unreachable_server_is_one_error_line_naming_its_url_and_a_non_zero_exit(name, dead_url, closure_file,
                                                                                    tmp_path, capsys):
    rc = main(_commands(dead_url, closure_file, tmp_path)[name])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("\r")
             and "uploading" not in line]
    assert rc == 2, err
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(f"error: cannot reach {dead_url}: "), err
    assert "refused" in lines[0].lower(), err


def test_a_worker_on_a_private_project_without_a_token_says_it_needs_one(server, capsys, monkeypatch):
    for name in ("MLITB_INVITE_TOKEN", "MLITB_OWNER_TOKEN", "MLITB_ADMIN_TOKEN", "MLITB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    pid = httpx.post(f"{server.url}/api/projects", json={"name": "secret", "network": TINY_NETWORK,
                                                         "private": True}).json()["id"]
    assert main(["worker", "--project", str(pid), "--server", server.url]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: project {pid} on {server.url} is private: give its invite token (--token or " \
                  f"$MLITB_INVITE_TOKEN)"
    assert main(["worker", "--project", str(pid), "--server", server.url, "--token", "wrong"]) == 2
    assert "does not open private project" in capsys.readouterr().err
    assert main(["worker", "--project", "9999", "--server", server.url]) == 2
    assert capsys.readouterr().err.strip() == f"error: {server.url} has no project 9999"


def test_the_old_shared_token_variable_is_not_sent_anywhere_and_says_which_one_to_set(server, capsys, monkeypatch):
    for name in ("MLITB_INVITE_TOKEN", "MLITB_OWNER_TOKEN", "MLITB_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    body = httpx.post(f"{server.url}/api/projects", json={"name": "secret", "network": TINY_NETWORK,
                                                          "private": True}).json()
    monkeypatch.setenv("MLITB_TOKEN", body["invite_token"])
    assert main(["worker", "--project", str(body["id"]), "--server", server.url]) == 2
    err = capsys.readouterr().err
    assert "$MLITB_TOKEN is no longer read" in err and "$MLITB_INVITE_TOKEN" in err and "is private" in err
