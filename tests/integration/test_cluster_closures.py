"""A research closure saved at a gateway is the project's, without Ray (mlitb/cluster/closures.py): the gateway's app
(the single-process routes) asks the project core for the zip, which carries the project's optimizer state and
every round's metrics (a gateway's own runtime has neither); it is read like any upload, stored in the cluster's
zoo that every gateway lists, and only the owner or the admin may save one. The saving gateway's tracker report
makes it verifiable; hostile reports and hostile bytes are refused with their error codes, and nothing is stored."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from mlitb.auth import new_token, token_hash
from mlitb.closure.format import read_closure
from mlitb.cluster.core import LocalUpstream, ProjectCore
from mlitb.cluster.gateway import GatewayRegistry, GatewayRuntime
from mlitb.cluster.ops import add_gateway_routes
from mlitb.config import Settings
from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.loop import ProjectRuntime
from mlitb.server.app import create_app
from mlitb.server.storage import tree_bytes
from tests.helpers import running, tiny_dataset
from tests.integration.test_cluster_prereduce import ScriptedLink, until
from tests.integration.test_cluster_shared import spec

ROUNDS = 3


async def trained(owner: str) -> tuple[ProjectCore, dict[str, GatewayRuntime]]:
    """A project behind two gateways after ROUNDS rounds of one trainer at g0."""
    s = spec()
    core = ProjectCore(ProjectRuntime(1, s, s.build_network(), tiny_dataset(), Settings()))
    gateways = {}
    for name in ("g0", "g1"):
        gateways[name] = GatewayRuntime(1, s, s.build_network(), tiny_dataset(), Settings(),
                                        upstream=LocalUpstream(core), gateway=name)
        gateways[name].grant(token_hash(owner), None)
    g0 = gateways["g0"]
    link = ScriptedLink(0, ROUNDS)
    link.runtime = g0
    link.cid = g0.add_client(link, "trainer", "cpu").id
    async with running(core, g0):
        await until(lambda: core.runtime.round >= ROUNDS)
    return core, gateways


def gateway_app(cluster_dir: Path, runtime: GatewayRuntime, name: str):
    """A gateway's app as GatewayActor builds it: its own data folder, the cluster's settings in its registry."""
    registry = GatewayRegistry(Settings(data_dir=cluster_dir), name, None)
    registry.projects[runtime.id] = runtime
    own = cluster_dir / "gateways" / name
    own.mkdir(parents=True)
    app = create_app(Settings(data_dir=own), registry=registry)
    add_gateway_routes(app, SimpleNamespace(name=name, url="", registry=registry, clients=lambda: 0))
    return app


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


def bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}


async def test_a_closure_saved_at_a_gateway_is_the_projects_and_every_gateway_lists_it(tmp_path):
    owner = new_token()
    core, gw = await trained(owner)
    project = core.runtime
    assert not gw["g0"].history.any(), "a gateway takes no optimizer step: its own state would be zeros"
    a, b = gateway_app(tmp_path, gw["g0"], "g0"), gateway_app(tmp_path, gw["g1"], "g1")
    async with client(a) as at_a, client(b) as at_b:
        r = await at_a.post("/api/projects/1/closures", json={"description": "through g0"}, headers=bearer(owner))
        assert r.status_code == 201, r.text
        saved = r.json()
        assert saved["id"].startswith(f"p1-r{project.round}-") and saved["rounds"] == project.round
        assert saved["description"] == "through g0" and "owner_hash" not in saved
        for at in (at_a, at_b):  # one zoo for the gateways that see the cluster's data folder
            assert [c["id"] for c in (await at.get("/api/closures")).json()] == [saved["id"]]
        raw = (await at_b.get(f"/api/closures/{saved['id']}/download")).content
    closure = read_closure(raw)  # what `mlitb closure verify` reads first
    assert (tmp_path / "closures" / f"{saved['id']}.zip").read_bytes() == raw
    # the shared zoo counts against the gateway's storage quota as its own folder does
    assert a.state.storage.server_used() - tree_bytes(tmp_path / "gateways" / "g0") >= len(raw)
    assert np.array_equal(closure.history, project.history) and closure.history.any()
    assert np.array_equal(closure.params, project.params)
    assert len(closure.metrics) == len(project.metrics) >= ROUNDS
    assert all(row.get("gateways") == 1 for row in closure.metrics if row.get("samples")), "the project's rows"
    assert closure.manifest["replay"] is None  # deterministic rounds are refused in cluster mode: no record
    assert closure.manifest["reported"] is None and "tracker" in closure.manifest["unreported"]


async def test_the_saving_gateways_tracker_report_makes_the_closure_verifiable(tmp_path):
    owner = new_token()
    core, gw = await trained(owner)
    g0 = gw["g0"]
    measured = ROUNDS - 1
    g0.record.evaluation(measured, 0.25, 10)  # what a tracker's EVAL of that round leaves at its gateway
    async with client(gateway_app(tmp_path, g0, "g0")) as at:
        r = await at.post("/api/projects/1/closures", json={}, headers=bearer(owner))
    assert r.status_code == 201 and r.json()["verifiable"], r.text
    closure = read_closure((tmp_path / "closures" / f"{r.json()['id']}.zip").read_bytes())
    reported = closure.manifest["reported"]
    assert (reported["test_error"], reported["round"], reported["count"]) == (0.25, measured, 10)
    assert np.array_equal(closure.floats(reported["weights"]), g0.record.params_of(measured))
    assert np.array_equal(closure.history, core.runtime.history)


async def test_only_the_owner_or_the_admin_saves_a_closure_at_a_gateway(tmp_path):
    owner = new_token()
    _, gw = await trained(owner)
    async with client(gateway_app(tmp_path, gw["g0"], "g0")) as at:
        anonymous = await at.post("/api/projects/1/closures", json={})
        stranger = await at.post("/api/projects/1/closures", json={}, headers=bearer(new_token()))
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "AUTH_REQUIRED"
    assert stranger.status_code == 403 and stranger.json()["code"] == "FORBIDDEN"
    assert not list((tmp_path / "closures").glob("*"))


async def test_hostile_bytes_from_the_project_side_are_refused_and_nothing_is_stored(tmp_path, monkeypatch):
    monkeypatch.setattr("mlitb.cluster.closures.MAX_UPLOAD_BYTES", 1000)
    owner = new_token()
    _, gw = await trained(owner)
    g0 = gw["g0"]
    app = gateway_app(tmp_path, g0, "g0")
    for sent, code in ((b"PK not a zip", "CLOSURE_INVALID"), ("a string", "CLOSURE_INVALID"),
                       (b"\0" * 1001, "CLOSURE_TOO_LARGE")):
        async def closure(description, evaluated, unreported, sent=sent):
            return sent
        g0.strategy.upstream = SimpleNamespace(closure=closure)
        async with client(app) as at:
            r = await at.post("/api/projects/1/closures", json={}, headers=bearer(owner))
        assert (r.status_code, r.json()["code"]) == (ErrorCode[code].http_status, code)
    assert not [p for p in (tmp_path / "closures").glob("*")]


async def test_the_project_checks_a_gateways_report_and_description_as_hostile():
    core, _ = await trained(new_token())
    n = core.runtime.param_count
    good = np.zeros(n, np.float32)
    for evaluated, code in (((1, 0.5, 3), ErrorCode.BAD_VALUE), ((ROUNDS + 5, 0.5, 3, good), ErrorCode.BAD_VALUE),
                            ((1, 1.5, 3, good), ErrorCode.BAD_VALUE), ((1, float("nan"), 3, good), ErrorCode.BAD_VALUE),
                            ((1, 0.5, 0, good), ErrorCode.BAD_VALUE), ((True, 0.5, 3, good), ErrorCode.BAD_VALUE),
                            ((1, 0.5, 3, good[:-1]), ErrorCode.WRONG_LENGTH),
                            ((1, 0.5, 3, good.astype(np.float64)), ErrorCode.WRONG_LENGTH),
                            ((1, 0.5, 3, np.full(n, np.inf, np.float32)), ErrorCode.NON_FINITE)):
        with pytest.raises(MlitbError) as err:
            await core.closure("", evaluated)
        assert err.value.code is code, evaluated[:3]
    for description, unreported in (("x" * 4001, None), (b"bytes", None), ("", "x" * 2001), ("", 7)):
        with pytest.raises(MlitbError):
            await core.closure(description, None, unreported)
    assert read_closure(await core.closure("fine", (1, 0.5, 3, good))).manifest["reported"]["round"] == 1
