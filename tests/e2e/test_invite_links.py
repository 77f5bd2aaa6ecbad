"""Invite links keep their token out of the server's logs in a real browser: the token travels in the link's
fragment (never sent), an older `?token=` link is moved into the fragment, and the page still reads the
private project with it (as a bearer header)."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import TINY_NETWORK, serve_process

pytestmark = pytest.mark.browser


def test_invite_links_work_from_the_fragment_and_never_put_the_token_in_the_servers_log(tmp_path, chromium):
    with serve_process(tmp_path, log_level="info", capture=True) as served:
        url = served.url
        p = httpx.post(f"{url}/api/projects", json={"name": "secret", "network": TINY_NETWORK, "private": True}).json()
        secret = p["invite_token"]
        page = chromium.new_page()
        page_url = f"{url}/?project={p['id']}&join=tracker"
        for link in (f"{page_url}#token={secret}", f"{page_url}&token={secret}"):
            with page.expect_response(lambda r: f"/api/projects/{p['id']}/metrics" in r.url and r.status == 200,
                                      timeout=30_000) as read:
                page.goto(link)
            assert secret not in read.value.url  # the page sends the token as a header
            assert page.evaluate("location.search") == f"?project={p['id']}&join=tracker"
            assert page.evaluate("location.hash") == f"#token={secret}"
        page.close()
        out = served.stop()
    assert f"/?project={p['id']}&join=tracker&token=REDACTED" in out and secret not in out
