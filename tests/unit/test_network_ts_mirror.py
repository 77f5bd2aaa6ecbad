"""The page's network rules (web/src/app/network.ts, run in Node) agree with mlitb/model/spec.py:
same output shapes, parameter counts and accept/refuse decisions (refusals naming the same layer)."""

from __future__ import annotations

import pytest

from mlitb.errors import MlitbError
from mlitb.model import PAPER_NETWORK, parse_network
from tests.helpers import run_in_node

INPUT = {"type": "input", "shape": [28, 28, 1]}
CASES = [
    PAPER_NETWORK,
    [INPUT, {"type": "conv2d", "filters": 4, "kernel": 3, "stride": 2, "padding": "valid", "activation": "tanh"},
     {"type": "maxpool2d", "size": 3, "stride": 1}, {"type": "relu"}, {"type": "flatten"}, {"type": "dropout", "rate": 0.2},
     {"type": "dense", "units": 7}, {"type": "softmax"}],
    [{"type": "input", "shape": [20]}, {"type": "dense", "units": 5, "activation": "sigmoid"}, {"type": "dense", "units": 3, "activation": "softmax"}],
    [INPUT, {"type": "flatten"}, {"type": "maxpool2d", "size": 2}, {"type": "dense", "units": 10, "activation": "softmax"}],
    [INPUT, {"type": "conv2d", "filters": 4, "kernel": 30, "padding": "valid"}, {"type": "flatten"},
     {"type": "dense", "units": 10, "activation": "softmax"}],
    [INPUT, {"type": "dense", "units": 10, "activation": "softmax"}],
    [INPUT, {"type": "flatten"}, {"type": "dense", "units": 10, "activation": "relu"}],
    [INPUT, {"type": "flatten"}, {"type": "dense", "units": 0, "activation": "softmax"}],
    [INPUT, {"type": "flatten"}, {"type": "lstm"}],
    [INPUT, {"type": "flatten"}, {"type": "dense", "units": 10, "activation": "softmax", "bias": False}],
    [INPUT, {"type": "flatten"}, {"type": "dropout", "rate": 1.0}, {"type": "dense", "units": 10, "activation": "softmax"}],
    [{"type": "flatten"}],
    [{"type": "input", "shape": [28, 28]}, {"type": "dense", "units": 2, "activation": "softmax"}],
]


@pytest.fixture(scope="module")
def ts_check(tmp_path_factory):
    script = "const { checkNetwork } = await import(BUNDLE); console.log(JSON.stringify(INPUT.map(checkNetwork)));"
    return run_in_node("app/network.ts", tmp_path_factory.mktemp("ts"), script, CASES)


@pytest.mark.parametrize("index", range(len(CASES)))
def test_typescript_rules_match_the_server(ts_check, index):
    ts = ts_check[index]
    try:
        net = parse_network(CASES[index])
    except MlitbError as err:
        assert ts["error"] is not None, f"the page accepts what the server refuses: {err.detail}"
        if err.detail.startswith("layer "):
            assert ts["error"].split(":")[0] == err.detail.split(":")[0]  # the same layer, named alike
        return
    assert ts["error"] is None, ts["error"]
    assert ts["paramCount"] == net.param_count
    assert [l["outputShape"] for l in ts["layers"][1:]] == [list(l.output_shape) for l in net.layers]
    assert [l["params"] for l in ts["layers"][1:]] == [sum(w.size for w in l.weights) for l in net.layers]
