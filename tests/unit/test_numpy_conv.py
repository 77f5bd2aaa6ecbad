"""The NumPy verifier on every layer type the spec allows: its gradient matches central differences of its own loss,
and matches the torch worker's loss and gradient (the engine whose parity with the browser's wasm trainer is
tested in tests/e2e/test_torch_parity.py) for each layer type, the paper's conv network and the CIFAR-size one."""

import numpy as np
import pytest

from mlitb.model import PAPER_NETWORK, glorot_init, parse_network
from mlitb.trust.numpy_net import batch_size_for, gradient_sum, supports
from tests.networks import CIFAR, EVERY_LAYER

IMAGE = {"type": "input", "shape": [7, 6, 2]}
HEAD = [{"type": "flatten"}, {"type": "dense", "units": 3, "activation": "softmax"}]
ONE_LAYER = {  # each layer type (and option) the spec allows, alone between an image input and a softmax head
    "conv-same-stride1-relu": [{"type": "conv2d", "filters": 3, "kernel": 3, "activation": "relu"}],
    "conv-same-stride2-tanh": [{"type": "conv2d", "filters": 2, "kernel": 2, "stride": 2, "activation": "tanh"}],
    "conv-same-even-kernel-sigmoid": [{"type": "conv2d", "filters": 2, "kernel": 4, "activation": "sigmoid"}],
    "conv-valid-stride2-linear": [{"type": "conv2d", "filters": 3, "kernel": 3, "stride": 2, "padding": "valid"}],
    "conv-softmax-activation": [{"type": "conv2d", "filters": 3, "kernel": 1, "activation": "softmax"}],
    "maxpool-2": [{"type": "maxpool2d", "size": 2}],
    "maxpool-overlapping": [{"type": "maxpool2d", "size": 3, "stride": 1}],
    "maxpool-non-dividing": [{"type": "maxpool2d", "size": 3, "stride": 2}],
    "relu": [{"type": "relu"}], "tanh": [{"type": "tanh"}], "sigmoid": [{"type": "sigmoid"}],
    "softmax-layer": [{"type": "softmax"}],
    "dropout-rate-0": [{"type": "dropout", "rate": 0.0}],
}


def _net(layers):
    return parse_network([IMAGE, *layers, *HEAD])


def _data(net, n, seed, blank=0.0):
    rng = np.random.default_rng(seed)
    params = glorot_init(net, seed) + rng.normal(0, 0.05, net.param_count).astype(np.float32)
    images = rng.integers(1, 256, (n, *net.input_shape), dtype=np.uint8)
    images[rng.random(images.shape) < blank] = 0  # dark pixels, as in MNIST: ties in pools, ReLU zeros
    return params, images, rng.integers(0, net.num_classes, n).astype(np.uint8)


def _torch(net, params, images, labels):
    import torch

    from mlitb.workers.native.engine import TorchEngine

    torch.set_num_threads(1)
    engine = TorchEngine(net, "cpu")
    engine.set_params(params)
    engine.hold(images, labels)
    r = engine.compute_on(np.arange(len(images)), batch_size=len(images))
    return r.grad, r.loss_sum


def _rel(a, b) -> float:  # as tests/e2e/test_torch_parity.py measures it
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


@pytest.mark.parametrize("name", list(ONE_LAYER))
def test_each_layer_types_gradient_matches_central_differences(name):
    net = _net(ONE_LAYER[name])
    params, images, labels = _data(net, 5, 7)
    grad, _ = gradient_sum(net, params, images, labels, batch=2)
    p64 = params.astype(np.float64)
    rng = np.random.default_rng(3)
    first = net.weights[0].size  # the layer's own weights when it has any, else the head's kernel
    for i in rng.choice(first, min(first, 12), replace=False):
        step = np.zeros_like(p64)
        step[i] = 1e-3  # small: a ReLU kink or a pool's argmax must not fall between the two points
        up = gradient_sum(net, (p64 + step).astype(np.float32), images, labels)[1]
        down = gradient_sum(net, (p64 - step).astype(np.float32), images, labels)[1]
        assert grad[i] == pytest.approx((up - down) / 2e-3, rel=2e-2, abs=2e-3), (name, i)


@pytest.mark.parametrize("name", list(ONE_LAYER))
def test_each_layer_type_matches_the_torch_worker(name):
    net = _net(ONE_LAYER[name])
    params, images, labels = _data(net, 9, 11, blank=0.4)
    grad, loss = gradient_sum(net, params, images, labels, batch=4)
    want_grad, want_loss = _torch(net, params, images, labels)
    assert _rel([loss], [want_loss]) <= 1e-5
    assert _rel(grad, want_grad) <= 1e-5, _rel(grad, want_grad)
    assert np.abs(want_grad).max() > 1e-3


@pytest.mark.parametrize("name,spec,n", [("every-layer-type", EVERY_LAYER, 16), ("paper", PAPER_NETWORK, 32),
                                         ("cifar-size", CIFAR, 8)])
def test_whole_networks_match_the_torch_worker(name, spec, n):
    net = parse_network(spec)
    assert supports(net)
    params, images, labels = _data(net, n, 5, blank=0.3)
    grad, loss = gradient_sum(net, params, images, labels, batch=max(1, n // 3))
    want_grad, want_loss = _torch(net, params, images, labels)
    print(f"{name}: loss rel {_rel([loss], [want_loss]):.2e}, gradient rel {_rel(grad, want_grad):.2e}")
    assert _rel([loss], [want_loss]) <= 1e-5
    assert _rel(grad, want_grad) <= 1e-5
    assert np.abs(want_grad).max() > 1e-3


def test_dropout_above_rate_0_is_not_checkable_and_conv_batches_fit_the_memory_budget():
    drop = _net([{"type": "dropout", "rate": 0.5}])
    assert not supports(drop)
    with pytest.raises(ValueError):
        gradient_sum(drop, np.zeros(drop.param_count, np.float32), np.zeros((1, 7, 6, 2), np.uint8), np.zeros(1, np.uint8))
    assert batch_size_for(parse_network(PAPER_NETWORK)) == 256
    assert 1 <= batch_size_for(parse_network(CIFAR)) < 256  # its im2col matrices are 0.6M floats per example
