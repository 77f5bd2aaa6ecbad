"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlitb.config import Settings
from mlitb.server.run import BackgroundServer
from mlitb.workers import browser as browser_module


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real server on a free loopback port with its own data folder, one per test module (a module that
    needs other settings defines its own). Every test client connects from loopback, one address, so the
    per-address connection limit is raised to the per-project worker limit (its default is tested on its own)."""
    settings = Settings(port=0, data_dir=tmp_path_factory.mktemp("data"), max_connections_per_address=4096)
    with BackgroundServer(settings) as srv:
        yield srv


# Browser tests. Every test in tests/e2e drives headless Chromium and is marked `browser` here, so
# `-m "not browser"` runs the fast suite; any other test that starts Chromium without the marker fails.
E2E_DIR = Path(__file__).resolve().parent / "e2e"
NO_CHROMIUM = "/nonexistent/chromium-needs-the-browser-marker"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if E2E_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(autouse=True)
def _browser_tests_are_marked(request, monkeypatch):
    """Outside `browser` tests Chromium cannot start: `chromium_path()` and Playwright's launch refuse, and fail
    the test even if the caller swallowed the error; in subprocesses $MLITB_CHROMIUM names no browser."""
    if request.node.get_closest_marker("browser"):
        yield
        return
    monkeypatch.setenv("MLITB_CHROMIUM", NO_CHROMIUM)
    launched: list[str] = []
    try:
        from playwright.async_api import _generated as async_api
        from playwright.sync_api import _generated as sync_api
    except ImportError:
        yield
        return

    def refuse(name):
        def launch(*args, **kwargs):
            launched.append(name)
            raise RuntimeError(f"{request.node.nodeid} starts Chromium: mark it @pytest.mark.browser")
        return launch

    for api in (sync_api, async_api):
        for name in ("launch", "launch_persistent_context"):
            monkeypatch.setattr(api.BrowserType, name, refuse(name))
    monkeypatch.setattr(browser_module, "chromium_path", refuse("chromium_path"))
    yield
    if launched:
        pytest.fail(f"{request.node.nodeid} started Chromium ({', '.join(launched)}) without the browser marker")
