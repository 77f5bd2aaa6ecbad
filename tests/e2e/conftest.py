"""End-to-end fixtures: real headless Chromium and a built client (the `server` fixture is in tests/conftest.py)."""

from __future__ import annotations

import pytest

from mlitb.server.app import STATIC_DIR
from mlitb.workers.browser import CHROMIUM_ARGS, chromium_path


@pytest.fixture(scope="session", autouse=True)
def built_client():
    if not (STATIC_DIR / "trainer.js").is_file():
        pytest.fail(f"the browser client is not built in {STATIC_DIR}: run `npm --prefix web run build`")


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
