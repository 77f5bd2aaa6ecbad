"""Parity: the torch worker and the browser trainer (its real wasm compute path in headless Chromium) give the
same loss, summed gradient and saved-model predictions for the same parameters and mini-batch, within 1e-5
relative in float32, for every layer type, the paper's network, the CIFAR-size network and a network whose
output layer grew by a class learnt on the fly.

"Relative" is max |torch - browser| / max |browser| over the vector (per-element ratios are meaningless for
values near zero). Each case is written as the server would save it (model.json + weights.bin) and read by
web/src/selftest/parity.ts on the page, and by `engine_from_artifacts` here.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from mlitb.model import PAPER_NETWORK, glorot_init, model_json, parse_network
from mlitb.model.grow import grow_arrays, with_more_classes
from mlitb.workers.native.engine import engine_from_artifacts
from project_run import CIFAR_SIZE_NETWORK
from static_server import StaticServer
from tests.helpers import EVERY_LAYER_NETWORK

pytestmark = pytest.mark.browser
RTOL = 1e-5

DROPOUT = [  # dropout at rate 0.5: masks are random in training on both sides, so only predictions are compared
    {"type": "input", "shape": [8, 8, 1]}, {"type": "conv2d", "filters": 3, "kernel": 3, "activation": "relu"},
    {"type": "flatten"}, {"type": "dropout", "rate": 0.5}, {"type": "dense", "units": 3, "activation": "softmax"},
]


def _case(spec: list[dict], n: int, seed: int, grow: int = 0):
    net = parse_network(spec)
    rng = np.random.default_rng(seed)
    params = glorot_init(net, seed) + rng.normal(0, 0.02, net.param_count).astype(np.float32)
    if grow:  # a class learnt on the fly: the output layer grows with zero columns, as the server does
        grown = parse_network(with_more_classes(spec, grow))
        (params,) = grow_arrays(net, grown, params)
        net = grown
    images = rng.integers(0, 256, (n, *net.input_shape), dtype=np.uint8)
    images[rng.random(images.shape) < 0.3] = 0  # dark pixels, as in MNIST: ties and ReLU zeros
    labels = rng.integers(0, net.num_classes, n).astype(np.uint8)
    if grow:
        labels[:2] = net.num_classes - 1  # the new class is in the batch
    return net, params, images, labels


CASES = {
    "paper": (PAPER_NETWORK, 32, 1, 0),
    "every-layer-type": (EVERY_LAYER_NETWORK, 16, 2, 0),
    "cifar-size": (CIFAR_SIZE_NETWORK, 8, 3, 0),
    "grown-output-layer": (PAPER_NETWORK, 16, 4, 1),
    "dropout": (DROPOUT, 8, 5, 0),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    for name, (spec, n, seed, grow) in CASES.items():
        net, params, images, labels = _case(spec, n, seed, grow)
        d = root / name
        d.mkdir()
        (d / "model.json").write_text(json.dumps(model_json(net, name)))
        (d / "weights.bin").write_bytes(params.astype("<f4").tobytes())
        (d / "data.bin").write_bytes(struct.pack("<I", n) + labels.tobytes() + images.tobytes())
    with StaticServer(extra={"/parity/": root}) as server:
        yield server, root


@pytest.fixture(scope="module")
def browser_results(site, chromium):
    server, _ = site
    out = {}
    page = chromium.new_page()
    try:
        for name in CASES:
            page.set_default_timeout(120_000)
            page.goto(server.url(f"/static/selftest.html?check=parity&case={name}&backend=wasm"))
            out[name] = page.evaluate("window.selftest")
    finally:
        page.close()
    return out


def _torch_results(root, name):
    torch.set_num_threads(1)
    d = root / name
    engine = engine_from_artifacts(json.loads((d / "model.json").read_text()), (d / "weights.bin").read_bytes())
    raw = (d / "data.bin").read_bytes()
    n = struct.unpack_from("<I", raw)[0]
    labels = np.frombuffer(raw, np.uint8, n, 4)
    images = np.frombuffer(raw, np.uint8, offset=4 + n).reshape(n, *engine.network.input_shape)
    probs = engine.predict(images)
    engine.hold(images, labels)
    return engine, probs, engine.compute_on(np.arange(n), batch_size=n)


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


@pytest.mark.parametrize("name", [n for n in CASES if n != "dropout"])
def test_torch_loss_and_summed_gradient_match_the_browser_trainer_within_1e5_relative(site, browser_results, name):
    _, root = site
    b = browser_results[name]
    assert b["backend"] == "wasm"
    engine, _, r = _torch_results(root, name)
    assert b["paramCount"] == engine.param_count == len(b["grad"])
    assert r.samples == b["samples"]
    assert _rel([r.loss_sum], [b["lossSum"]]) <= RTOL, (r.loss_sum, b["lossSum"])
    print(f"{name}: loss rel {_rel([r.loss_sum], [b['lossSum']]):.2e} gradient rel {_rel(r.grad, b['grad']):.2e}")
    assert _rel(r.grad, b["grad"]) <= RTOL, _rel(r.grad, b["grad"])
    assert np.abs(np.asarray(b["grad"])).max() > 1e-3  # a real gradient, not zeros on both sides


@pytest.mark.parametrize("name", [n for n in CASES if n != "dropout"])
def test_the_numpy_spot_check_verifier_matches_the_browser_trainer_well_inside_its_tolerance(site, browser_results, name):
    from mlitb.trust.numpy_net import gradient_sum
    from mlitb.trust.spot_check import relative_difference, tolerance_for

    _, root = site
    b = browser_results[name]
    engine, _, _ = _torch_results(root, name)
    d = root / name
    raw = (d / "data.bin").read_bytes()
    n = struct.unpack_from("<I", raw)[0]
    labels = np.frombuffer(raw, np.uint8, n, 4)
    images = np.frombuffer(raw, np.uint8, offset=4 + n).reshape(n, *engine.network.input_shape)
    params = np.frombuffer((d / "weights.bin").read_bytes(), "<f4")
    grad, loss = gradient_sum(engine.network, params, images, labels)
    diff = relative_difference(np.asarray(b["grad"], np.float32), grad)
    tolerance = tolerance_for(engine.network)
    print(f"{name}: wasm vs NumPy gradient rel L2 {diff:.2e}, loss rel {abs(b['lossSum'] - loss) / loss:.2e}; "
          f"tolerance {tolerance:.1e}")
    assert diff <= tolerance / 20 and abs(b["lossSum"] - loss) / loss <= tolerance / 20


@pytest.mark.parametrize("name", list(CASES))
def test_predictions_of_a_saved_model_match_the_browser_trainer(site, browser_results, name):
    _, root = site
    _, probs, _ = _torch_results(root, name)
    b = np.asarray(browser_results[name]["probs"], np.float32).reshape(probs.shape)
    print(f"{name}: predictions rel {_rel(probs, b):.2e}")
    assert _rel(probs, b) <= RTOL
    assert (probs.argmax(1) == b.argmax(1)).all()


def test_the_grown_output_layer_has_one_more_class_and_the_new_class_gets_a_gradient(site, browser_results):
    _, root = site
    engine, _, r = _torch_results(root, "grown-output-layer")
    assert engine.num_classes == 11
    bias = r.grad[-11:]  # the output layer's bias is last in our order
    assert bias[-1] != 0 and bias[-1] == pytest.approx(browser_results["grown-output-layer"]["grad"][-1], rel=1e-4)
