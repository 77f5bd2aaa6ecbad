"""Sample-weighted gradient averaging (the reduce step of MLitB, Meeds et al. 2015, §3.3 c).

Trainers send the SUM of their per-sample gradients and their sample count, so the
weighted average is sum(grad_sums) / sum(counts). `GradientAccumulator` adds each
gradient as it arrives, so the reduce holds one vector whatever the number of clients.
"""

from __future__ import annotations

import numpy as np


def weighted_average(grad_sums: list[np.ndarray], counts: list[int]) -> np.ndarray:
    """Average per-sample gradient over all clients, weighting each by its sample count."""
    if not grad_sums or len(grad_sums) != len(counts):
        raise ValueError("need one count per gradient and at least one gradient")
    total = sum(counts)
    if total <= 0:
        raise ValueError("total sample count must be positive")
    acc = np.zeros_like(grad_sums[0], dtype=np.float64)
    for g in grad_sums:
        acc += g
    return (acc / total).astype(np.float32)


def client_arrays(grad_sums, counts) -> tuple[np.ndarray, np.ndarray]:
    """Checked (clients, parameters) float32 gradient sums and float64 sample counts, the
    common input of the robust rules."""
    sums = np.asarray(grad_sums, dtype=np.float32)
    n = np.asarray(counts, dtype=np.float64)
    if sums.ndim != 2 or len(sums) == 0 or n.shape != (len(sums),):
        raise ValueError("need a (clients, parameters) array of gradient sums and one count per client")
    if not (n > 0).all():
        raise ValueError("every sample count must be positive")
    return sums, n


class GradientAccumulator:
    """Streaming sum of gradient sums and counts; `mean()` gives the weighted average."""

    def __init__(self, size: int):
        # float32, at memory speed: a sum that overflows (absurd gradients) makes the step
        # non-finite, and the round loop skips such a step rather than apply it
        self.sum = np.zeros(size, dtype=np.float32)
        self.samples = 0
        self.loss_sum = 0.0
        self.contributions = 0

    def add(self, grad_sum: np.ndarray, samples: int, loss_sum: float = 0.0) -> None:
        np.add(self.sum, grad_sum, out=self.sum)
        self.samples += samples
        self.loss_sum += loss_sum
        self.contributions += 1

    def mean(self) -> np.ndarray:
        if self.samples <= 0:
            raise ValueError("no samples accumulated")
        return self.sum / np.float32(self.samples)
