"""The browser compute core trains the paper's network on TF.js wasm in a real headless Chromium Web Worker.

Each test loads /static/selftest.html?check=... (web/src/selftest) from a cross-origin-isolated
static server and reads window.selftest. Needs `cd web && npm run build` first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from static_server import STATIC_DIR, StaticServer

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def static_site() -> Iterator[StaticServer]:
    if not (STATIC_DIR / "selftest_worker.js").exists():
        pytest.fail("mlitb/static is not built: run `cd web && npm install && npm run build`")
    with StaticServer() as s:
        yield s


@pytest.fixture(scope="module")
def selftest_browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def selftest(static_site: StaticServer, selftest_browser: Browser):
    def run(query: str, timeout_s: float = 120) -> dict:
        page = selftest_browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.set_default_timeout(timeout_s * 1000)
            page.goto(static_site.url(f"/static/selftest.html?{query}"))
            result = page.evaluate("window.selftest")
        finally:
            page.close()
        assert not errors, errors
        return result

    return run


@pytest.fixture(scope="module", params=["relaxed SIMD", "SIMD"])
def kernel_checks(selftest, request) -> dict[str, dict]:
    # our own filter-gradient kernel (web/assembly) in both builds: Chromium has relaxed SIMD, so the plain
    # build is asked for by name (?own=simd)
    result = selftest("check=kernels" + ("&own=simd" if request.param == "SIMD" else ""))
    assert f"own kernels: {request.param}" in result["backend"]["detail"], result["backend"]["detail"]
    return {c["name"]: c for c in result["checks"]}


def _failures(checks: dict[str, dict], prefix: str) -> list[dict]:
    picked = [c for name, c in checks.items() if name.startswith(prefix)]
    assert picked, f"no check named {prefix!r}"
    return [c for c in picked if not c["pass"]]


@pytest.mark.parametrize("kernel", ["Conv2D", "Conv2DBackpropFilter", "Conv2DBackpropInput"])
def test_wasm_conv_kernels_match_cpu_backend_to_float32_tolerance(kernel_checks, kernel):
    mine = [n for n in kernel_checks if n.startswith(f"{kernel} ")]  # "Conv2D " is the forward kernel only
    assert f"{kernel} x[8,28,28,1] f[5,5,1,16] s1 same" in kernel_checks  # the paper's layer
    # the CIFAR-size network's layers: 3x3, 32-64 channels, stride 1 and 2
    for shape in ("x[4,32,32,32] f[3,3,32,32] s1 same", "x[4,16,16,64] f[3,3,64,64] s1 same",
                  "x[4,16,16,32] f[3,3,32,64] s2 same", "x[4,15,15,64] f[3,3,64,64] s2 valid",
                  # Winograd's partial 2x2 blocks (odd output sizes) in the forward and the input gradient
                  "x[3,7,9,8] f[3,3,8,12] s1 same", "x[2,10,11,4] f[3,3,4,8] s1 valid"):
        assert f"{kernel} {shape}" in kernel_checks
    assert [n for n in mine if not kernel_checks[n]["pass"]] == []
    # strides 1, 2, 3, (2, 1) and (3, 2), valid and same padding, kernels 1..5, several channels in and out
    # (output channels not a multiple of 4 take TF.js's XNNPACK convolutions, or the composed filter gradient)
    assert len(mine) >= 14
    assert max(kernel_checks[n]["maxRel"] for n in mine) < 1e-4


def test_wasm_max_pool_gradient_matches_cpu_backend_and_gives_ties_to_the_first_maximum(kernel_checks):
    assert _failures(kernel_checks, "MaxPoolGrad") == []
    assert any(n.endswith("ties") for n in kernel_checks if n.startswith("MaxPoolGrad"))


def test_wasm_transposed_matmul_and_bias_sum_match_cpu_backend(kernel_checks):
    assert _failures(kernel_checks, "BatchMatMul") == []
    assert _failures(kernel_checks, "Sum") == []


def test_paper_network_gradient_on_wasm_matches_cpu_backend(kernel_checks):
    assert _failures(kernel_checks, "gradient: paper") == []
    assert _failures(kernel_checks, "loss: paper") == []


def test_other_conv_networks_gradients_on_wasm_match_cpu_backend(kernel_checks):
    others = [n for n in kernel_checks if n.startswith("gradient: ") and n != "gradient: paper"]
    assert "gradient: cifar" in others and len(others) >= 4
    for name in others:
        assert kernel_checks[name]["pass"], kernel_checks[name]


def test_paper_network_trains_on_wasm_without_missing_kernels(selftest):
    r = selftest("check=train&backend=wasm&rounds=8&ms=300")
    assert r["backend"]["name"] == "wasm"
    rounds = r["rounds"]
    assert all(x["samples"] >= 1 for x in rounds)  # a round stops at its work time, not after a whole batch
    assert rounds[-1]["meanLoss"] < 0.25 * rounds[0]["meanLoss"]
    assert r["after"]["error"] < r["before"]["error"]
    assert r["after"]["error"] < 0.2
    assert r["predictSums"] == pytest.approx([1.0] * 4, abs=1e-4)


def test_gradient_rounds_keep_the_live_tensor_count_flat(selftest):
    r = selftest("check=train&backend=wasm&rounds=6&ms=100")
    counts = {x["numTensors"] for x in r["rounds"]}
    assert len(counts) == 1, r["rounds"]


def test_software_webgl_loses_to_wasm(selftest):
    r = selftest("check=backend")
    choice = r["backend"]
    assert choice["name"] == "wasm"
    assert choice["software"] is False
    # headless Chromium's WebGL is SwiftShader (or absent): the reason is reported
    webgl = next(part for part in choice["detail"].split("; ") if part.startswith("webgl:"))
    assert "loses to wasm" in webgl or "no context" in webgl
    assert "wasm: chosen (SIMD" in choice["detail"] or "wasm: chosen (threaded SIMD" in choice["detail"]


def test_forced_software_webgl_is_reported_as_software(selftest):
    choice = selftest("check=backend&backend=webgl")["backend"]
    if choice["name"] == "webgl":
        assert choice["software"] is True


def test_wasm_threaded_build_initialises_in_a_worker_under_cross_origin_isolation(selftest):
    r = selftest("check=backend&backend=wasm&threads=2")
    assert r["crossOriginIsolated"] is True
    assert r["backend"]["name"] == "wasm"
    assert "threaded SIMD build" in r["backend"]["detail"]
    # whether XNNPACK's pool really runs is reported: a pool of n threads runs n - 1 pthread workers. Measured
    # here (2 cores, trainer in a Web Worker): 2 threads asked, 1 thread and 0 pthread workers run (issue 14).
    m = re.search(r"(\d+) thread\(s\) \((\d+) pthread worker\(s\) running\)", r["backend"]["detail"])
    assert m and int(m.group(2)) == int(m.group(1)) - 1, r["backend"]["detail"]


def test_wasm_trains_the_paper_network_much_faster_than_the_cpu_backend(selftest):
    wasm = selftest("check=throughput&backend=wasm&seconds=3&batch=32")
    cpu = selftest("check=throughput&backend=cpu&seconds=3&batch=32&window=1500")
    w, c = wasm["results"][0], cpu["results"][0]
    assert w["leakedTensors"] == 0 and c["leakedTensors"] == 0
    assert w["samplesPerSec"] > 5 * c["samplesPerSec"], (w, c)


def test_gradient_computer_loads_artifacts_and_rejects_a_wrong_parameter_count(selftest):
    r = selftest("check=artifacts")
    assert r["paramCount"] == 31786
    assert r["numClasses"] == 10
    assert r["same"]["pass"] and r["same"]["maxAbs"] == 0
    assert "31786" in r["wrongLength"]


@pytest.mark.parametrize("network,rounds", [("paper", 60), ("cifar", 30)])
def test_a_long_run_of_rounds_keeps_tensors_their_bytes_and_the_wasm_heap_flat(selftest, network, rounds):
    # new parameters every round and a last sub-batch that shrinks to fit its work time: varied batch shapes
    r = selftest(f"check=memory&backend=wasm&network={network}&rounds={rounds}&ms=60", timeout_s=300)
    rows = r["rounds"]
    assert len(rows) == rounds and all(x["samples"] >= 1 for x in rows)
    assert len({x["samples"] for x in rows}) > 1  # the shapes did vary
    assert {x["numTensors"] for x in rows} == {rows[0]["numTensors"]}, rows
    assert {x["numBytes"] for x in rows} == {rows[0]["numBytes"]}, rows
    # the heap grows to the largest batch once (the wasm memory never shrinks), then stays
    assert rows[-1]["heapBytes"] == rows[len(rows) // 2]["heapBytes"], [x["heapBytes"] for x in rows]
