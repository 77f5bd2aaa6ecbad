"""Every layer type trains on TF.js WebGPU: kernel and whole-network gradients against the cpu backend.

Runs wherever Chromium exposes a hardware WebGPU adapter and skips cleanly elsewhere, with the reason. This
machine has no GPU: headless Chromium reports no adapter, and with --enable-unsafe-webgpu only SwiftShader's
fallback adapter, which returns zeros here; the backend choice refuses it ("wrong results").
"""

from __future__ import annotations

import pytest
from playwright.sync_api import sync_playwright

from static_server import STATIC_DIR, StaticServer

pytestmark = pytest.mark.browser

GPU_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--ignore-gpu-blocklist"]


@pytest.fixture(scope="module")
def webgpu_result() -> dict:
    if not (STATIC_DIR / "selftest_worker.js").exists():
        pytest.fail("mlitb/static is not built: run `cd web && npm install && npm run build`")
    with StaticServer() as site, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=GPU_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(600_000)
            page.goto(site.url("/static/selftest.html?check=webgpu&ms=3000"))
            result = page.evaluate("window.selftest")
        finally:
            browser.close()
    if "skipped" in result:
        pytest.skip(f"no usable hardware WebGPU adapter here: {result['skipped']}")
    return result


def test_webgpu_conv_pool_and_dense_gradients_match_the_cpu_backend(webgpu_result):
    failed = [c for c in webgpu_result["checks"] if not c["pass"]]
    assert failed == [], failed
    names = {c["name"] for c in webgpu_result["checks"]}
    assert {"gradient: paper", "gradient: cifar"} <= names
    assert any(n.startswith("Conv2DBackpropFilter") for n in names) and any(n.startswith("MaxPoolGrad") for n in names)


def test_webgpu_trains_both_networks(webgpu_result):
    rates = webgpu_result["samplesPerSec"]
    print(f"WebGPU ({webgpu_result['backend']['detail']}): {rates}")
    assert rates["paper"] > 0 and rates["cifar"] > 0
