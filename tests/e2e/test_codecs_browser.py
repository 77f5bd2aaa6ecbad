"""Real headless Chromium trainers train the paper network on MNIST through compressed links: top-k q8 uploads with
shadow q8 downloads, q4 downloads, and local-SGD rounds with both; the tracker's test error falls, the frames are
the sizes the codecs promise, and no trainer reports a codec error."""

from __future__ import annotations

import httpx
import pytest

from mlitb.model import PAPER_NETWORK
from tests.e2e.test_browser_training import train_and_track

P = 31786
CONFIGS = {
    "topk_q8+delta_q8": {"upload_codec": "topk_q8", "download_codec": "delta_q8"},
    "delta_q4": {"download_codec": "delta_q4"},
    "topk_q8+delta_q6z": {"upload_codec": "topk_q8", "download_codec": "delta_q6z"},
    "local_sgd+topk_q8+delta_q4": {"algorithm": "local_sgd", "inner_lr": 0.05, "outer_lr": 0.7, "outer_momentum": 0.9,
                                   "upload_codec": "topk_q8", "topk_density": 0.05, "download_codec": "delta_q4"},
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_browser_trainer_converges_on_mnist_through_the_codec(server, name):
    hyper = {"period_s": 1, "learning_rate": 0.05, **CONFIGS[name]}
    project = {"name": name, "dataset": "mnist", "network": PAPER_NETWORK, "hyper": hyper}

    def done(m):
        trained = [r for r in m if r["samples"] > 0]
        evaluated = max((r["test_error_round"] for r in trained if r["test_error"] is not None), default=-1)
        return len(trained) >= 16 and evaluated >= 12

    _, metrics, statuses = train_and_track(server.url, project, done, 240, "16 trained rounds, evaluated after 12")
    errors = [m["test_error"] for m in metrics if m["test_error"] is not None]
    losses = [m["loss"] for m in metrics if m["samples"] > 0]
    assert errors[-1] < 0.5 and errors[-1] < errors[0], (errors[-3:], losses)
    trainer = next(s for s in statuses if s["role"] == "trainer")
    assert (trainer.get("error") or "STALE_ROUND").startswith("STALE_ROUND"), trainer  # never a CODEC_ error
    trained = [m for m in metrics if m["samples"] > 0]
    last = trained[-1]
    if "upload_codec" in hyper:  # 8-bit values and ~1.3 bytes of index each: under 3 of float32's 4 bytes
        assert last["bytes_up_per_result"] < 0.75 * hyper.get("topk_density", 0.01) * (24 + 4 * P), last
        assert trainer["codecMs"] < 0.05 * 1000 * hyper["period_s"], trainer
    if hyper["download_codec"] == "delta_q6z":  # deflated: measured 8-11x smaller than float32 after the first rounds
        assert last["bytes_down_per_client"] < (24 + 4 * P) / 6, last
        return
    bits = 8 if hyper["download_codec"] == "delta_q8" else 4
    # two clients each get a delta frame: P * bits / 8 bytes plus one float32 scale per 256
    assert last["bytes_down_per_client"] <= 24 + P * bits // 8 + 1 + 4 * (P // 256 + 1), last


def test_the_page_creates_a_compressed_project_and_shows_its_codecs_and_bytes_per_round(server, chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto(server.url)
        page.fill("#create-name", "page-codecs")
        page.fill("#create-period", "1")
        page.fill("#create-lr", "0.05")
        page.select_option("#create-upload-codec", "topk_q8")
        page.fill("#create-topk-density", "0.02")
        page.select_option("#create-download-codec", "delta_q6z")  # the editor offers every download codec
        page.click("#create-submit")
        page.wait_for_selector("#created-owner-token")
        p = next(q for q in httpx.get(f"{server.url}/api/projects").json() if q["name"] == "page-codecs")
        hyper = p["hyper"]
        assert (hyper["upload_codec"], hyper["topk_density"], hyper["download_codec"], hyper["algorithm"]) == \
            ("topk_q8", 0.02, "delta_q6z", "gradient")
        page.wait_for_selector(f'#projects tr[data-project-row="{p["id"]}"]')
        page.click(f'#projects tr[data-project-row="{p["id"]}"] [data-join="trainer"]')
        page.wait_for_function("/upload topk_q8, \\d+ B per result · download delta_q6z, [\\d.]+ K?B per client/"
                               ".test(document.querySelector('#comm-state').textContent)", timeout=90_000)
        text = page.text_content("#comm-state")
        up = int(text.split("topk_q8, ")[1].split(" B")[0])
        assert up < 0.75 * 0.02 * (24 + 4 * P), text
        metrics = httpx.get(f"{server.url}/metrics").text
        line = next(ln for ln in metrics.splitlines() if ln.startswith(f'mlitb_bytes_down_per_client{{project="{p["id"]}"}}'))
        assert float(line.split()[-1]) < (24 + 4 * P) / 7, line
    finally:
        context.close()
