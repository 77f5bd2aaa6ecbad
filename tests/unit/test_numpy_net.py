"""The NumPy verifier's network gradient: matches central differences of its loss and the softmax helper's gradient."""

import numpy as np
import pytest

from mlitb.model import PAPER_NETWORK, parse_network
from mlitb.trust.numpy_net import gradient_sum, supports
from tests.mnist_softmax import SOFTMAX_REGRESSION

MLP = [{"type": "input", "shape": [4, 4, 1]}, {"type": "flatten"}, {"type": "dense", "units": 6, "activation": "tanh"},
       {"type": "dense", "units": 5, "activation": "relu"}, {"type": "dense", "units": 4}, {"type": "sigmoid"},
       {"type": "dense", "units": 3, "activation": "softmax"}]


def loss_of(network, params, images, labels):
    return gradient_sum(network, params.astype(np.float32), images, labels)[1]


def test_the_gradient_of_a_small_mlp_matches_central_differences_of_its_loss():
    rng = np.random.default_rng(0)
    net = parse_network(MLP)
    params = (rng.standard_normal(net.param_count) * 0.5).astype(np.float64)
    images = rng.integers(0, 256, (7, 4, 4, 1), dtype=np.uint8)
    labels = rng.integers(0, 3, 7).astype(np.uint8)
    grad, _ = gradient_sum(net, params.astype(np.float32), images, labels, batch=3)
    for i in rng.choice(net.param_count, 25, replace=False):
        step = np.zeros_like(params)
        step[i] = 1e-2
        numeric = (loss_of(net, params + step, images, labels) - loss_of(net, params - step, images, labels)) / 2e-2
        assert grad[i] == pytest.approx(numeric, rel=2e-2, abs=2e-3), i


def test_softmax_regression_matches_the_test_helpers_gradient():
    from tests.mnist_softmax import probabilities

    rng = np.random.default_rng(1)
    net = parse_network(SOFTMAX_REGRESSION)
    params = (rng.standard_normal(7850) * 0.01).astype(np.float32)
    images = rng.integers(0, 256, (50, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, 50).astype(np.uint8)
    x = images.reshape(50, -1).astype(np.float32) / 255
    p = probabilities(params, images)
    p[np.arange(50), labels] -= 1
    expected = np.concatenate([(x.T @ p).ravel(), p.sum(axis=0)])
    grad, loss = gradient_sum(net, params, images, labels)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)
    assert loss > 0


def test_networks_with_dropout_above_rate_0_are_not_supported():
    assert supports(parse_network(SOFTMAX_REGRESSION)) and supports(parse_network(MLP))
    assert supports(parse_network(PAPER_NETWORK))
    dropout = parse_network(MLP[:2] + [{"type": "dropout", "rate": 0.25}] + MLP[2:])
    assert not supports(dropout)
    with pytest.raises(ValueError):
        gradient_sum(dropout, np.zeros(dropout.param_count, np.float32), np.zeros((1, 4, 4, 1), np.uint8),
                     np.zeros(1, np.uint8))
