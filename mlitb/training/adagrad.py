"""AdaGrad with L1/L2 decay (Duchi, Hazan & Singer 2011), the MLitB master's update rule.

    g = grad + l2 * w + l1 * sign(w)
    h += g * g
    w -= lr * g / (sqrt(h) + eps)
"""

from __future__ import annotations

import numpy as np


def adagrad_step(params: np.ndarray, history: np.ndarray, grad: np.ndarray, *,
                 learning_rate: float, epsilon: float = 1e-8, l1: float = 0.0, l2: float = 0.0) -> None:
    """Update `params` and `history` in place (float32 arrays of equal length)."""
    if not (params.shape == history.shape == grad.shape):
        raise ValueError("params, history and grad must have the same shape")
    g = grad.astype(np.float32, copy=True)
    if l2:
        g += np.float32(l2) * params
    if l1:
        g += np.float32(l1) * np.sign(params)
    history += g * g
    params -= np.float32(learning_rate) * g / (np.sqrt(history) + np.float32(epsilon))
