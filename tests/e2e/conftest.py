"""End-to-end fixtures: a real server on a free loopback port and real headless Chromium."""

from __future__ import annotations

import pytest

from mlitb.config import Settings
from mlitb.server.app import STATIC_DIR
from mlitb.server.run import BackgroundServer
from mlitb.workers.browser import CHROMIUM_ARGS, chromium_path


@pytest.fixture(scope="session", autouse=True)
def built_client():
    if not (STATIC_DIR / "trainer.js").is_file():
        pytest.fail(f"the browser client is not built in {STATIC_DIR}: run `npm --prefix web run build`")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with BackgroundServer(Settings(port=0, data_dir=tmp_path_factory.mktemp("data"))) as srv:
        yield srv


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
