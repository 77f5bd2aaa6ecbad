"""A closure says whether it can be verified: a continue-fork carries the test error its closure reported (with
the weights it was measured on), a closure with nothing to verify says why, and `closure save` warns."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
import websockets

from mlitb.cli import main
from mlitb.closure import load
from mlitb.protocol import MessageType, decode, encode
from tests.helpers import TINY_NETWORK

PARAMS = 15  # TINY_NETWORK: 2x2x1 -> dense 3


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


async def train_and_track(url: str, project: int, rounds: int, error: float) -> None:
    """A protocol trainer answers `rounds` rounds while a tracker reports `error` for each round's parameters."""
    ws_url = url.replace("http://", "ws://") + "/ws"
    async with websockets.connect(ws_url) as trainer, websockets.connect(ws_url) as tracker:
        await tracker.send(encode(MessageType.JOIN, project=project, payload={"role": "tracker", "backend": "test"}))
        await trainer.send(encode(MessageType.JOIN, project=project, payload={"role": "trainer", "backend": "test"}))

        async def track():
            while True:
                f = decode(await tracker.recv(), 1 << 20)
                if f.type == MessageType.PARAMS and f.round > 0:
                    await tracker.send(encode(MessageType.EVAL, project=project, round=f.round, count=6, aux=1,
                                              value=error))

        tracking = asyncio.create_task(track())
        done = 0
        while done < rounds:
            f = decode(await asyncio.wait_for(trainer.recv(), 10), 1 << 20)
            if f.type == MessageType.WORK:
                await trainer.send(encode(MessageType.GRADIENT, project=project, round=f.round, count=4, aux=5,
                                          value=4.0, payload=np.full(PARAMS, 0.1, np.float32)))
                done += 1
        await asyncio.sleep(0.3)  # the tracker's report of the last parameters
        tracking.cancel()


@pytest.fixture(scope="module")
def tracked(server):
    project = httpx.post(f"{server.url}/api/projects", json={"name": "tracked", "network": TINY_NETWORK,
                                                             "hyper": {"period_s": 1}}).json()
    asyncio.run(train_and_track(server.url, project["id"], 3, 0.25))
    return project


def _save(server, project) -> dict:
    res = httpx.post(f"{server.url}/api/projects/{project['id']}/closures", json={},
                     headers=bearer(project["owner_token"]))
    assert res.status_code == 201, res.text
    return res.json()


def test_a_continue_fork_carries_the_reported_test_error_and_its_weights(server, tracked):
    info = _save(server, tracked)
    assert info["test_error"] == 0.25 and info["verifiable"] is True and info["unverifiable_reason"] is None
    original = load(httpx.get(f"{server.url}/api/closures/{info['id']}/download").content)
    fork = httpx.post(f"{server.url}/api/closures/{info['id']}/fork", json={"mode": "continue"}).json()
    again = _save(server, fork)
    assert again["test_error"] == 0.25 and again["verifiable"] is True
    forked = load(httpx.get(f"{server.url}/api/closures/{again['id']}/download").content)
    was, now = original.manifest["reported"], forked.manifest["reported"]
    assert (now["test_error"], now["round"], now["count"]) == (was["test_error"], was["round"], was["count"])
    np.testing.assert_array_equal(forked.closure.floats(now["weights"]), original.closure.floats(was["weights"]))


def test_a_restart_fork_has_nothing_to_verify_and_its_closure_says_why(server, tracked):
    info = _save(server, tracked)
    fork = httpx.post(f"{server.url}/api/closures/{info['id']}/fork", json={"mode": "restart"}).json()
    again = _save(server, fork)
    assert again["verifiable"] is False and again["test_error"] is None
    assert "no tracker has reported" in again["unverifiable_reason"]
    c = load(httpx.get(f"{server.url}/api/closures/{again['id']}/download").content)
    assert c.manifest["reported"] is None and c.manifest["unreported"] == again["unverifiable_reason"]


def test_closure_save_warns_at_save_time_when_nothing_can_be_verified(server, tmp_path, capsys):
    project = httpx.post(f"{server.url}/api/projects", json={"name": "untracked", "network": TINY_NETWORK}).json()
    out = tmp_path / "c.zip"
    assert main(["closure", "save", "--server", server.url, "--project", str(project["id"]), "-o", str(out),
                 f"--token={project['owner_token']}"]) == 0
    captured = capsys.readouterr()
    assert "saved closure" in captured.out and out.exists()
    assert captured.err.startswith("warning: this closure cannot be verified: no tracker has reported")


def test_verify_of_a_closure_without_a_reported_error_prints_the_stored_reason(server, tmp_path, capsys):
    project = httpx.post(f"{server.url}/api/projects", json={"name": "untracked", "network": TINY_NETWORK}).json()
    out = tmp_path / "c.zip"
    assert main(["closure", "save", "--server", server.url, "--project", str(project["id"]), "-o", str(out),
                 f"--token={project['owner_token']}"]) == 0
    capsys.readouterr()
    assert main(["closure", "verify", str(out)]) == 1
    assert "no tracker has reported" in capsys.readouterr().out


class _RecordingPool:
    """Stands in for the headless Chromium pool: records which workers `mlitb worker` opens."""

    opened: list[tuple[int, str]] = []

    def __init__(self, server_url, backend="auto", token=None, cpu_throttle=1.0, volunteer=None):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def open(self, project, role):
        self.opened.append((project, role))

    def wait(self, seconds):
        pass

    def statuses(self):
        return []


def test_mlitb_worker_adds_a_tracker_by_default_only_where_the_project_has_none(server, monkeypatch, capsys):
    from websockets.sync.client import connect

    from mlitb.workers import grid

    monkeypatch.setattr(grid, "BrowserPool", _RecordingPool)
    pid = httpx.post(f"{server.url}/api/projects", json={"name": "grid", "network": TINY_NETWORK}).json()["id"]
    _RecordingPool.opened = []
    assert main(["worker", "--project", str(pid), "--server", server.url, "--duration", "0"]) == 0
    assert sorted(_RecordingPool.opened) == [(pid, "tracker"), (pid, "trainer")]
    assert "1 tracker(s) (auto: the project had none)" in capsys.readouterr().out
    with connect(server.url.replace("http://", "ws://") + "/ws") as tracker:
        tracker.send(encode(MessageType.JOIN, project=pid, payload={"role": "tracker", "backend": "test"}))
        tracker.recv(timeout=5)  # WELCOME: joined
        _RecordingPool.opened = []
        assert main(["worker", "--project", str(pid), "--server", server.url, "--duration", "0"]) == 0
        assert _RecordingPool.opened == [(pid, "trainer")]
        _RecordingPool.opened = []
        assert main(["worker", "--project", str(pid), "--server", server.url, "--duration", "0",
                     "--trackers", "2", "--browsers", "0"]) == 0
        assert _RecordingPool.opened == [(pid, "tracker"), (pid, "tracker")]
