"""Coordinate-wise median of the clients' per-sample mean gradients, a robust reduce step.

Yin, Chen, Ramchandran & Bartlett 2018, "Byzantine-Robust Distributed Learning: Towards
Optimal Statistical Rates" (ICML), Option I: each coordinate of the result is the median
of that coordinate over the clients' gradients g_i = grad_sum_i / n_i. While fewer than
half the clients are hostile, every coordinate lies between two honest clients' values,
however large the hostile ones are.

Sample counts: the median is over clients, unweighted: each client has one vote whatever
count it claims (a weighted median would let a hostile client buy the median with a huge
count). Counts only turn each client's sum into its per-sample mean. With an even number
of clients the two middle values are averaged (NumPy's median).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from mlitb.training.aggregate import client_arrays


def coordinate_median(grad_sums: Sequence[np.ndarray] | np.ndarray, counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """Per-coordinate median over clients of grad_sum_i / count_i (float32)."""
    sums, n = client_arrays(grad_sums, counts)
    return np.median(sums / n[:, None], axis=0).astype(np.float32)
