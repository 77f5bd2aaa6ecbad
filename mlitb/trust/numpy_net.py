"""The summed cross-entropy gradient of a network in NumPy (float32), as the browser trainer computes it.

The spot-check verifier (spot_check.py) recomputes a trainer's result with this: the trainer's loss
is Keras' categorical cross-entropy on the softmax output, -sum(y log clip(p, 1e-7, 1 - 1e-7)), summed
over the examples, and its gradient is the sum of the per-sample gradients, in TF.js parameter order
(layer by layer, kernel [in, out] then bias). Pixels are uint8 scaled to [0, 1].

Every layer type the spec allows is supported: conv2d and maxpool2d (numpy_layers.py, TF.js NHWC), dense
(any activation), flatten, relu, tanh, sigmoid, softmax, and dropout at rate 0 (the identity). Dropout at a
rate above 0 draws a random mask in the trainer that the master cannot reproduce, so such a network is not
spot-checked (`supports` says so); its results are trusted like any result under the robust rule.
"""

from __future__ import annotations

import numpy as np

from mlitb.model import Network
from mlitb.trust.numpy_layers import conv_backward, conv_forward, pool_backward, pool_forward

SUPPORTED = frozenset({"conv2d", "maxpool2d", "flatten", "dense", "relu", "tanh", "sigmoid", "softmax", "dropout"})
EPSILON = np.float32(1e-7)  # Keras' clip of the probabilities before the log
COLS_BUDGET = 32 << 20  # floats of im2col matrices per batch (128 MiB): a CIFAR-size batch is cut to fit


def supports(network: Network) -> bool:
    return all(layer.type in SUPPORTED and (layer.type != "dropout" or layer.params["rate"] == 0)
               for layer in network.layers)


def batch_size_for(network: Network, batch: int = 256) -> int:
    """`batch`, or fewer examples where the im2col matrices of a batch would pass COLS_BUDGET floats."""
    per_example, shape = 0, network.input_shape
    for layer in network.layers:
        if layer.type == "conv2d":
            k = layer.params["kernel"]
            per_example += layer.output_shape[0] * layer.output_shape[1] * k * k * shape[2]
        shape = layer.output_shape
    return max(1, min(batch, COLS_BUDGET // max(per_example, 1)))


def _activate(kind: str, z: np.ndarray) -> np.ndarray:
    if kind == "relu":
        return np.maximum(z, 0)
    if kind == "tanh":
        return np.tanh(z)
    if kind == "sigmoid":
        return (1 / (1 + np.exp(-z))).astype(np.float32)
    if kind == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return z  # linear


def _back(kind: str, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """The gradient through an activation, given its output y and the gradient dy of its output."""
    if kind == "relu":
        return dy * (y > 0)
    if kind == "tanh":
        return dy * (1 - y * y)
    if kind == "sigmoid":
        return dy * y * (1 - y)
    if kind == "softmax":
        return y * (dy - np.sum(dy * y, axis=-1, keepdims=True))
    return dy


def gradient_sum(network: Network, params: np.ndarray, images: np.ndarray, labels: np.ndarray,
                 batch: int = 256) -> tuple[np.ndarray, float]:
    """(summed gradient float32 in TF.js order, summed loss) over the examples, `batch` at a time."""
    if not supports(network):
        raise ValueError("network has layer types the NumPy verifier does not implement")
    batch = batch_size_for(network, batch)
    grad = np.zeros(network.param_count, np.float32)
    loss = 0.0
    for at in range(0, len(images), batch):
        g, l = _batch(network, params, images[at:at + batch], labels[at:at + batch])
        grad += g
        loss += l
    return grad, loss


class GradientJob:
    """A spot check's recomputation in pieces (spot_check.Recomputation): the summed gradient and loss over the
    examples `ids` of `split`, scaled by `share` (a result cut to its allowance is scaled alike)."""

    def __init__(self, network: Network, params: np.ndarray, split, ids: np.ndarray, share: float = 1.0):
        if not supports(network):
            raise ValueError("network has layer types the NumPy verifier does not implement")
        self.network, self.params, self.split, self.ids, self.share = network, params, split, ids, share
        self.grad = np.zeros(network.param_count, np.float32)
        self.loss = 0.0
        self.done = 0

    @property
    def remaining(self) -> int:
        return len(self.ids) - self.done

    def advance(self, examples: int) -> None:
        ids = self.ids[self.done:self.done + examples]
        grad, loss = gradient_sum(self.network, self.params, self.split.images[ids], self.split.labels[ids])
        self.grad += grad
        self.loss += loss
        self.done += len(ids)

    def expected(self) -> tuple[np.ndarray, float]:
        return self.grad * np.float32(self.share), self.loss * self.share


def _batch(network: Network, params: np.ndarray, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    n = len(images)
    x = images.reshape(n, *network.input_shape).astype(np.float32) / np.float32(255)
    weights, at = [], 0
    for layer in network.layers:
        shapes = [w.shape for w in layer.weights]
        arrays = []
        for shape in shapes:
            size = int(np.prod(shape))
            arrays.append(params[at:at + size].reshape(shape).astype(np.float32))
            at += size
        weights.append(arrays)
    # forward, keeping each layer's input and output
    trace = []
    for layer, w in zip(network.layers, weights):
        inp, ctx, act = x, None, "linear"
        if layer.type == "flatten":
            x = x.reshape(n, -1)
        elif layer.type == "dense":
            act = layer.params["activation"]
            x = _activate(act, x.reshape(n, -1) @ w[0] + w[1])
        elif layer.type == "conv2d":
            act = layer.params["activation"]
            z, ctx = conv_forward(x, w[0], w[1], layer.params["stride"], layer.params["padding"])
            x = _activate(act, z)
        elif layer.type == "maxpool2d":
            x, ctx = pool_forward(x, layer.params["size"], layer.params["stride"])
        elif layer.type != "dropout":  # dropout at rate 0 (supports) is the identity
            act = layer.type
            x = _activate(act, x)
        trace.append((inp, x, act, ctx))
    p = x
    y = np.zeros_like(p)
    y[np.arange(n), labels.astype(np.int64)] = 1
    clipped = np.clip(p, EPSILON, 1 - EPSILON)
    loss = float(-np.sum(y * np.log(clipped), dtype=np.float64))
    inside = (p >= EPSILON) & (p <= 1 - EPSILON)  # TF.js passes the gradient of clipByValue where min <= p <= max
    dy = np.where(inside, -y / clipped, 0).astype(np.float32)
    grads: list[list[np.ndarray]] = [[] for _ in network.layers]
    for i in range(len(network.layers) - 1, -1, -1):
        layer, (inp, out, act, ctx), w = network.layers[i], trace[i], weights[i]
        if layer.type == "flatten":
            dy = dy.reshape(inp.shape)
        elif layer.type == "dense":
            dz = _back(act, out, dy)
            flat = inp.reshape(n, -1)
            grads[i] = [flat.T @ dz, dz.sum(axis=0)]
            dy = (dz @ w[0].T).reshape(inp.shape)
        elif layer.type == "conv2d":
            dy, d_kernel, d_bias = conv_backward(_back(act, out, dy), w[0], ctx)
            grads[i] = [d_kernel, d_bias]
        elif layer.type == "maxpool2d":
            dy = pool_backward(dy, ctx)
        elif layer.type != "dropout":
            dy = _back(act, out, dy)
    flat_grad = np.concatenate([g.ravel() for gs in grads for g in gs]) if network.param_count else np.zeros(0)
    return flat_grad.astype(np.float32), loss
