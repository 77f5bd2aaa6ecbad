"""`mlitb worker` and `mlitb demo` end to end, in real headless Chromium (short runs)."""

import io
import json
import re

import httpx

from mlitb.demo import METRIC_KEYS, run_demo
from mlitb.model import PAPER_NETWORK
from mlitb.workers.grid import run_grid_workers


def test_grid_worker_joins_a_project_and_prints_a_status_line_per_round(server):
    pid = httpx.post(f"{server.url}/api/projects", json={"name": "grid", "dataset": "mnist", "network": PAPER_NETWORK,
                                                         "hyper": {"period_s": 1}}).json()["id"]
    out = io.StringIO()
    assert run_grid_workers(server.url, pid, trainers=1, duration_s=20, out=out) == 0
    lines = [l for l in out.getvalue().splitlines() if l.startswith("round ")]
    assert len(lines) >= 3, out.getvalue()
    assert "trainer wasm" in lines[-1] and "samples/s" in lines[-1]
    assert any(m["samples"] > 0 for m in httpx.get(f"{server.url}/api/projects/{pid}/metrics").json())


def test_a_grid_worker_with_the_invite_token_trains_a_private_project(server):
    p = httpx.post(f"{server.url}/api/projects", json={"name": "private", "dataset": "mnist", "network": PAPER_NETWORK,
                                                       "private": True, "hyper": {"period_s": 1}}).json()
    out = io.StringIO()
    assert run_grid_workers(server.url, p["id"], trainers=1, duration_s=12, token=p["invite_token"], out=out) == 0
    metrics = httpx.get(f"{server.url}/api/projects/{p['id']}/metrics", params={"token": p["invite_token"]}).json()
    assert any(m["samples"] > 0 for m in metrics), out.getvalue()


def test_grid_worker_refuses_an_unknown_project(server, capsys):
    assert run_grid_workers(server.url, 9999, trainers=1, duration_s=1) == 2
    assert "no project 9999" in capsys.readouterr().err


def test_demo_trains_and_writes_one_json_object_per_round(tmp_path):
    path = tmp_path / "rounds.jsonl"
    out = io.StringIO()
    assert run_demo(workers=1, duration_s=12, port=0, metrics_out=str(path), period_s=1, out=out) == 0
    rows = [json.loads(l) for l in path.read_text().splitlines()]
    assert len(rows) >= 5
    assert all(set(r) == set(METRIC_KEYS) for r in rows)
    assert [r["round"] for r in rows] == sorted(r["round"] for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"]
    text = out.getvalue()
    assert "http://127.0.0.1:" in text and "Join as trainer" in text and "done:" in text
    assert re.search(r"Owner token of project \d+: (\S+)\n  as the owner: http://127.0.0.1:\d+/\?project=\d+#owner=\1", text)
