"""`-m "not browser"` really leaves out every test that starts Chromium: tests in tests/e2e are marked by
folder, and any other test that starts Chromium without the marker fails (tests/conftest.py). Checked on a
sandbox suite run with this repository's conftest."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

UNMARKED = '''
from mlitb.workers import browser

def test_unmarked_calls_chromium_path():
    browser.chromium_path()

def test_unmarked_swallows_the_refusal():
    try:
        browser.chromium_path()  # as code that turns every error into a status would
    except Exception:
        pass

def test_unmarked_launches_through_playwright():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        try:
            pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        except Exception:
            pass

def test_unmarked_without_a_browser():
    assert 1 + 1 == 2
'''
MARKED = '''
import pytest
from mlitb.workers import browser

@pytest.mark.browser
def test_marked_may_find_chromium():
    browser.chromium_path()
'''
IN_E2E = '''
def test_in_e2e_is_marked(request):
    assert request.node.get_closest_marker("browser")
'''


def run(sandbox: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MLITB_CHROMIUM"}  # this test's own guard stays out
    env["PYTHONPATH"] = str(TESTS.parent)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
                          "-o", "markers=browser: headless Chromium", *args, str(sandbox)],
                         cwd=sandbox, env=env, capture_output=True, text=True, timeout=300)
    return out.stdout + out.stderr


def test_not_browser_deselects_every_browser_test_and_an_unmarked_one_that_starts_chromium_fails(tmp_path):
    shutil.copy(TESTS / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "e2e").mkdir()
    (tmp_path / "test_unmarked.py").write_text(UNMARKED)
    (tmp_path / "test_marked.py").write_text(MARKED)
    (tmp_path / "e2e" / "test_in_e2e.py").write_text(IN_E2E)
    fast = run(tmp_path, "-m", "not browser")
    for name in ("calls_chromium_path", "swallows_the_refusal", "launches_through_playwright"):
        assert (f"FAILED test_unmarked.py::test_unmarked_{name}" in fast
                or f"ERROR test_unmarked.py::test_unmarked_{name}" in fast), fast
    assert "2 deselected" in fast and "PASSED test_unmarked.py::test_unmarked_without_a_browser" in fast, fast
    assert "test_marked_may_find_chromium" not in fast and "test_in_e2e_is_marked" not in fast
