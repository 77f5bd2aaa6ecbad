"""Uploading a data set from the web page: progress, then the server's report."""

import httpx

from mlitb.model import PAPER_NETWORK
from tests.helpers import digits_zip


def test_the_page_uploads_a_zip_with_the_owner_token_and_shows_the_report(server, chromium, tmp_path):
    p = httpx.post(f"{server.url}/api/projects", json={"name": "page-upload", "network": PAPER_NETWORK}).json()
    (tmp_path / "digits.zip").write_bytes(digits_zip(10))
    page = chromium.new_page()
    page.goto(server.url)
    page.fill("#upload-project", str(p["id"]))
    page.set_input_files("#upload-file", str(tmp_path / "digits.zip"))
    page.click("#upload-form button[type=submit]")
    page.wait_for_function("document.querySelector('#upload-result').textContent.includes('error') || "
                           "document.querySelector('#upload-result').className === 'error'", timeout=20_000)
    assert "AUTH_REQUIRED" in page.text_content("#upload-result")  # no token yet
    page.fill("#upload-token", p["owner_token"])
    page.click("#upload-form button[type=submit]")
    page.wait_for_function("document.querySelector('#upload-result').textContent.includes('images in')", timeout=30_000)
    assert page.text_content("#upload-result").startswith("100 images in 10 classes")
    assert page.eval_on_selector("#upload-progress", "el => el.value") == 1
    page.close()
    info = httpx.get(f"{server.url}/api/projects/{p['id']}").json()
    assert info["dataset"] is None and httpx.get(f"{server.url}/api/projects/{p['id']}/data/train",
                                                 params={"start": 0, "count": 100}).status_code == 200
