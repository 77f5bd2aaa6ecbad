"""Norm clipping then a capped sample-weighted mean: a robust reduce step (norm bounding).

Each client's per-sample mean gradient g_i = grad_sum_i / n_i is scaled down to an L2
norm of at most `max_norm` (Pascanu, Mikolov & Bengio 2013, "On the difficulty of training
recurrent neural networks"; as a defence against hostile clients: Sun, Kairouz, Suresh &
McMahan 2019, "Can You Really Backdoor Federated Learning?", norm bounding), then the
clipped vectors are averaged with weights w_i = min(n_i, median(n)).

Sample counts: a hostile client may claim a huge count to buy influence. Capping each
weight at the round's median count gives any one client at most the weight of a typical
client, while honest clients that did less work still weigh less. With equal counts the
rule is the plain mean of the clipped gradients; one client's update (within the norm)
comes back unchanged. A hostile client's share of the result has a norm of at most
max_norm * w_i / sum(w).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from mlitb.training.aggregate import client_arrays


def clip_to_norm(vector: np.ndarray, max_norm: float) -> np.ndarray:
    """`vector` scaled down to an L2 norm of at most `max_norm` (float32; a copy)."""
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    v = np.asarray(vector, dtype=np.float32)
    norm = float(np.sqrt(np.sum(np.square(v, dtype=np.float64))))  # float64: no overflow for huge entries
    if norm <= max_norm:
        return v.copy()
    return (v.astype(np.float64) * (max_norm / norm)).astype(np.float32)


def clipped_mean(grad_sums: Sequence[np.ndarray] | np.ndarray, counts: Sequence[int] | np.ndarray,
                 max_norm: float) -> np.ndarray:
    """Clip each client's per-sample mean gradient to `max_norm`, then average them with
    weights min(count, median count)."""
    sums, n = client_arrays(grad_sums, counts)
    weights = np.minimum(n, np.median(n))
    acc = np.zeros(sums.shape[1], dtype=np.float64)
    for g, count, w in zip(sums, n, weights):
        acc += w * clip_to_norm(g / np.float32(count), max_norm)
    return (acc / weights.sum()).astype(np.float32)
