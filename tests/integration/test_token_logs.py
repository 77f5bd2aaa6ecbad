"""Tokens stay out of the server's logs: a request carrying `?token=SECRET` (REST, the page, a percent-encoded
name) leaves no SECRET in the captured access and error log of a real `mlitb serve` process."""

from __future__ import annotations

import httpx
import pytest

from mlitb.server.logs import redact
from tests.helpers import TINY_NETWORK, serve_process


@pytest.mark.parametrize("line,expected", [
    ("/api/projects/3?token=SECRET", "/api/projects/3?token=REDACTED"),
    ("/?project=3&token=SECRET&join=trainer", "/?project=3&token=REDACTED&join=trainer"),
    ("/x?invite_token=SECRET&Access_Token=SECRET", "/x?invite_token=REDACTED&Access_Token=REDACTED"),
    ("/x?%74oken=SECRET", "/x?%74oken=REDACTED"),
    ("/x?start=0&count=2", "/x?start=0&count=2"),
])
def test_token_parameters_are_redacted_and_other_parameters_kept(line, expected):
    assert redact(line) == expected


def test_a_request_with_a_token_in_its_query_leaves_no_token_in_the_servers_log(tmp_path):
    with serve_process(tmp_path, log_level="debug", capture=True) as served:
        url = served.url
        p = httpx.post(f"{url}/api/projects", json={"name": "secret", "network": TINY_NETWORK, "private": True}).json()
        secret = p["invite_token"]
        assert httpx.get(f"{url}/api/projects/{p['id']}", params={"token": secret}).status_code == 200
        assert httpx.get(f"{url}/api/projects/{p['id']}/metrics?%74oken={secret}").status_code == 200
        assert httpx.get(f"{url}/api/projects/{p['id']}/clients?token={secret}x").status_code == 403
        httpx.get(f"{url}/?project={p['id']}&token={secret}")
        out = served.stop()
    assert f"/api/projects/{p['id']}?token=REDACTED" in out  # the requests were logged ...
    assert f"/?project={p['id']}&token=REDACTED" in out
    assert secret not in out and secret[:16] not in out  # ... without the token
