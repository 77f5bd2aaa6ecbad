"""`mlitb worker --engine torch`: joins and reports per round; exits non-zero, saying why, without PyTorch, without
CUDA for --device cuda, and for a network it cannot build."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import httpx
import pytest
import torch

from mlitb.model import PAPER_NETWORK
from mlitb.workers.native.run import run_native_workers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def project(server):
    r = httpx.post(f"{server.url}/api/projects", json={"name": "cli", "dataset": "mnist", "network": PAPER_NETWORK,
                                                       "hyper": {"period_s": 1}})
    assert r.status_code == 201, r.text
    return r.json()


def test_without_torch_the_torch_engine_exits_non_zero_with_the_install_command():
    code = ("import sys; sys.modules['torch'] = None; from mlitb.cli import main; "
            "sys.exit(main(['worker', '--engine', 'torch', '--project', '1', '--server', 'http://127.0.0.1:9']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "pip install" in r.stderr and "torch" in r.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_a_gpu_exits_non_zero_saying_so(server, project, capsys):
    assert run_native_workers(server.url, project["id"], device="cuda", duration_s=5) == 2
    assert "no usable CUDA device" in capsys.readouterr().err


def test_a_torch_trainer_and_tracker_join_and_print_one_line_per_round(server, project, tmp_path):
    out = io.StringIO()
    rc = run_native_workers(server.url, project["id"], trainers=1, trackers=1, threads=1, duration_s=12,
                            cache_dir=str(tmp_path), out=out)
    text = out.getvalue()
    assert rc == 0, text
    assert "1 torch trainer(s) and 1 tracker(s) on cpu" in text
    rounds = [line for line in text.splitlines() if line.startswith("round ")]
    assert len(rounds) >= 3 and "trainer torch-cpu (1 thread)" in rounds[-1]
    clients = httpx.get(f"{server.url}/api/projects/{project['id']}/metrics").json()
    assert sum(m["contributions"] for m in clients) >= 3


def test_a_network_the_engine_cannot_build_ends_the_worker_with_an_error_naming_the_layer(server, project, monkeypatch,
                                                                                             capsys):
    import mlitb.server.app as app

    real = app.model_json

    def with_unknown_layer(net, name):
        doc = real(net, name)
        doc["modelTopology"]["config"]["layers"].insert(1, {"class_name": "LayerNormalization",
                                                            "config": {"name": "ln_2"}})
        return doc

    monkeypatch.setattr(app, "model_json", with_unknown_layer)
    assert run_native_workers(server.url, project["id"], threads=1, duration_s=30) == 1
    assert "cannot build layer 2 (LayerNormalization 'ln_2')" in capsys.readouterr().err


def _children(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (from /proc: Linux)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def test_a_terminated_torch_worker_stops_its_trainer_processes_instead_of_orphaning_them(server, project, tmp_path):
    worker = subprocess.Popen([sys.executable, "-m", "mlitb.cli", "worker", "--engine", "torch", "--server", server.url,
                               "--project", str(project["id"]), "--trainers", "2", "--trackers", "0", "--threads", "1",
                               "--cache-dir", str(tmp_path)], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                              stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout.readline().startswith("joining project")
        line = worker.stdout.readline()  # the first round's status line: the trainer processes run
        assert line.startswith("round "), line
        children = [c for c in _children(worker.pid) if os.path.exists(f"/proc/{c}")]
        assert len(children) >= 2, children  # spawn's resource tracker may be one more
    finally:
        worker.terminate()
        rc = worker.wait(30)
    assert rc == 0
    # spawn's resource tracker leaves when it reads the end of its pipe, a moment after the worker: poll a little
    deadline = time.monotonic() + 10
    while (alive := [c for c in children if "zombie" not in _state(c)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive, [_cmdline(c) for c in alive]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read().replace("\0", " ")[:200]
    except OSError:
        return f"{pid} (gone)"


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((line for line in f if line.startswith("State:")), "").lower()
    except OSError:
        return "zombie"  # gone meanwhile
