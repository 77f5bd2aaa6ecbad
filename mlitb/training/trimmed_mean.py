"""Coordinate-wise trimmed mean of the clients' per-sample mean gradients, a robust reduce step.

Yin, Chen, Ramchandran & Bartlett 2018, "Byzantine-Robust Distributed Learning: Towards
Optimal Statistical Rates" (ICML), Option II: for each coordinate, sort the clients'
values g_i = grad_sum_i / n_i, drop the m = floor(beta * k) largest and the m smallest of
the k clients, and average the rest. It tolerates up to m hostile clients; beta = 0 is the
plain unweighted mean over clients. beta must be in [0, 0.5), so at least one value is left.

Sample counts: the mean is over clients, unweighted, for the same reason as the median: a
claimed count must not buy influence. Counts only turn each sum into a per-sample mean.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from mlitb.training.aggregate import client_arrays


def trimmed_count(clients: int, beta: float) -> int:
    """Values dropped at each end: floor(beta * clients), robust to rounding (0.29 * 100 is 29)."""
    if not 0 <= beta < 0.5:
        raise ValueError(f"trim fraction must be in [0, 0.5), got {beta}")
    return math.floor(beta * clients + 1e-9)


def trimmed_mean(grad_sums: Sequence[np.ndarray] | np.ndarray, counts: Sequence[int] | np.ndarray,
                 beta: float) -> np.ndarray:
    """Per-coordinate mean over clients of grad_sum_i / count_i after dropping the
    floor(beta * k) largest and smallest values (float32)."""
    sums, n = client_arrays(grad_sums, counts)
    k = len(sums)
    m = trimmed_count(k, beta)
    ordered = np.sort(sums / n[:, None], axis=0)
    return ordered[m:k - m].mean(axis=0, dtype=np.float64).astype(np.float32)
