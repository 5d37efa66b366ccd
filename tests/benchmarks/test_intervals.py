"""benchmarks.analysis.intervals: the two-level (items x seeds) bootstrap of a difference between two
methods. The expected values come from a plain paired item bootstrap written here, from counting, or from
the data."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.analysis.intervals import seed_item_bootstrap, significant


def _items_only_bootstrap(a_items, b_items, n=10_000, seed=12345):
    """The textbook paired bootstrap, one replicate at a time: resample the items, mean of a - b."""
    diff = np.asarray(a_items) - np.asarray(b_items)
    rng = np.random.default_rng(seed)
    means = [diff[rng.integers(0, len(diff), size=len(diff))].mean() for _ in range(n)]
    low, high = np.percentile(means, [2.5, 97.5])
    return diff.mean(), low, high


def test_one_seed_each_is_the_paired_item_bootstrap():
    rng = np.random.default_rng(3)
    a = rng.binomial(1, 0.55, size=200).astype(float)
    b = np.where(rng.random(200) < 0.7, a, rng.binomial(1, 0.45, size=200))  # paired: b often agrees
    expected_mean, expected_low, expected_high = _items_only_bootstrap(a, b)
    mean, low, high = seed_item_bootstrap(a[None, :], b[None, :])
    half = (expected_high - expected_low) / 2
    assert mean == pytest.approx(expected_mean)
    assert low == pytest.approx(expected_low, abs=0.1 * half)  # Monte-Carlo error of two bootstraps
    assert high == pytest.approx(expected_high, abs=0.1 * half)
    assert seed_item_bootstrap(a, b) == (mean, low, high)  # a 1-D array is one seed


def test_a_constant_difference_has_no_spread():
    a = np.array([[0.0, 1.0, 1.0, 0.0, 0.5]])
    assert seed_item_bootstrap(a + 0.25, a) == pytest.approx((0.25, 0.25, 0.25))


def test_the_seed_level_alone_by_counting():
    """Items all alike, A's two seeds score 0 and 1 everywhere, B scores 0: a replicate's difference is the
    mean of two seeds drawn from {0, 1}: 0 (1/4), 0.5 (1/2) or 1 (1/4), so the 2.5% and 97.5% points are
    0 and 1, where a bootstrap of items only (seeds averaged first) has no spread at all."""
    a = np.array([[0.0] * 10, [1.0] * 10])
    b = np.zeros((3, 10))
    assert seed_item_bootstrap(a, b, n=4000) == pytest.approx((0.5, 0.0, 1.0))
    assert _items_only_bootstrap(a.mean(axis=0), b.mean(axis=0), n=200) == pytest.approx((0.5, 0.5, 0.5))


def test_large_seed_to_seed_spread_widens_the_interval_beyond_the_items_only_one():
    rng = np.random.default_rng(7)
    items = 300
    difficulty = rng.random(items)  # shared by both methods: the pairing takes it out

    def runs(seeds, effect):
        offsets = rng.normal(0.0, 0.15, size=(seeds, 1))  # a seed lifts or sinks every item
        return difficulty + effect + offsets + rng.normal(0.0, 0.05, size=(seeds, items))

    a, b = runs(3, 0.05), runs(2, 0.0)
    mean, low, high = seed_item_bootstrap(a, b)
    _, items_low, items_high = _items_only_bootstrap(a.mean(axis=0), b.mean(axis=0))
    assert mean == pytest.approx(a.mean() - b.mean())
    assert low <= mean <= high
    assert high - low > 3 * (items_high - items_low)  # the seeds' spread, not the items', dominates here


def test_same_distribution_contains_zero_and_a_large_difference_excludes_it():
    rng = np.random.default_rng(11)
    same_a = rng.binomial(1, 0.4, size=(5, 300)).astype(float)
    same_b = rng.binomial(1, 0.4, size=(3, 300)).astype(float)
    _, low, high = seed_item_bootstrap(same_a, same_b)
    assert low < 0 < high and not significant(low, high)
    better = rng.binomial(1, 0.8, size=(5, 300)).astype(float)
    mean, low, high = seed_item_bootstrap(better, same_b)
    assert mean == pytest.approx(better.mean() - same_b.mean())
    assert 0 < low < mean < high and significant(low, high)
    _, low, high = seed_item_bootstrap(same_b, better)
    assert low < high < 0 and significant(low, high)


def test_different_items_or_shapes_are_refused():
    with pytest.raises(ValueError, match="same items: a has 300 items, b has 299"):
        seed_item_bootstrap(np.zeros((5, 300)), np.zeros((3, 299)))
    with pytest.raises(ValueError, match=r"b must be \[seeds, items\]"):
        seed_item_bootstrap(np.zeros((2, 4)), np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"a must be \[seeds, items\] with at least one seed"):
        seed_item_bootstrap(np.zeros((0, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="level"):
        seed_item_bootstrap(np.zeros((1, 4)), np.zeros((1, 4)), level=95)


def test_the_same_rng_seed_gives_the_same_interval():
    rng = np.random.default_rng(5)
    a, b = rng.random((4, 50)), rng.random((2, 50))
    first = seed_item_bootstrap(a, b, n=2000, rng_seed=1)
    assert seed_item_bootstrap(a, b, n=2000, rng_seed=1) == first
    other = seed_item_bootstrap(a, b, n=2000, rng_seed=2)
    assert other[0] == first[0] and other[1:] != first[1:]


def test_the_level_sets_the_percentiles():
    rng = np.random.default_rng(9)
    a, b = rng.random((3, 80)), rng.random((3, 80))
    _, low95, high95 = seed_item_bootstrap(a, b)
    _, low50, high50 = seed_item_bootstrap(a, b, level=0.5)
    assert low95 < low50 < high50 < high95


def test_many_items_are_done_in_chunks_with_the_same_statistic():
    """More items than one chunk of replicates holds: still every replicate, and the seed level alone
    (items alike) by counting as above."""
    items = 600_000
    a = np.vstack([np.zeros(items), np.ones(items)])
    mean, low, high = seed_item_bootstrap(a, np.zeros((1, items)), n=40)
    assert (mean, low, high) == pytest.approx((0.5, 0.0, 1.0))


def test_significant_means_the_interval_excludes_zero():
    assert significant(0.01, 0.2) and significant(-0.3, -0.1)
    assert not significant(-0.1, 0.2) and not significant(0.0, 0.2) and not significant(-0.2, 0.0)
