"""The web page in a real browser: network editor and project creation, live charts and clients,
live hyper-parameters, prediction from a file and the (fake) camera, deletion, and a phone-sized layout.
Screenshots of the main views go to test-output/screenshots/."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import httpx
import pytest

from mlitb.store import ProjectStore
from mlitb.workers.browser import CHROMIUM_ARGS, chromium_path
from tests.helpers import digits_zip

SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
LAYER_OUT = "#layers li:nth-child({}) .layer-out"
state: dict = {}


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def digit_png(tmp_path) -> Path:
    from PIL import Image

    from mlitb.data import load_mnist

    test = load_mnist().test
    out = io.BytesIO()
    Image.fromarray(test.images[0, :, :, 0]).resize((56, 56)).convert("RGB").save(out, "PNG")
    path = tmp_path / "digit.png"
    path.write_bytes(out.getvalue())
    return path


@pytest.fixture(scope="module")
def page(server, chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda d: d.accept())
    page.goto(server.url)
    yield page
    context.close()


def test_the_editor_shows_shapes_and_parameters_as_you_edit_and_refuses_invalid_networks(page, server):
    # the paper's network: conv 5x5x1x16 + 16 = 416, dense 3136*10 + 10 = 31,370
    assert "[28, 28, 16]" in page.text_content(LAYER_OUT.format(2)) and "416 params" in page.text_content(LAYER_OUT.format(2))
    assert "[14, 14, 16]" in page.text_content(LAYER_OUT.format(3))
    assert "[3136]" in page.text_content(LAYER_OUT.format(4))
    assert page.text_content("#network-summary") == "31,786 parameters in total"
    # edit a parameter: the shapes and counts follow at once
    page.fill('[data-layer="1"][data-key="filters"]', "8")
    assert "[28, 28, 8] · 208 params" in page.text_content(LAYER_OUT.format(2))
    assert page.text_content("#network-summary") == "15,898 parameters in total"
    # reorder: flatten before the pool is refused inline, and the button cannot submit
    page.click('#layers li:nth-child(4) [data-move="-1"]')
    assert "needs a [h, w, c] input" in page.text_content("#network-error")
    assert page.is_disabled("#create-submit")
    page.click('#layers li:nth-child(3) [data-move="1"]')
    assert page.text_content("#network-error") == "" and page.is_enabled("#create-submit")
    # add a hidden dense layer and a dropout, move them before the classifier, then remove the dropout
    page.select_option("#add-layer-type", "dense")
    page.click("#add-layer")
    page.fill('[data-layer="5"][data-key="units"]', "32")
    page.select_option('[data-layer="5"][data-key="activation"]', "relu")
    assert "must end in a softmax classifier" in page.text_content("#network-error")
    page.click('#layers li:nth-child(6) [data-move="-1"]')
    assert "[32] · 50,208 params" in page.text_content(LAYER_OUT.format(5))
    assert "[10] · 330 params" in page.text_content(LAYER_OUT.format(6))
    page.select_option("#add-layer-type", "dropout")
    page.click("#add-layer")
    assert page.locator("#layers li").count() == 7
    page.click('#layers li:nth-child(7) [data-remove]')
    assert page.locator("#layers li").count() == 6 and page.text_content("#network-error") == ""
    page.fill('[data-layer="4"][data-key="units"]', "0")
    assert "'units' must be an integer" in page.text_content("#layers li:nth-child(5) .layer-error")
    page.fill('[data-layer="4"][data-key="units"]', "16")
    shot(page, "editor")
    # the server's refusal is shown too (a learning rate above its limit)
    page.fill("#create-name", "page-made")
    page.select_option("#create-dataset", "")
    page.fill("#create-lr", "20")
    page.click("#create-submit")
    page.wait_for_selector("#create-result.error")
    assert "INVALID_HYPER" in page.text_content("#create-result")
    page.fill("#create-lr", "0.05")
    page.fill("#create-period", "1")
    page.click("#create-submit")
    page.wait_for_selector("#created-owner-token")
    assert "shown only once" in page.text_content("#create-result")
    owner = page.input_value("#created-owner-token")
    p = next(q for q in httpx.get(f"{server.url}/api/projects").json() if q["name"] == "page-made")
    assert p["param_count"] == 25_482 and p["hyper"]["learning_rate"] == 0.05 and p["dataset"] is None
    assert [layer["type"] for layer in p["network"]] == ["input", "conv2d", "maxpool2d", "flatten", "dense", "dense"]
    state.update(id=p["id"], owner=owner)
    page.wait_for_selector(f'#projects tr[data-project-row="{p["id"]}"]')


def test_a_private_project_shows_its_invite_token_once(page):
    page.fill("#create-name", "page-private")
    page.check("#create-private")
    page.click("#create-submit")
    page.wait_for_selector("#created-invite-token")
    assert len(page.input_value("#created-invite-token")) > 30
    shot(page, "created-tokens")
    page.uncheck("#create-private")


def test_live_charts_clients_and_hyper_parameters_while_a_trainer_runs(page, server):
    pid, owner = state["id"], state["owner"]
    zipped = digits_zip(20)  # 200 MNIST digits
    r = httpx.put(f"{server.url}/api/projects/{pid}/data/train", content=zipped,
                  headers={"Authorization": f"Bearer {owner}", "Content-Type": "application/zip"}, timeout=60)
    assert r.status_code == 200, r.text
    page.click(f'#projects tr[data-project-row="{pid}"] [data-join="trainer"]')
    page.wait_for_function("/^([3-9]|\\d\\d+) rounds/.test(document.querySelector('#charts-state').textContent)",
                           timeout=30_000)
    assert page.locator("#charts .chart canvas").count() == 6
    titles = page.locator("#charts .u-title").all_text_contents()
    assert titles == ["Training loss", "Test error", "Power (samples/s)", "Latency (ms, mean)", "Trainers",
                      "Staleness (versions, mean)"]
    page.wait_for_selector("#clients td:text('trainer')")
    row = page.locator("#clients tr").first.locator("td").all_text_contents()
    assert row[1] == "trainer" and row[2] in ("wasm", "webgl", "webgpu", "cpu") and int(row[5]) > 0
    shot(page, "charts")
    # live hyper-parameters: a wrong token is refused, the owner's applies from the next round
    page.fill("#owner-token", "not-the-token")
    page.fill("#hyper-lr", "0.02")
    page.fill("#hyper-period", "2")
    page.click("#hyper-form button")
    page.wait_for_selector("#project-result.error")
    assert "FORBIDDEN" in page.text_content("#project-result")
    page.fill("#owner-token", owner)
    page.click("#hyper-form button")
    page.wait_for_function("document.querySelector('#project-result').textContent.includes('from round')")
    first = int(re.search(r"from round (\d+)", page.text_content("#project-result")).group(1))
    deadline = time.monotonic() + 15
    while not (m := httpx.get(f"{server.url}/api/projects/{pid}/metrics").json()) or m[-1]["round"] < first:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert [r["learning_rate"] for r in m if r["round"] >= first][:1] == [0.02]
    assert all(r["learning_rate"] == 0.05 and r["period_s"] == 1 for r in m if r["round"] < first)
    assert next(r for r in m if r["round"] >= first)["period_s"] == 2
    bad = httpx.patch(f"{server.url}/api/projects/{pid}/hyper", json={"learning_rate": 0},
                      headers={"Authorization": f"Bearer {owner}"})
    assert bad.status_code == 422 and bad.json()["code"] == "INVALID_HYPER"
    assert httpx.patch(f"{server.url}/api/projects/{pid}/hyper", json={"epsilon": 1},
                       headers={"Authorization": f"Bearer {owner}"}).json()["code"] == "INVALID_HYPER"
    assert httpx.patch(f"{server.url}/api/projects/{pid}/hyper", json={"period_s": 2}).status_code == 401
    # persisted: the stored spec has the new values
    saved = {p.id: p for p in ProjectStore(server.settings.data_dir / "mlitb.sqlite3").load_all()}[pid]
    assert saved.spec["hyper"]["learning_rate"] == 0.02 and saved.spec["hyper"]["period_s"] == 2
    # model download links
    state["model.json"] = httpx.get(server.url + page.get_attribute("#download-model", "href")).content
    state["weights.bin"] = httpx.get(server.url + page.get_attribute("#download-weights", "href")).content
    assert len(state["weights.bin"]) == 25_482 * 4
    page.click("#workers [data-stop]")


def test_a_new_project_starts_from_a_downloaded_model(page, server, tmp_path):
    (tmp_path / "model.json").write_bytes(state["model.json"])
    (tmp_path / "weights.bin").write_bytes(state["weights.bin"])
    (tmp_path / "short.bin").write_bytes(state["weights.bin"][:400])
    page.set_input_files("#load-model", [str(tmp_path / "model.json"), str(tmp_path / "short.bin")])
    page.wait_for_selector("#load-model-result.error")
    assert "the network needs 101928" in page.text_content("#load-model-result")
    page.set_input_files("#load-model", [str(tmp_path / "model.json"), str(tmp_path / "weights.bin")])
    page.wait_for_function("document.querySelector('#load-model-result').textContent.startsWith('loaded')")
    assert page.text_content("#network-summary") == "25,482 parameters in total"
    assert page.locator("#layers li").count() == 6
    page.fill("#create-name", "page-loaded")
    page.click("#create-submit")
    page.wait_for_selector("#loaded-weights")
    p = next(q for q in httpx.get(f"{server.url}/api/projects").json() if q["name"] == "page-loaded")
    assert httpx.get(f"{server.url}/api/projects/{p['id']}/model/weights.bin").content == state["weights.bin"]
    owner = page.input_value("#created-owner-token")
    url = f"{server.url}/api/projects/{p['id']}/model/weights.bin"
    assert httpx.put(url, content=b"\0" * 8).status_code == 401
    bad = httpx.put(url, content=b"\0" * 8, headers={"Authorization": f"Bearer {owner}"})
    assert bad.status_code == 400 and bad.json()["code"] == "WRONG_LENGTH"


def test_prediction_from_an_image_file_shows_the_top_classes(page, tmp_path):
    page.set_input_files("#predict-file", str(digit_png(tmp_path)))
    page.wait_for_selector("#predict-result .top-classes li", timeout=30_000)
    probs = [float(p.rstrip("%")) for p in page.locator("#predict-result .prob").all_text_contents()]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 100.01
    # the classes by name: the project's labels (digits), or "class N" for a project without data
    assert all(re.fullmatch(r"(class )?\d", c) for c in page.locator("#predict-result .cls").all_text_contents())
    shot(page, "prediction")


def test_prediction_from_the_fake_camera(server, chromium):
    # a second browser with Chromium's fake camera (its own flags, not CHROMIUM_ARGS)
    browser = chromium.browser_type.launch(executable_path=chromium_path(), headless=True, args=[
        *CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"])
    try:
        page = browser.new_page()
        page.goto(server.url)
        page.click(f'#projects [data-select="{state["id"]}"]')
        page.click("#camera-start")
        page.wait_for_selector("#camera-snap:enabled", timeout=10_000)
        page.wait_for_function("document.querySelector('#camera').videoWidth > 0")
        page.click("#camera-snap")
        page.wait_for_selector("#predict-result .top-classes li", timeout=30_000)
        assert page.locator("#predict-result .prob").count() == 5
        # the camera frame can be taught to the project as a new class
        page.fill("#teach-label", "camera")
        page.fill("#owner-token", state["owner"])
        page.click("#teach-add")
        page.wait_for_function("document.querySelector('#teach-result').textContent.includes('New class')")
        info = httpx.get(f"{server.url}/api/projects/{state['id']}").json()
        assert info["labels"][-1] == "camera" and info["num_classes"] == 11
    finally:
        browser.close()


def test_deleting_needs_the_owner_token(page, server):
    pid = state["id"]
    page.click(f'#projects [data-select="{pid}"]')
    page.fill("#owner-token", "wrong")
    page.click("#delete-project")
    page.wait_for_selector("#project-result.error")
    assert "FORBIDDEN" in page.text_content("#project-result")
    page.fill("#owner-token", state["owner"])
    page.click("#delete-project")
    page.wait_for_function("document.querySelector('#deleted').textContent.includes('Deleted project')")
    page.wait_for_selector(f'#projects tr[data-project-row="{pid}"]', state="detached")
    assert httpx.get(f"{server.url}/api/projects/{pid}").status_code == 404


def test_the_page_fits_a_phone_sized_screen(server, chromium):
    from mlitb.model import PAPER_NETWORK

    httpx.post(f"{server.url}/api/projects", json={"name": "phone", "network": PAPER_NETWORK})
    ctx = chromium.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                               has_touch=True)
    page = ctx.new_page()
    page.goto(server.url)
    page.wait_for_selector("#projects tr")
    page.click("#projects [data-select]")  # the project panel with its charts
    page.wait_for_selector("#charts .chart canvas")
    width = page.evaluate("Math.max(document.body.scrollWidth, document.documentElement.scrollWidth)")
    assert width <= 390, width
    for sel in ("#create-submit", "#add-layer", "#upload-form button[type=submit]", "#hyper-form button", "#delete-project",
                "#teach-add"):
        box = page.locator(sel).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, (sel, box)
    shot(page, "phone")
    ctx.close()
