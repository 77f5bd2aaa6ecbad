"""Sample-weighted averaging of gradient sums (the reduce step), as the round loop does it: one streaming
accumulator that each gradient is added to as it arrives."""

import numpy as np
import pytest

from mlitb.training import GradientAccumulator


def mean_of(grads, counts):
    acc = GradientAccumulator(len(grads[0]))
    for g, n in zip(grads, counts):
        acc.add(g, n, loss_sum=float(n))
    return acc


def test_the_weighted_mean_matches_a_hand_computed_value():
    # client A: 2 samples with per-sample grads summing to [2, 4]; client B: 6 samples summing to [6, 0]
    acc = mean_of([np.array([2.0, 4.0], np.float32), np.array([6.0, 0.0], np.float32)], [2, 6])
    np.testing.assert_allclose(acc.mean(), [1.0, 0.5])
    assert (acc.samples, acc.contributions, acc.loss_sum) == (8, 2, 8.0)


def test_one_clients_update_comes_back_unchanged():
    g = np.random.default_rng(1).standard_normal(100).astype(np.float32)
    np.testing.assert_allclose(mean_of([g * 7], [7]).mean(), g, rtol=1e-6)


def test_client_order_changes_nothing():
    rng = np.random.default_rng(2)
    grads = [rng.standard_normal(50).astype(np.float32) for _ in range(5)]
    counts = [3, 1, 8, 2, 5]
    np.testing.assert_allclose(mean_of(grads, counts).mean(), mean_of(grads[::-1], counts[::-1]).mean(), rtol=1e-6)


def test_the_streaming_mean_is_the_sum_of_the_gradient_sums_over_the_sample_count():
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal(64).astype(np.float32) for _ in range(4)]
    counts = [10, 20, 30, 40]
    expected = np.sum(np.asarray(grads, np.float64), axis=0) / 100
    np.testing.assert_allclose(mean_of(grads, counts).mean(), expected, rtol=1e-5)


def test_no_samples_is_an_error_not_a_division_by_zero():
    with pytest.raises(ValueError):
        GradientAccumulator(3).mean()
