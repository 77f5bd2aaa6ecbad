"""A real learning signal for simulated trainers: softmax regression on MNIST, in NumPy.

The network is SOFTMAX_REGRESSION (dense 784 -> 10, softmax); parameters are in TF.js order.
"""

from __future__ import annotations

import numpy as np

from mlitb.data import Dataset, Split, load_mnist

SOFTMAX_REGRESSION = [{"type": "input", "shape": [28, 28, 1]}, {"type": "flatten"},
                      {"type": "dense", "units": 10, "activation": "softmax"}]


def mnist_subset(train: int, test: int) -> Dataset:
    full = load_mnist()  # fails loudly (DATASET_MISSING) when the set-up step has not run
    return Dataset("mnist", full.labels, Split(full.train.images[:train], full.train.labels[:train]),
                   Split(full.test.images[:test], full.test.labels[:test]))


def unpack(params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense kernel [784, 10] (rows in the HWC flatten order), then bias [10]."""
    return params[:7840].reshape(784, 10), params[7840:]


def probabilities(params: np.ndarray, images: np.ndarray) -> np.ndarray:
    w, b = unpack(params)
    logits = images.reshape(len(images), -1).astype(np.float32) / 255 @ w + b
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def error_rate(params: np.ndarray, split: Split) -> float:
    return float(np.mean(probabilities(params, split.images).argmax(axis=1) != split.labels))


def gradient_fn(split: Split, seed: int, batch: int = 100, scale: float = 1.0):
    """Summed cross-entropy gradient of one mini-batch of the allocated ids, times `scale`."""
    rng = np.random.default_rng(seed)

    def gradient(params: np.ndarray, ids: np.ndarray):
        pick = rng.choice(ids, size=min(batch, len(ids)), replace=False)
        x = split.images[pick].reshape(len(pick), -1).astype(np.float32) / 255
        p = probabilities(params, split.images[pick])
        rows = np.arange(len(pick))
        loss = float(-np.log(p[rows, split.labels[pick]] + 1e-12).sum())
        p[rows, split.labels[pick]] -= 1  # d(summed loss)/d(logits)
        grad = np.concatenate([(x.T @ p).ravel(), p.sum(axis=0)]) * np.float32(scale)
        return grad.astype(np.float32), len(pick), loss
    return gradient
