"""GradientAccumulator.add_finite: a gradient with a NaN or an infinity anywhere is refused and
leaves the sum bit for bit unchanged, in both modes (checked whole; checked and added block by
block, with exact redo and snapshots)."""

import numpy as np
import pytest

from mlitb.training import GradientAccumulator
from mlitb.training import aggregate

BAD = (np.nan, np.inf, -np.inf)


def _grads(size, count, seed=0):
    rng = np.random.default_rng(seed)
    # mixed magnitudes, so that float32 additions round and a subtraction would not undo them
    return [(rng.standard_normal(size) * 10.0 ** rng.integers(-6, 6, size)).astype(np.float32) for _ in range(count)]


def _positions(size):
    block = aggregate.BLOCK
    last_full = (size // block) * block
    return sorted({0, 1, block - 1, block, block + 1, last_full - 1, last_full, size - 1} & set(range(size)))


@pytest.mark.parametrize("size", [1000, aggregate.FUSED_MIN + 5 * aggregate.BLOCK + 123])
def test_refused_gradient_leaves_the_sum_unchanged(size):
    acc = GradientAccumulator(size)
    assert acc.mode == ("blocks" if size > aggregate.FUSED_MIN else "spare")
    good = _grads(size, 5)
    expected = np.zeros(size, np.float32)
    for i, g in enumerate(good):
        assert acc.add_finite(g, 3, 1.5)
        expected += g
        for pos in _positions(size):
            for bad_value in BAD:
                bad = g.copy()
                bad[pos] = bad_value
                before = acc.sum.copy()
                assert not acc.add_finite(bad, 3, 1.5)
                assert acc.sum.tobytes() == before.tobytes(), (i, pos, bad_value)
        assert acc.sum.tobytes() == expected.tobytes()
    assert (acc.samples, acc.loss_sum, acc.contributions) == (15, 7.5, 5)
    np.testing.assert_array_equal(acc.mean(), expected / np.float32(15))


def test_fused_snapshots_and_unchecked_adds_match_a_plain_sum(monkeypatch):
    size = aggregate.FUSED_MIN + 3 * aggregate.BLOCK + 7
    monkeypatch.setattr(aggregate, "REDO_BYTES", 3 * 4 * size)  # a snapshot every 3 gradients
    monkeypatch.setattr(aggregate, "MIN_KEEP", 2)
    acc = GradientAccumulator(size)
    assert (acc.mode, acc.snapshot_every) == ("blocks", 3)
    expected = np.zeros(size, np.float32)
    for i, g in enumerate(_grads(size, 11, seed=1)):
        if i % 4 == 3:
            acc.add(g, 1)  # unchecked (a late gradient's weighted share) also counts for the redo
        else:
            assert acc.add_finite(g, 1)
        expected += g
        bad = g.copy()
        bad[[0, size // 2, size - 1][i % 3]] = np.nan
        before = acc.sum.copy()
        assert not acc.add_finite(bad, 1)  # refused in place, or during a snapshot
        assert acc.sum.tobytes() == before.tobytes()
        assert acc.sum.tobytes() == expected.tobytes()
    assert acc.contributions == 11


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_overflowing_but_finite_gradient_is_accepted():
    for size in (100, aggregate.FUSED_MIN + 10):
        acc = GradientAccumulator(size)
        g = np.full(size, 3e38, np.float32)  # its sum of squares overflows; every value is finite
        assert acc.add_finite(g, 1)
        assert acc.add_finite(g, 1)  # the sum overflows to inf: the round loop skips such a step
        assert np.isinf(acc.sum).all()


@pytest.mark.parametrize("size", [10, aggregate.FUSED_MIN + 10])
def test_wrong_shape_is_an_error(size):
    acc = GradientAccumulator(size)
    with pytest.raises(ValueError):
        acc.add_finite(np.zeros(size - 1, np.float32), 1)
    with pytest.raises(ValueError):
        acc.add_finite(np.zeros(1, np.float32), 1)  # not broadcast


def test_gradients_too_large_to_keep_are_checked_whole():
    size = aggregate.REDO_BYTES // 4 // aggregate.MIN_KEEP + 1
    acc = GradientAccumulator(size)
    assert acc.mode == "whole"
    g = np.ones(size, np.float32)
    assert acc.add_finite(g, 1)
    for pos in (0, size // 2, size - 1):
        bad = g.copy()
        bad[pos] = np.inf
        assert not acc.add_finite(bad, 1)
    assert (acc.sum == 1).all() and acc.contributions == 1
