"""Outer Nesterov momentum for local-SGD rounds (DiLoCo, Douillard et al. 2023, after Sutskever et al. 2013).

The pseudo-gradient is the sample-weighted mean of the trainers' parameter changes
(start - end of their inner steps). With momentum mu and outer rate lr (PyTorch's nesterov SGD):

    v = mu * v + delta
    w -= lr * (delta + mu * v)

With lr = 1 and mu = 0 this is plain parameter averaging (FedAvg).
"""

from __future__ import annotations

import numpy as np


def nesterov_step(params: np.ndarray, velocity: np.ndarray, delta: np.ndarray, *, learning_rate: float,
                  momentum: float) -> None:
    """Update `params` and `velocity` in place (float32 arrays of equal length)."""
    if not (params.shape == velocity.shape == delta.shape):
        raise ValueError("params, velocity and delta must have the same shape")
    mu = np.float32(momentum)
    velocity *= mu
    velocity += delta
    params -= np.float32(learning_rate) * (delta + mu * velocity)
