"""The torch engine against an independent NumPy reference written in TF.js layouts (NHWC maps, [kh, kw, in, out]
kernels, [in, out] dense kernels, (h, w, c) flatten order): same loss, same summed gradient, for every layer type.

The reference knows nothing of PyTorch or of `layout.py`, so a wrong kernel order, a wrong flatten order or a
wrong 'same' padding split shows up as a different loss or gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlitb.model import PAPER_NETWORK, glorot_init, parse_network, split_weights
from mlitb.workers.native.engine import TorchEngine
from mlitb.workers.native.layout import ParamLayout
from tests.helpers import EVERY_LAYER_NETWORK

EPS = 1e-7


def _conv(x, k, b, stride, padding):
    n, h, w, c = x.shape
    kh, kw, _, f = k.shape
    if padding == "same":
        oh, ow = -(-h // stride), -(-w // stride)
        th, tw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - w, 0)
        x = np.pad(x, ((0, 0), (th // 2, th - th // 2), (tw // 2, tw - tw // 2), (0, 0)))
    else:
        oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((n, oh, ow, f))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j, :] = np.tensordot(patch, k, axes=([1, 2, 3], [0, 1, 2]))
    return out + b


def _pool(x, size, stride):
    n, h, w, c = x.shape
    oh, ow = (h - size) // stride + 1, (w - size) // stride + 1
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            out[:, i, j, :] = x[:, i * stride:i * stride + size, j * stride:j * stride + size, :].max(axis=(1, 2))
    return out


def _act(x, name):
    if name == "relu":
        return np.maximum(x, 0)
    if name == "tanh":
        return np.tanh(x)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if name == "softmax":
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    return x


def reference_loss(net, flat, images, labels) -> float:
    """Summed clipped cross-entropy in float64, TF.js layouts throughout (dropout is the identity here)."""
    w = split_weights(net, flat.astype(np.float64))
    x = images.astype(np.float64) / 255
    for layer in net.layers:
        p = layer.params
        if layer.type == "conv2d":
            x = _act(_conv(x, w[f"{layer.name}/kernel"], w[f"{layer.name}/bias"], p["stride"], p["padding"]), p["activation"])
        elif layer.type == "maxpool2d":
            x = _pool(x, p["size"], p["stride"])
        elif layer.type == "dense":
            x = _act(x @ w[f"{layer.name}/kernel"] + w[f"{layer.name}/bias"], p["activation"])
        elif layer.type == "flatten":
            x = x.reshape(len(x), -1)
        elif layer.type in ("relu", "tanh", "sigmoid", "softmax"):
            x = _act(x, layer.type)
    p = np.clip(x, EPS, 1 - EPS)
    return float(-np.log(p[np.arange(len(labels)), labels]).sum())


NETWORKS = {
    "paper": PAPER_NETWORK,
    "every layer type": EVERY_LAYER_NETWORK,
    "softmax over a map's channels": [
        {"type": "input", "shape": [5, 4, 2]},
        {"type": "conv2d", "filters": 3, "kernel": 2, "stride": 1, "padding": "valid", "activation": "linear"},
        {"type": "softmax"}, {"type": "flatten"}, {"type": "dense", "units": 3, "activation": "softmax"},
    ],
    "dense on a flattened map": [
        {"type": "input", "shape": [3, 4, 2]}, {"type": "flatten"},
        {"type": "dense", "units": 3, "activation": "softmax"},
    ],
}


@pytest.mark.parametrize("name", NETWORKS)
def test_torch_loss_and_gradient_match_a_numpy_reference_in_tfjs_layouts(name):
    torch.set_num_threads(1)
    net = parse_network(NETWORKS[name])
    rng = np.random.default_rng(1)
    flat = glorot_init(net, 3) + rng.normal(0, 0.05, net.param_count).astype(np.float32)  # biases non-zero too
    n = 5
    images = rng.integers(0, 256, (n, *net.input_shape), dtype=np.uint8)
    labels = rng.integers(0, net.num_classes, n)
    engine = TorchEngine(net, "cpu", seed=0)
    engine.set_params(flat)
    engine.hold(images, labels.astype(np.uint8))
    got = engine.compute_on(np.arange(n), batch_size=n)
    assert got.loss_sum == pytest.approx(reference_loss(net, flat, images, labels), rel=1e-5)
    # central differences of the float64 reference at a few coordinates of every weight
    for w_off, w in zip(np.cumsum([0] + [w.size for w in net.weights]), net.weights):
        for j in rng.choice(w.size, size=min(4, w.size), replace=False):
            k = int(w_off + j)
            h = 1e-6
            up, down = flat.astype(np.float64), flat.astype(np.float64)
            up[k] += h
            down[k] -= h
            numeric = (reference_loss(net, up, images, labels) - reference_loss(net, down, images, labels)) / (2 * h)
            assert got.grad[k] == pytest.approx(numeric, rel=2e-3, abs=2e-4), (w.name, j)


def test_layout_round_trips_and_moves_every_value_once():
    net = parse_network(NETWORKS["every layer type"])
    layout = ParamLayout(net)
    ours = np.arange(net.param_count, dtype=np.float32)
    theirs = layout.to_torch(ours)
    assert sorted(theirs.tolist()) == ours.tolist()
    assert np.array_equal(layout.to_ours(theirs), ours)
    with pytest.raises(ValueError, match="parameters"):
        layout.to_torch(ours[:-1])


def test_a_conv_kernel_is_laid_out_out_in_kh_kw_and_a_dense_kernel_out_in():
    net = parse_network([{"type": "input", "shape": [4, 4, 2]},
                         {"type": "conv2d", "filters": 3, "kernel": 2, "stride": 2, "padding": "valid"},
                         {"type": "flatten"}, {"type": "dense", "units": 2, "activation": "softmax"}])
    ours = np.arange(net.param_count, dtype=np.float32)
    engine = TorchEngine(net, "cpu")
    engine.set_params(ours)
    w = split_weights(net, ours)
    conv = engine.model.body[0].conv.weight.detach().numpy()
    assert np.array_equal(conv, w["conv2d_1/kernel"].transpose(3, 2, 0, 1))
    dense = engine.model.body[2][0].weight.detach().numpy()  # inputs (c, h, w) in torch, (h, w, c) in ours
    assert np.array_equal(dense, w["dense_3/kernel"].reshape(2, 2, 3, 2).transpose(3, 2, 0, 1).reshape(2, 12))
