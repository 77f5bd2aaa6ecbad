"""Network spec validation, TF.js artifacts and seeded Glorot initialisation."""

import numpy as np
import pytest

from mlitb.errors import ErrorCode, MlitbError
from mlitb.model import PAPER_NETWORK, glorot_init, model_json, parse_network, split_weights


def test_paper_network_has_31786_parameters_in_tfjs_order():
    net = parse_network(PAPER_NETWORK)
    assert net.param_count == 31_786
    assert [(w.name, w.shape) for w in net.weights] == [
        ("conv2d_1/kernel", (5, 5, 1, 16)), ("conv2d_1/bias", (16,)),
        ("dense_4/kernel", (3136, 10)), ("dense_4/bias", (10,)),
    ]
    assert [l.output_shape for l in net.layers] == [(28, 28, 16), (14, 14, 16), (3136,), (10,)]


@pytest.mark.parametrize("spec,needle", [
    ([{"type": "input", "shape": [4]}, {"type": "lstm", "units": 3}], "unknown layer type 'lstm'"),
    ([{"type": "input", "shape": [4]}, {"type": "dense"}], "missing required key 'units'"),
    ([{"type": "input", "shape": [4]}, {"type": "dense", "units": 2, "activation": "softmax", "bias": 1}], "unknown key(s) bias"),
    ([{"type": "input", "shape": [4]}, {"type": "dense", "units": 0, "activation": "softmax"}], "'units' must be"),
    ([{"type": "input", "shape": [4]}, {"type": "dense", "units": 3, "activation": "gelu"}], "unknown activation"),
    ([{"type": "input", "shape": [4]}, {"type": "dense", "units": 3}], "softmax classifier"),
    ([{"type": "input", "shape": [28, 28, 1]}, {"type": "dense", "units": 3, "activation": "softmax"}], "flatten"),
    ([{"type": "input", "shape": [4]}, {"type": "conv2d", "filters": 2, "kernel": 3}], "[h, w, c]"),
    ([{"type": "input", "shape": [3, 3, 1]}, {"type": "conv2d", "filters": 2, "kernel": 5, "padding": "valid"}], "does not fit"),
    ([{"type": "dense", "units": 3}], "first layer must be 'input'"),
    ([], "non-empty list"),
    ("conv", "non-empty list"),
])
def test_invalid_networks_are_refused_with_a_message_naming_the_problem(spec, needle):
    with pytest.raises(MlitbError) as exc:
        parse_network(spec)
    assert exc.value.code == ErrorCode.INVALID_NETWORK
    assert needle in exc.value.detail


def test_model_json_is_a_sequential_layers_model_with_one_weight_file():
    doc = model_json(parse_network(PAPER_NETWORK), "paper")
    assert doc["format"] == "layers-model"
    layers = doc["modelTopology"]["config"]["layers"]
    assert [l["class_name"] for l in layers] == ["Conv2D", "MaxPooling2D", "Flatten", "Dense"]
    assert layers[0]["config"]["batch_input_shape"] == [None, 28, 28, 1]
    manifest = doc["weightsManifest"][0]
    assert manifest["paths"] == ["weights.bin"]
    assert [w["name"] for w in manifest["weights"]] == ["conv2d_1/kernel", "conv2d_1/bias", "dense_4/kernel", "dense_4/bias"]


def test_glorot_init_is_seeded_zero_bias_and_within_the_glorot_limit():
    net = parse_network(PAPER_NETWORK)
    a, b, c = glorot_init(net, 0), glorot_init(net, 0), glorot_init(net, 1)
    assert a.dtype == np.float32 and a.shape == (31_786,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    w = split_weights(net, a)
    assert np.all(w["conv2d_1/bias"] == 0) and np.all(w["dense_4/bias"] == 0)
    assert np.abs(w["dense_4/kernel"]).max() <= np.sqrt(6 / (3136 + 10))
    assert np.abs(w["conv2d_1/kernel"]).max() <= np.sqrt(6 / (25 + 400))
