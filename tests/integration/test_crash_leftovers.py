"""Crash leftovers: a `kill -9` during an upload leaves a partial file in uploads/; the next start removes it
and every other staging leftover, and keeps every valid data set and closure."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx

from mlitb.config import Settings
from mlitb.server.run import BackgroundServer
from mlitb.server.storage import Storage
from tests.helpers import digits_zip

NET = [{"type": "input", "shape": [28, 28, 1]}, {"type": "flatten"}, {"type": "dense", "units": 3, "activation": "softmax"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout_s=60.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def serve(data_dir, port) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "mlitb.cli", "serve", "--port", str(port), "--data-dir",
                             str(data_dir), "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up():
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/projects", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, what="the server to start")
    return proc


def test_a_partial_upload_left_by_kill_9_is_gone_after_a_restart_and_valid_data_stays(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = serve(tmp_path, port)
    try:
        p = httpx.post(f"{url}/api/projects", json={"name": "crash", "network": NET}).json()
        auth = {"Authorization": f"Bearer {p['owner_token']}"}
        assert httpx.put(f"{url}/api/projects/{p['id']}/data/train", content=digits_zip(4, (0, 1, 2)), timeout=60,
                         headers={**auth, "Content-Type": "application/zip"}).status_code == 200
        closure = httpx.post(f"{url}/api/projects/{p['id']}/closures", headers=auth, timeout=60).json()

        def slow_body():
            for _ in range(64):
                yield b"\0" * (1 << 20)
                time.sleep(0.05)

        def upload():
            try:
                httpx.put(f"{url}/api/projects/{p['id']}/data/train", content=slow_body(), timeout=60,
                          headers={**auth, "Content-Type": "application/zip", "Content-Length": str(64 << 20)})
            except httpx.HTTPError:
                pass  # the server dies under it

        sender = threading.Thread(target=upload, daemon=True)
        sender.start()
        uploads = tmp_path / "uploads"
        wait_for(lambda: any(f.stat().st_size >= 2 << 20 for f in uploads.glob("*")), what="a partial upload")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        sender.join(30)
        assert [f for f in uploads.glob("*") if f.stat().st_size > 0]  # the leftover the crash made
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with BackgroundServer(Settings(port=0, data_dir=tmp_path)) as srv:
        assert list(uploads.glob("*")) == []
        got = httpx.get(f"{srv.url}/api/projects/{p['id']}/data/train", params={"start": 0, "count": 12})
        assert got.status_code == 200 and len(got.content) == 12 * (1 + 784)  # the valid data set stays
        assert httpx.get(f"{srv.url}/api/closures/{closure['id']}").status_code == 200
        assert httpx.get(f"{srv.url}/api/closures/{closure['id']}/download").status_code == 200


def test_the_start_removes_every_kind_of_staging_leftover_and_nothing_valid(tmp_path):
    files = {
        "uploads/tmpa1b2.zip": True, "datasets/1/train.new/images.npy": True,
        "datasets/1/test.new.partial/images.npy": True, "datasets/7/train/images.npy": True,  # 7 no longer exists
        "closures/p1-r3-aa.zip": True, "closures/p1-r4-bb.zip.partial": True, "closures/p1-r4-bb.json.partial": True,
        "datasets/1/train/images.npy": False, "datasets/1/train/meta.json": False, "datasets/1/test/images.npy": False,
        "datasets/2/train/images.npy": False, "closures/p1-r2-cc.zip": False, "closures/p1-r2-cc.json": False,
        "mlitb.sqlite3": False,
    }
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * 10)
    Storage(Settings(data_dir=tmp_path)).clean_staging({1, 2})
    left = {name for name in files if (tmp_path / name).exists()}
    assert left == {name for name, leftover in files.items() if not leftover}
    assert not (tmp_path / "datasets" / "7").exists()


def test_a_deleted_projects_data_goes_with_it_and_a_project_reusing_its_id_starts_without_data(tmp_path):
    with BackgroundServer(Settings(port=0, data_dir=tmp_path)) as srv:
        p = httpx.post(f"{srv.url}/api/projects", json={"name": "gone", "network": NET}).json()
        auth = {"Authorization": f"Bearer {p['owner_token']}"}
        assert httpx.put(f"{srv.url}/api/projects/{p['id']}/data/train", content=digits_zip(4, (0, 1, 2)),
                         headers={**auth, "Content-Type": "application/zip"}, timeout=60).status_code == 200
        assert httpx.delete(f"{srv.url}/api/projects/{p['id']}", headers=auth).status_code == 204
        assert not (tmp_path / "datasets" / str(p["id"])).exists()
    with BackgroundServer(Settings(port=0, data_dir=tmp_path)) as srv:  # ids restart after the highest one kept
        again = httpx.post(f"{srv.url}/api/projects", json={"name": "new", "network": NET}).json()
        assert again["id"] == p["id"] and again["dataset"] is None and again["labels"] is None
