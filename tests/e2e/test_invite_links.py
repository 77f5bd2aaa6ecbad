"""Invite links keep their token out of the server's logs in a real browser: the token travels in the link's
fragment (never sent), an older `?token=` link is moved into the fragment, and the page still reads the
private project with it (as a bearer header)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.helpers import TINY_NETWORK

pytestmark = pytest.mark.browser


def test_invite_links_work_from_the_fragment_and_never_put_the_token_in_the_servers_log(tmp_path, chromium):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "mlitb.cli", "serve", "--port", str(port), "--data-dir",
                             str(tmp_path), "--log-level", "info"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/projects", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
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
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert f"/?project={p['id']}&join=tracker&token=REDACTED" in out and secret not in out
