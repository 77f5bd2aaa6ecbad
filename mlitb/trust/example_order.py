"""The example order a trainer of an open project follows, derived from the seed in its WORK frame.

Byte-for-byte twin of `web/src/compute/example_order.ts` (tests/unit/test_example_order.py runs both):
a Fisher-Yates shuffle of the positions 0..m-1 of the trainer's held examples (its ALLOC ids, sorted)
driven by xorshift32 (Marsaglia 2003, "Xorshift RNGs"; shifts 13, 17, 5) from the seed. The trainer
trains on examples order[0], order[1], ... (cycling after m) and reports how many it used, so the
master can recompute any result after the fact (spot_check.py), and a new seed every round keeps
the trainer from knowing in advance which examples a check would look at.
"""

from __future__ import annotations

import numpy as np

ZERO_SEED_STATE = 0x9E3779B9  # xorshift32 must not start at 0


def example_order(seed: int, count: int) -> np.ndarray:
    """The permutation (uint32) of positions 0..count-1 that seed `seed` gives."""
    state = (seed & 0xFFFFFFFF) or ZERO_SEED_STATE
    order = list(range(count))
    for i in range(count - 1, 0, -1):
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        j = state % (i + 1)
        order[i], order[j] = order[j], order[i]
    return np.asarray(order, dtype=np.uint32)


def examples_used(seed: int, held: np.ndarray, samples: int) -> np.ndarray:
    """The data ids of the first `samples` examples of the order over `held` (sorted ids), cycling."""
    order = example_order(seed, len(held))
    return np.asarray(held, dtype=np.uint32)[order[np.arange(samples) % len(order)]]
