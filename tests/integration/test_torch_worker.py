"""The torch worker against a real server over real sockets: mixed with a simulated trainer, a tracker, a class
learnt on the fly, a hostile parameter frame, and the on-disk example cache."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import numpy as np
import pytest
import torch

from mlitb.config import Settings
from mlitb.model import PAPER_NETWORK
from mlitb.protocol import MessageType, encode
from mlitb.server.run import BackgroundServer
from mlitb.workers.native.client import NativeWorker, Options
from mlitb.workers.sim_fleet import Fleet, FleetSpec
from tests.helpers import serve_process, wait_for

torch.set_num_threads(1)
PERIOD = 1.0


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    settings = Settings(port=0, data_dir=tmp_path_factory.mktemp("data"), trainer_capacity=2000)
    with BackgroundServer(settings) as s:
        yield s


@pytest.fixture(scope="module")
def srv_process(tmp_path_factory):
    """A `mlitb serve` of its own: work times and latencies measured without sharing this process's GIL."""
    with serve_process(tmp_path_factory.mktemp("served"), "--trainer-capacity", "2000") as served:
        yield served


def _project(srv, **hyper) -> dict:
    body = {"name": "torch", "dataset": "mnist", "network": PAPER_NETWORK,
            "hyper": {"period_s": PERIOD, "learning_rate": 0.05, **hyper}}
    r = httpx.post(f"{srv.url}/api/projects", json=body)
    assert r.status_code == 201, r.text
    return r.json()


@contextlib.asynccontextmanager
async def _running(srv, project: dict, tmp_path):
    """One torch trainer of `project` on its own task for the length of the block; its task must end cleanly."""
    stop = asyncio.Event()
    worker = NativeWorker(Options(srv.url, project["id"], "trainer", cache_dir=tmp_path))
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await task


def _runtime(srv, pid):
    return srv.server.config.app.state.registry.get(pid)


async def test_a_torch_and_a_simulated_trainer_share_a_project_each_working_to_its_own_measured_rate(srv_process,
                                                                                                   tmp_path):
    srv = srv_process
    p = _project(srv)
    stop = asyncio.Event()
    worker = NativeWorker(Options(srv.url, p["id"], "trainer", cache_dir=tmp_path))
    fleet = Fleet(FleetSpec(srv.url, p["id"], p["param_count"], clients=1, speed=50.0, latency_ms=(5, 5),
                            period_s=PERIOD))
    tasks = [asyncio.create_task(worker.run(stop))]
    await fleet.start()
    try:
        await wait_for(lambda: len(httpx.get(f"{srv.url}/api/projects/{p['id']}/metrics").json()) >= 14, 90, "14 rounds")
        clients = httpx.get(f"{srv.url}/api/projects/{p['id']}/clients").json()
    finally:
        stop.set()
        await fleet.stop()
        await asyncio.gather(*tasks)
    trainers = {c["backend"].split(" ")[0]: c for c in clients if c["role"] == "trainer"}
    native, sim = trainers["torch-cpu"], trainers["simulated"]
    # data: balanced shares of the capacity, none starved
    assert native["allocated"] == sim["allocated"] == 2000
    # work: each trainer's rate and timing are measured and set its own work time (mlitb/master/scheduler.py):
    # the slow simulated trainer finishes whole 640 ms batches (32 samples at 50 samples/s) and so is given far
    # less of the period than the torch trainer, which cuts its last batch to fit and overshoots by milliseconds
    assert native["samples_per_s"] > 2 * sim["samples_per_s"]
    assert 35 <= sim["samples_per_s"] <= 65
    assert sim["work_ms"] <= 1000 - 300
    assert native["work_ms"] >= 0.6 * PERIOD * 1000
    assert native["work_ms"] > sim["work_ms"] + 200
    rows = httpx.get(f"{srv.url}/api/projects/{p['id']}/metrics").json()[4:]  # after the first rates are measured
    # both answer nearly every round (on a loaded machine an answer may still miss its deadline now and then)
    assert sum(r["contributions"] for r in rows) >= 1.4 * len(rows)
    assert sum(r["late"] for r in rows) <= max(1, len(rows) // 3)
    assert worker.fatal is None and not [e for e in worker.status.errors if "STALE" not in e]


async def test_a_torch_tracker_evaluates_the_newest_parameters_on_the_test_set_and_reports_the_error(srv, tmp_path):
    p = _project(srv)
    stop = asyncio.Event()
    trainer = NativeWorker(Options(srv.url, p["id"], "trainer", cache_dir=tmp_path))
    tracker = NativeWorker(Options(srv.url, p["id"], "tracker", eval_interval_s=2.0))
    tasks = [asyncio.create_task(w.run(stop)) for w in (trainer, tracker)]
    try:
        await wait_for(lambda: any(r.get("test_error") is not None for r in
                                 httpx.get(f"{srv.url}/api/projects/{p['id']}/metrics").json()), 60,
                     "a test error in the metrics")
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert tracker.status.allocated == tracker.status.downloaded == 10_000  # the whole MNIST test set
    assert 0.0 <= tracker.status.test_error <= 1.0
    row = next(r for r in httpx.get(f"{srv.url}/api/projects/{p['id']}/metrics").json() if r["test_error"] is not None)
    assert row["test_error"] == pytest.approx(tracker.status.test_error, abs=0.5)
    assert tracker.fatal is None and not tracker.status.errors


async def test_a_wrong_sized_parameter_frame_is_reported_and_the_worker_reconnects_and_trains_on(srv, tmp_path):
    p = _project(srv)
    async with _running(srv, p, tmp_path) as worker:
        await wait_for(lambda: worker.status.samples, 60, "a first gradient")
        rt = _runtime(srv, p["id"])
        client = next(c for c in rt.clients.values() if c.role == "trainer")
        bad = encode(MessageType.PARAMS, project=p["id"], round=rt.round, count=5, payload=np.ones(5, np.float32))
        client.link.writer.get_loop().call_soon_threadsafe(client.link.send, bad)
        await wait_for(lambda: worker.status.connections >= 2, 30, "a reconnect")
        assert any("has 5 values" in e and "31786" in e for e in worker.status.errors), worker.status.errors
        answered = worker.status.round
        await wait_for(lambda: (worker.status.round or 0) > answered + 1 and worker.status.state != "connecting", 30,
                     "training after the reconnect")
    assert worker.fatal is None


async def test_a_torch_trainer_takes_a_class_learnt_on_the_fly_and_its_gradients_fit_the_grown_model(srv, tmp_path):
    import io

    from PIL import Image

    p = _project(srv)
    async with _running(srv, p, tmp_path) as worker:
        await wait_for(lambda: worker.status.samples, 60, "a first gradient")
        png = io.BytesIO()
        Image.fromarray(np.full((28, 28), 200, np.uint8)).save(png, "PNG")
        r = httpx.post(f"{srv.url}/api/projects/{p['id']}/examples", params={"label": "square"},
                       content=png.getvalue(), headers={"Authorization": f"Bearer {p['owner_token']}",
                                                        "Content-Type": "image/png"})
        assert r.status_code in (200, 201), r.text
        await wait_for(lambda: worker.engine is not None and worker.engine.num_classes == 11, 30, "the grown model")
        grown = worker.engine.param_count
        assert grown == p["param_count"] + 16 * 14 * 14 + 1
        rows_before = len(httpx.get(f"{srv.url}/api/projects/{p['id']}/metrics").json())
        await wait_for(lambda: any(r["classes"] == 11 and r["contributions"] == 1 for r in
                                 httpx.get(f"{srv.url}/api/projects/{p['id']}/metrics").json()[rows_before:]),
                     30, "a gradient of the grown model")
        # the new example is held: its ALLOC comes with the grown model, and the worker trains on what it holds
        # while it downloads it, so the grown model's first gradients may come before it (a race, not a rule)
        await wait_for(lambda: worker.held is not None and 10 in set(worker.held.labels.tolist()), 30,
                       "the new example held")
    assert worker.fatal is None


async def test_examples_are_cached_on_disk_so_a_restarted_worker_downloads_none_again(srv, tmp_path):
    p = _project(srv)
    for attempt in range(2):
        async with _running(srv, p, tmp_path) as worker:
            await wait_for(lambda: worker.status.downloaded == 2000, 60, "the allocation")
        assert worker.status.from_cache == (0 if attempt == 0 else 2000)
    assert len(list(tmp_path.rglob("*.bin"))) == 1  # one run of 2,000 ids


async def test_in_deterministic_rounds_a_torch_trainer_sums_exactly_the_examples_the_master_names(srv, tmp_path):
    p = _project(srv, deterministic=True, samples_per_round=48)
    async with _running(srv, p, tmp_path) as worker:
        await wait_for(lambda: sum(r["contributions"] for r in
                                 httpx.get(f"{srv.url}/api/projects/{p['id']}/metrics").json()) >= 3, 60,
                     "three deterministic gradients")
    rows = [r for r in httpx.get(f"{srv.url}/api/projects/{p['id']}/metrics").json() if r["contributions"]]
    assert all(r["samples"] == 48 for r in rows), rows
    assert worker.status.samples == 48


async def test_a_torch_trainer_follows_shadow_deltas_and_refuses_local_sgd_rounds(srv, tmp_path):
    p = _project(srv, download_codec="delta_q4", upload_codec="topk_q8")
    async with _running(srv, p, tmp_path) as worker:
        await wait_for(lambda: len([m for m in httpx.get(f"{srv.url}/api/projects/{p['id']}/metrics").json()
                                  if m["samples"] > 0]) >= 5, 90, "5 trained rounds")
    rt = _runtime(srv, p["id"])
    sent = rt.record.params_of(worker.downlink.round)  # what the master broadcast (its shadow) that round
    assert worker.downlink.round >= 4 and np.array_equal(worker.downlink.params, sent)
    local = _project(srv, algorithm="local_sgd")
    refused = NativeWorker(Options(srv.url, local["id"], "trainer", cache_dir=tmp_path))
    await asyncio.wait_for(refused.run(asyncio.Event()), 30)
    assert refused.fatal is not None and "local_sgd" in refused.fatal


async def test_a_second_torch_trainer_from_one_address_shows_proof_of_work_and_joins(tmp_path):
    settings = Settings(port=0, data_dir=tmp_path / "data", trainer_capacity=2000, address_limits_exempt=())
    with BackgroundServer(settings) as srv:  # loopback is exempt by default: here it pays like any address
        await _two_trainers_from_one_address(srv, tmp_path)


async def _two_trainers_from_one_address(srv, tmp_path):
    p = _project(srv)
    stop = asyncio.Event()
    workers = [NativeWorker(Options(srv.url, p["id"], "trainer", cache_dir=tmp_path)) for _ in range(2)]
    tasks = []
    try:
        for w in workers:  # one after the other: the second is asked for work (6 bits) by the master
            tasks.append(asyncio.create_task(w.run(stop)))
            await wait_for(lambda: w.status.client_id is not None, 60, "a WELCOME")
        await wait_for(lambda: all(w.status.samples for w in workers), 60, "gradients from both")
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert not [e for w in workers for e in w.status.errors if "POW" in e]
