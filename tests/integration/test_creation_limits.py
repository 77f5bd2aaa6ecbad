"""Per-address creation limits over REST: a rate and a total, each just inside and just past; the admin is
exempt; forks count as creations; the total survives a restart."""

import time

import httpx

from mlitb.config import Settings
from mlitb.server.run import BackgroundServer
from tests.helpers import TINY_NETWORK

ADMIN = "admin-secret-token"
PROJECT = {"name": "p", "network": TINY_NETWORK}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def create(url, **kw):
    return httpx.post(f"{url}/api/projects", json=PROJECT, **kw)


def test_an_address_may_create_as_many_projects_as_the_window_allows_and_one_more_is_refused(tmp_path):
    settings = Settings(port=0, data_dir=tmp_path, admin_token=ADMIN, creations_per_window=3, creation_window_s=2.0)
    with BackgroundServer(settings) as srv:
        assert [create(srv.url).status_code for _ in range(3)] == [201, 201, 201]
        r = create(srv.url)
        assert r.status_code == 429 and r.json()["code"] == "CREATION_RATE_LIMITED"
        assert "at most 3" in r.json()["message"] and "try again in" in r.json()["message"]
        assert create(srv.url, headers=bearer(ADMIN)).status_code == 201  # the admin is exempt
        deadline = time.monotonic() + 30  # the window slides: the oldest creation leaves it after 2 s
        while (r := create(srv.url)).status_code == 429 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert r.status_code == 201


def test_an_address_keeps_at_most_its_total_of_projects_and_a_deleted_one_frees_a_place(tmp_path):
    settings = Settings(port=0, data_dir=tmp_path, admin_token=ADMIN, max_projects_per_address=2)
    with BackgroundServer(settings) as srv:
        a, b = create(srv.url).json(), create(srv.url).json()
        r = create(srv.url)
        assert r.status_code == 429 and r.json()["code"] == "TOO_MANY_PROJECTS"
        assert create(srv.url, headers=bearer(ADMIN)).status_code == 201  # the admin is exempt, and not counted
        assert httpx.delete(f"{srv.url}/api/projects/{a['id']}", headers=bearer(a["owner_token"])).status_code == 204
        assert create(srv.url).status_code == 201
        assert create(srv.url).json()["code"] == "TOO_MANY_PROJECTS"
    with BackgroundServer(Settings(**{**settings.__dict__, "port": 0})) as srv:  # the total survives a restart
        assert create(srv.url).json()["code"] == "TOO_MANY_PROJECTS"
        assert httpx.delete(f"{srv.url}/api/projects/{b['id']}", headers=bearer(b["owner_token"])).status_code == 204
        assert create(srv.url).status_code == 201


def test_forking_a_closure_is_a_creation_and_counts_towards_the_limits(tmp_path):
    settings = Settings(port=0, data_dir=tmp_path, max_projects_per_address=2)
    with BackgroundServer(settings) as srv:
        p = create(srv.url).json()
        saved = httpx.post(f"{srv.url}/api/projects/{p['id']}/closures", headers=bearer(p["owner_token"]), timeout=60)
        assert saved.status_code == 201, saved.text
        fork = f"{srv.url}/api/closures/{saved.json()['id']}/fork"
        assert httpx.post(fork, json={"mode": "restart"}, timeout=60).status_code == 201
        r = httpx.post(fork, json={"mode": "restart"}, timeout=60)
        assert r.status_code == 429 and r.json()["code"] == "TOO_MANY_PROJECTS"
