"""PATCH /api/projects/{id}/hyper changes exactly the fields it carries, and what it stores survives a restart."""

import httpx

from mlitb.config import Settings
from mlitb.server.run import BackgroundServer
from tests.helpers import TINY_NETWORK


def _hyper(url: str, pid: int) -> dict:
    return httpx.get(f"{url}/api/projects/{pid}").json()["hyper"]


def test_a_patch_changes_only_the_fields_it_carries_and_the_result_survives_a_restart(tmp_path):
    settings = Settings(port=0, data_dir=tmp_path)
    with BackgroundServer(settings) as srv:
        body = httpx.post(f"{srv.url}/api/projects", json={
            "name": "p", "network": TINY_NETWORK, "hyper": {"period_s": 10, "learning_rate": 0.2, "l2": 0.001}}).json()
        pid, auth = body["id"], {"Authorization": f"Bearer {body['owner_token']}"}
        res = httpx.patch(f"{srv.url}/api/projects/{pid}/hyper", json={"learning_rate": 0.3}, headers=auth)
        assert res.status_code == 200
        assert res.json()["hyper"]["period_s"] == 10 and res.json()["hyper"]["learning_rate"] == 0.3
        res = httpx.patch(f"{srv.url}/api/projects/{pid}/hyper", json={"period_s": 5}, headers=auth)
        assert res.json()["hyper"]["learning_rate"] == 0.3 and res.json()["hyper"]["period_s"] == 5
        hyper = _hyper(srv.url, pid)
        assert (hyper["period_s"], hyper["learning_rate"], hyper["l2"]) == (5, 0.3, 0.001)
        # an empty patch changes nothing; an explicit null is refused, never read as "back to the default"
        assert httpx.patch(f"{srv.url}/api/projects/{pid}/hyper", json={}, headers=auth).json()["hyper"] == hyper
        res = httpx.patch(f"{srv.url}/api/projects/{pid}/hyper", json={"learning_rate": None}, headers=auth)
        assert res.status_code == 422 and res.json()["code"] == "INVALID_HYPER"
        assert _hyper(srv.url, pid) == hyper
    with BackgroundServer(Settings(port=0, data_dir=tmp_path)) as srv:
        assert _hyper(srv.url, pid) == hyper


def test_the_openapi_patch_body_shows_no_defaults_that_a_client_could_take_for_resets(server):
    schema = httpx.get(f"{server.url}/openapi.json").json()
    body = schema["paths"]["/api/projects/{project_id}/hyper"]["patch"]["requestBody"]["content"]["application/json"]
    props = body["schema"]["properties"]
    assert set(props) == {"learning_rate", "period_s"}
    assert all("default" not in p for p in props.values())
    # the limits are still those of the project's hyper-parameters
    lr = next(s for s in props["learning_rate"].get("anyOf", [props["learning_rate"]]) if s.get("type") == "number")
    assert lr.get("exclusiveMinimum") == 0 and lr.get("maximum") == 10
