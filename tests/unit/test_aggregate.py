"""Sample-weighted averaging of gradient sums (the reduce step)."""

import numpy as np
import pytest

from mlitb.training import GradientAccumulator, weighted_average


def test_weighted_average_matches_a_hand_computed_value():
    # client A: 2 samples with per-sample grads summing to [2, 4]; client B: 6 samples summing to [6, 0]
    out = weighted_average([np.array([2.0, 4.0], np.float32), np.array([6.0, 0.0], np.float32)], [2, 6])
    np.testing.assert_allclose(out, [1.0, 0.5])


def test_one_clients_update_comes_back_unchanged():
    g = np.random.default_rng(1).standard_normal(100).astype(np.float32)
    np.testing.assert_allclose(weighted_average([g * 7], [7]), g, rtol=1e-6)


def test_client_order_changes_nothing():
    rng = np.random.default_rng(2)
    grads = [rng.standard_normal(50).astype(np.float32) for _ in range(5)]
    counts = [3, 1, 8, 2, 5]
    a = weighted_average(grads, counts)
    b = weighted_average(grads[::-1], counts[::-1])
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_streaming_accumulator_equals_the_batch_rule():
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal(64).astype(np.float32) for _ in range(4)]
    counts = [10, 20, 30, 40]
    acc = GradientAccumulator(64)
    for g, n in zip(grads, counts):
        acc.add(g, n, loss_sum=float(n))
    np.testing.assert_allclose(acc.mean(), weighted_average(grads, counts), rtol=1e-5)
    assert (acc.samples, acc.contributions, acc.loss_sum) == (100, 4, 100.0)


def test_no_samples_is_an_error_not_a_division_by_zero():
    with pytest.raises(ValueError):
        GradientAccumulator(3).mean()
    with pytest.raises(ValueError):
        weighted_average([], [])
