"""Simulated trainers over real WebSockets against a real server: hundreds of clients in CI time,
the `mlitb simulate` command, and the metrics the server keeps per round (REST and Prometheus)."""

import asyncio
import json
import re
import time

import httpx
import pytest
import websockets

from mlitb.cli import main
from mlitb.model import PAPER_NETWORK
from mlitb.protocol import MessageType, decode, encode
from mlitb.workers.simulate import METRIC_KEYS, Fleet, FleetSpec, dense_network, parse_range

CLIENTS = 200
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
# a value is a number, or NaN where nothing is measured now (the text format's own spelling)
PROM_LINE = re.compile(rf'^(# (HELP|TYPE) {NAME} .+|{NAME}(\{{project="\d+"\}})? (-?[0-9.]+(e[+-]?[0-9]+)?|NaN))$')


def create(server, network, period_s=1):
    # the streaming mean: these tests time the round loop at its deadline with 200 trainers; the robust default
    # adds its reduce (~0.1 s at 200 x 31,786 here) after the deadline, which bench/hostile.py measures
    r = httpx.post(f"{server.url}/api/projects", json={"name": "sim", "network": network,
                                                       "hyper": {"period_s": period_s, "aggregation": "mean"}})
    assert r.status_code == 201, r.text
    return r.json()


async def wait_for(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_200_simulated_trainers_over_real_websockets_finish_every_round_and_a_silent_one_holds_none(server):
    project = create(server, PAPER_NETWORK)
    pid, P = project["id"], project["param_count"]
    fleet = Fleet(FleetSpec(server.url, pid, P, CLIENTS, speed=20_000, speed_spread=4, latency_ms=(5, 40), period_s=1))
    ws_url = server.url.replace("http://", "ws://") + "/ws"
    async with websockets.connect(ws_url, max_size=None) as silent:  # joins as a trainer and never answers
        await silent.send(encode(MessageType.JOIN, project=pid, payload={"role": "trainer", "backend": "silent"}))
        assert decode(await asyncio.wait_for(silent.recv(), 10), 1 << 30).type == MessageType.WELCOME
        await asyncio.wait_for(fleet.start(), 60)
        assert fleet.joined == CLIENTS and not fleet.errors
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            first = (await http.get(f"/api/projects/{pid}")).json()["round"] + 1
            records: list[dict] = []
            complete: list[dict] = []  # rounds every answering trainer finished (on an idle machine, the first)
            deadline = time.monotonic() + 120  # generous: on a loaded machine some trainers miss a round at first
            while len(complete) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                records = (await http.get(f"/api/projects/{pid}/metrics", params={"since": first})).json()
                complete = [r for r in records if r["contributions"] == CLIENTS]
            prometheus = await http.get("/metrics")
        await fleet.stop()
    assert len(complete) >= 3, [r["contributions"] for r in records]
    assert all(r["trainers"] == CLIENTS + 1 for r in records)  # the silent trainer stays a member throughout
    for r in complete[:3]:
        assert r["duration_s"] >= 0.95  # the silent trainer held the round to its deadline, which closed it
        assert r["bytes_in"] >= CLIENTS * (24 + 4 * P)  # every gradient, real-sized
        assert r["bytes_out"] >= (CLIENTS + 1) * (24 + 4 * P)  # one PARAMS frame to each
        assert 0 < r["latency_ms_mean"] <= r["latency_ms_p95"] <= r["latency_ms_max"]
        assert r["cpu_s"] > 0 and r["rejected"] == 0
    assert records[-1]["ingest_ms"] > 0  # the server's measured CPU time per gradient staggers the arrivals
    assert fleet.gradients_sent >= 3 * CLIENTS
    assert prometheus.status_code == 200 and prometheus.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = prometheus.text
    assert all(PROM_LINE.match(line) for line in text.splitlines()), [l for l in text.splitlines() if not PROM_LINE.match(l)]
    samples = float(re.search(rf'^mlitb_samples_total{{project="{pid}"}} (\S+)$', text, re.M).group(1))
    bytes_in = float(re.search(rf'^mlitb_bytes_in_total{{project="{pid}"}} (\S+)$', text, re.M).group(1))
    assert samples > 0 and bytes_in >= 3 * CLIENTS * 4 * P
    for name in ("mlitb_rounds_total", "mlitb_trainers", "mlitb_samples_per_second", "mlitb_latency_ms_mean",
                 "mlitb_loss", "mlitb_late_total", "mlitb_rejected_total", "mlitb_bytes_out_total",
                 "process_cpu_seconds_total"):
        assert f"# TYPE {name} " in text


def test_private_projects_are_left_out_of_the_prometheus_page(server):
    r = httpx.post(f"{server.url}/api/projects", json={"name": "secret", "network": dense_network(100), "private": True})
    assert r.status_code == 201
    text = httpx.get(f"{server.url}/metrics").text
    assert f'project="{r.json()["id"]}"' not in text


def test_the_simulate_command_starts_its_own_server_and_writes_one_json_object_per_round(tmp_path, capsys):
    out = tmp_path / "rounds.jsonl"
    code = main(["simulate", "--clients", "24", "--rounds", "2", "--period", "1", "--params", "5000", "--speed", "5000",
                 "--latency-ms", "5..30", "--churn", "0.05", "--processes", "2", "--metrics-out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert set(METRIC_KEYS) <= set(row)
        assert row["trainers"] > 0 and row["samples"] > 0 and row["bytes_in"] > 0 and row["server_cpu_s"] is not None
    assert "24 clients joined" in text and "power" in text


def test_latency_ranges_are_parsed_and_checked():
    assert parse_range("10..50") == (10, 50) and parse_range("20") == (20, 20)
    for bad in ("50..10", "-1..2", "a..b"):
        with pytest.raises(ValueError):
            parse_range(bad)


def test_a_dense_network_of_about_p_parameters():
    from mlitb.master.project import ProjectSpec

    for p in (1_000, 31_786, 455_000):
        n = ProjectSpec(name="x", network=dense_network(p)).build_network().param_count
        assert abs(n - p) <= 800
