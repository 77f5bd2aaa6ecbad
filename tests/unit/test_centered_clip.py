"""The default aggregation rule, centred clipping around the coordinate-wise median: values by hand and its bound."""

import numpy as np

from mlitb.training import centered_clip


def f32(*rows):
    return np.array(rows, dtype=np.float32)


def test_centred_clipping_matches_a_hand_computed_value():
    # per-sample means [0, 0], [2, 0], [0, 20]; centre (median per coordinate) [0, 0];
    # deviation norms 0, 2, 20 -> radius 2: the third deviation is scaled to [0, 2]; equal weights
    out = centered_clip(f32([0, 0], [4, 0], [0, 40]), [2, 2, 2])
    np.testing.assert_allclose(out, [2 / 3, 2 / 3], rtol=1e-6)


def test_two_clients_give_their_count_weighted_mean():
    # the centre is their midpoint and both deviations equal the radius: nothing is clipped;
    # counts 1 and 3 have median 2, so the weights are 1 and 2
    out = centered_clip(f32([1.0, 0.0], [3 * 4.0, 3 * 2.0]), [1, 3])
    np.testing.assert_allclose(out, [(1 * 1 + 2 * 4) / 3, (0 + 2 * 2) / 3], rtol=1e-6)


def test_a_hostile_minority_moves_the_result_at_most_its_share_of_the_radius():
    rng = np.random.default_rng(3)
    honest = rng.standard_normal((7, 1000)).astype(np.float32) * 0.1 + 1.0
    clean = centered_clip(honest, [1] * 7)
    for attack in (np.full(1000, 1e6, np.float32), -1e4 * honest[0], rng.standard_normal(1000).astype(np.float32) * 1e5):
        sums = np.vstack([honest, attack[None], attack[None]])
        out = centered_clip(sums, [1] * 9)
        centre = np.median(sums, axis=0)  # counts are 1: the sums are the per-sample means
        radius = np.median(np.linalg.norm(sums - centre, axis=1))
        # each of the 2 hostile clients adds at most radius/9; the honest part moves with the centre, itself
        # bounded by the honest spread
        assert np.linalg.norm(out - clean) < 2 * radius / 9 + np.linalg.norm(centre - np.median(honest, axis=0)) + 0.05
        # against attacks of norm 3e3 .. 3e7, the result stays within a few percent of the honest one (norm ~32)
        assert np.linalg.norm(out - clean) < 0.05 * np.linalg.norm(clean)


def test_a_huge_claimed_count_buys_no_more_than_the_median_weight():
    honest = f32([1.0, 1.0], [1.2, 0.8], [0.8, 1.2])
    inflated = np.vstack([honest, f32([-5e6, -5e6])])  # a per-sample mean of [-5, -5] claimed over 1e6 samples
    out = centered_clip(inflated, [1, 1, 1, 1_000_000])
    assert np.all(out > 0.4), out


def test_past_the_centre_sample_the_centre_is_a_random_samples_median_and_still_robust():
    rng = np.random.default_rng(5)
    honest = rng.standard_normal((150, 200)).astype(np.float32) * 0.1 + 1.0
    hostile = np.full((50, 200), -1e5, np.float32)  # a quarter of 200 clients
    sums = np.vstack([hostile, honest])
    a = centered_clip(sums, [1] * 200, np.random.default_rng(1))
    b = centered_clip(sums, [1] * 200, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)  # the draw is the generator's: a seeded replay gives the same result
    assert np.linalg.norm(a - honest.mean(axis=0)) < 0.2 * np.linalg.norm(honest.mean(axis=0))
