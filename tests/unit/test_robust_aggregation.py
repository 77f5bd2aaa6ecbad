"""Robust aggregation rules (centred clipping, norm-clipped mean, coordinate-wise median, trimmed mean) and the per-project choice."""

import numpy as np
import pytest
from pydantic import ValidationError

from mlitb.master.project import Hyper
from mlitb.training import (GradientAccumulator, RobustAggregator, centered_clip, clip_to_norm, clipped_mean,
                            coordinate_median, make_aggregator, trimmed_count, trimmed_mean)

ROBUST = {
    "centered_clip": lambda sums, counts: centered_clip(sums, counts),
    "median": lambda sums, counts: coordinate_median(sums, counts),
    "trimmed_mean": lambda sums, counts: trimmed_mean(sums, counts, 0.2),
    "clipped_mean": lambda sums, counts: clipped_mean(sums, counts, 1e6),
}


def f32(*rows):
    return np.array(rows, dtype=np.float32)


# ---- values by hand --------------------------------------------------------------------------------
def test_median_of_three_clients_matches_a_hand_computed_value():
    # per-sample means: [1, 10], [2, -4], [30, 0] (the sums divided by counts 1, 2, 3)
    out = coordinate_median(f32([1, 10], [4, -8], [90, 0]), [1, 2, 3])
    np.testing.assert_array_equal(out, [2, 0])


def test_median_of_an_even_number_of_clients_averages_the_two_middle_values():
    out = coordinate_median(f32([1], [2], [4], [100]), [1, 1, 1, 1])
    np.testing.assert_array_equal(out, [3])


def test_trimmed_mean_drops_the_extremes_of_each_coordinate_then_averages():
    # 5 clients, beta 0.2: one value dropped at each end, per coordinate independently
    sums = f32([1, 50], [2, -1], [3, 0], [4, 1], [-100, 2])
    np.testing.assert_allclose(trimmed_mean(sums, [1] * 5, 0.2), [2, 1], atol=1e-7)  # mean(1,2,3), mean(0,1,2)


def test_trimmed_mean_with_beta_zero_is_the_unweighted_mean_over_clients():
    sums, counts = f32([2, 4], [6, 0]), [2, 6]  # per-sample means [1, 2] and [1, 0]
    np.testing.assert_allclose(trimmed_mean(sums, counts, 0.0), [1, 1])


def test_clipping_scales_a_long_vector_to_the_norm_and_keeps_a_short_one():
    np.testing.assert_allclose(clip_to_norm(f32(3, 4), 1.0), [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(clip_to_norm(f32(0.3, 0.4), 1.0), f32(0.3, 0.4))


def test_clipped_mean_matches_a_hand_computed_value():
    # means [3, 4] (norm 5 -> [0.6, 0.8]) and [0, 0.5] (kept); equal counts -> plain average
    out = clipped_mean(f32([6, 8], [0, 1]), [2, 2], max_norm=1.0)
    np.testing.assert_allclose(out, [0.3, 0.65], rtol=1e-6)


def test_clipped_mean_weighs_counts_but_caps_each_at_the_median_count():
    # counts 1, 3, 1000: median 3, weights 1, 3, 3; all means are within the norm
    sums = f32([1.0], [3 * 2.0], [1000 * 10.0])
    out = clipped_mean(sums, [1, 3, 1000], max_norm=100.0)
    np.testing.assert_allclose(out, [(1 * 1 + 3 * 2 + 3 * 10) / 7], rtol=1e-6)


# ---- invariants --------------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", sorted(ROBUST))
def test_one_clients_update_comes_back_unchanged(rule):
    g = np.random.default_rng(1).standard_normal(100).astype(np.float32)
    np.testing.assert_allclose(ROBUST[rule](g[None] * 7, [7]), g, rtol=1e-6)


@pytest.mark.parametrize("rule", sorted(ROBUST))
def test_client_order_changes_nothing(rule):
    rng = np.random.default_rng(2)
    sums = rng.standard_normal((7, 50)).astype(np.float32)
    counts = np.array([3, 1, 8, 2, 5, 4, 6])
    order = rng.permutation(7)
    np.testing.assert_allclose(ROBUST[rule](sums, counts), ROBUST[rule](sums[order], counts[order]), rtol=1e-6)


@pytest.mark.parametrize("rule", sorted(ROBUST))
def test_identical_clients_give_their_common_update(rule):
    g = np.linspace(-1, 1, 9).astype(np.float32)
    np.testing.assert_allclose(ROBUST[rule](np.stack([g * 4] * 5), [4] * 5), g, rtol=1e-6, atol=1e-7)


def test_median_ignores_a_minority_of_huge_outliers():
    rng = np.random.default_rng(3)
    honest = rng.uniform(-1, 1, (7, 20)).astype(np.float32)
    hostile = np.full((3, 20), 1e30, np.float32)
    out = coordinate_median(np.vstack([honest, hostile]), [1] * 10)
    assert (out >= honest.min(axis=0)).all() and (out <= honest.max(axis=0)).all()


def test_trimmed_mean_ignores_as_many_outliers_at_each_end_as_it_trims():
    rng = np.random.default_rng(4)
    honest = rng.uniform(-1, 1, (6, 20)).astype(np.float32)
    hostile = np.vstack([np.full((1, 20), 1e30), np.full((1, 20), -1e30)]).astype(np.float32)
    out = trimmed_mean(np.vstack([honest, hostile]), [1] * 8, 0.125)  # floor(0.125 * 8) = 1 each side
    assert (np.abs(out) <= 1).all()
    np.testing.assert_allclose(out, honest.mean(axis=0), rtol=1e-5)


def test_a_huge_claimed_sample_count_buys_no_influence_in_the_median_or_trimmed_mean():
    means = f32([1.0], [2.0], [3.0], [4.0], [500.0])
    fair = [1] * 5
    greedy = [1, 1, 1, 1, 10**9]
    sums = means * np.array(greedy, np.float32)[:, None]
    np.testing.assert_array_equal(coordinate_median(sums, greedy), coordinate_median(means, fair))
    np.testing.assert_allclose(trimmed_mean(sums, greedy, 0.2), trimmed_mean(means, fair, 0.2))


def test_clipping_bounds_the_norm_of_the_result():
    rng = np.random.default_rng(5)
    sums = (rng.standard_normal((6, 40)) * 1e6).astype(np.float32)
    for max_norm in (0.5, 3.0):
        out = clipped_mean(sums, [1, 5, 9, 2, 2, 100], max_norm)
        assert np.linalg.norm(out) <= max_norm * (1 + 1e-6)


def test_clipping_does_not_overflow_for_finite_float32_extremes():
    v = np.full(4, 3e38, np.float32)  # its float32 squared norm would be infinite
    np.testing.assert_allclose(clip_to_norm(v, 2.0), [1, 1, 1, 1], rtol=1e-6)


# ---- limits just inside and just past ------------------------------------------------------------------
def test_trim_fraction_zero_drops_nothing_and_the_largest_allowed_still_leaves_one_value():
    assert trimmed_count(10, 0.0) == 0
    assert trimmed_count(10, 0.49) == 4  # 10 - 2 * 4 = 2 values averaged
    assert trimmed_count(3, 0.49) == 1  # 1 value left: the median
    assert trimmed_count(100, 0.29) == 29  # 0.29 * 100 is 28.999... in binary
    np.testing.assert_array_equal(trimmed_mean(f32([1], [5], [9]), [1, 1, 1], 0.49), [5])


@pytest.mark.parametrize("beta", [-0.01, 0.5, 0.51])
def test_trim_fraction_outside_zero_to_one_half_is_refused(beta):
    with pytest.raises(ValueError):
        trimmed_mean(f32([1], [2]), [1, 1], beta)


def test_clip_norm_at_the_vectors_norm_keeps_it_and_just_below_shrinks_it():
    v = f32(3, 4)  # norm 5
    np.testing.assert_array_equal(clip_to_norm(v, 5.0), v)
    assert np.linalg.norm(clip_to_norm(v, 4.999)) == pytest.approx(4.999, rel=1e-6)


@pytest.mark.parametrize("max_norm", [0.0, -1.0])
def test_a_clip_norm_that_is_not_positive_is_refused(max_norm):
    with pytest.raises(ValueError):
        clip_to_norm(f32(1), max_norm)


@pytest.mark.parametrize("rule", sorted(ROBUST))
def test_no_clients_or_a_non_positive_count_is_an_error(rule):
    with pytest.raises(ValueError):
        ROBUST[rule](np.zeros((0, 3), np.float32), [])
    with pytest.raises(ValueError):
        ROBUST[rule](f32([1, 2]), [0])
    with pytest.raises(ValueError):
        ROBUST[rule](f32([1, 2], [3, 4]), [1])


# ---- the per-project choice -------------------------------------------------------------------------------
def test_hyper_defaults_to_centred_clipping_and_validates_the_new_keys():
    h = Hyper()
    assert (h.aggregation, h.trim_fraction) == ("centered_clip", 0.2) and h.clip_norm > 0
    Hyper(trim_fraction=0.0)
    Hyper(trim_fraction=0.499)
    Hyper(clip_norm=1e-9)
    for bad in ({"trim_fraction": 0.5}, {"trim_fraction": -0.01}, {"clip_norm": 0.0}, {"aggregation": "krum"}):
        with pytest.raises(ValidationError):
            Hyper(**bad)


def test_make_aggregator_gives_the_streaming_mean_only_when_mean_is_chosen():
    assert isinstance(make_aggregator(Hyper(aggregation="mean"), 4), GradientAccumulator)
    assert isinstance(make_aggregator(Hyper(), 4), RobustAggregator)


@pytest.mark.parametrize("rule,expected", [("median", [2.0]), ("trimmed_mean", [2.0]), ("clipped_mean", [1.0])])
def test_make_aggregator_applies_the_projects_rule_and_keeps_the_round_totals(rule, expected):
    agg = make_aggregator(Hyper(aggregation=rule, clip_norm=1.0, trim_fraction=0.34), 1)
    assert isinstance(agg, RobustAggregator)
    for mean, n in ((1.0, 2), (2.0, 3), (300.0, 1)):
        agg.add(np.array([mean * n], np.float32), n, loss_sum=float(n))
    np.testing.assert_allclose(agg.mean(), expected)
    assert (agg.samples, agg.contributions, agg.loss_sum) == (6, 3, 6.0)


def test_the_robust_aggregator_copies_each_gradient_it_is_given():
    agg = make_aggregator(Hyper(aggregation="median"), 2)
    g = np.array([1.0, 2.0], np.float32)
    agg.add(g, 1)
    g[:] = 99
    np.testing.assert_array_equal(agg.mean(), [1.0, 2.0])


def test_the_robust_aggregator_refuses_a_wrong_length_and_an_empty_round():
    agg = make_aggregator(Hyper(aggregation="trimmed_mean"), 3)
    with pytest.raises(ValueError):
        agg.mean()
    with pytest.raises(ValueError):
        agg.add(np.zeros(2, np.float32), 1)


def test_results_of_one_group_are_one_vote_their_summed_gradient_over_their_summed_count():
    agg = make_aggregator(Hyper(aggregation="median"), 1)
    agg.add(np.array([1.0], np.float32), 1, group="10.0.0.1")
    agg.add(np.array([2.0], np.float32), 1, group="10.0.0.2")
    for _ in range(3):  # three colluding trainers of one address, far away: one vote of per-sample mean 100
        agg.add(np.array([100.0], np.float32), 1, group="10.0.0.9")
    np.testing.assert_allclose(agg.mean(), [2.0])  # median of 1, 2, 100; three separate votes would give 100
    assert (agg.samples, agg.contributions) == (5, 5)
    alone = make_aggregator(Hyper(aggregation="median"), 1)
    alone.add(np.array([2.0], np.float32), 2, group="a")
    alone.add(np.array([6.0], np.float32), 2, group="a")
    np.testing.assert_allclose(alone.mean(), [2.0])  # (2 + 6) / (2 + 2)


def test_bound_votes_scales_only_public_address_votes_above_the_bound_and_keeps_their_direction():
    agg = RobustAggregator(2, centered_clip)
    agg.add(np.array([300.0, 400.0], np.float32), 10, group=("address", "203.0.113.9"))  # per-sample norm 50
    agg.add(np.array([6.0, 8.0], np.float32), 10, group=("address", "198.51.100.7"))  # per-sample norm 1: kept
    agg.add(np.array([3000.0, 0.0], np.float32), 10, group=("client", 3))  # an exempt trainer's vote: trusted
    assert agg.bound_votes(2.0) == 1
    np.testing.assert_allclose(agg._sums[0], [12.0, 16.0], rtol=1e-6)  # norm 2 per sample, same direction
    np.testing.assert_array_equal(agg._sums[1], [6.0, 8.0])
    np.testing.assert_array_equal(agg._sums[2], [3000.0, 0.0])
    assert agg.bound_votes(2.0) == 0  # just at the bound: kept


def test_with_a_reference_a_round_of_fewer_than_three_votes_is_centred_on_it_and_a_flipped_vote_cannot_turn_it():
    honest = np.array([1.0, 0.0], np.float32)
    agg = RobustAggregator(2, centered_clip)
    agg.add(honest * 100, 100, group=("address", "198.51.100.7"))
    agg.add(-2 * honest * 5000, 5000, group=("address", "203.0.113.9"))  # flipped, outweighing by its count
    assert np.dot(agg.mean(), honest) < 0  # without the reference: the mean ascends
    agg.bound_votes(2.0, reference=honest)
    step = agg.mean()
    assert 0 <= np.dot(step, honest) <= 1.0 + 1e-6  # cancelled at worst, never turned
    three = RobustAggregator(2, centered_clip)  # three votes: the median rule as before, the reference unused
    for g, key in ((honest, "a"), (honest, "b"), (-honest, "c")):
        three.add(g, 1, group=("address", key))
    three.bound_votes(10.0, reference=np.array([0.0, 5.0], np.float32))
    np.testing.assert_allclose(three.mean(), centered_clip(np.stack([honest, honest, -honest]), np.ones(3)))
