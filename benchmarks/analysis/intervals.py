"""Intervals for "method A minus method B" that count both sources of noise: the held-out items and the seeds.

A run's score on the held-out set moves with the items it happened to be scored on and with its seed (data
order, sampling, initialisation of the trainable parts). Averaging each item over seeds and resampling the
items only treats the seed means as if they were exact: the seed-to-seed spread, often as large as the
differences between methods, never enters the interval. `seed_item_bootstrap` is a two-level
(hierarchical) bootstrap: each replicate resamples the items (the same items for both methods: the pairing
removes the items' own difficulty) and, independently per method, its seeds, so both variances enter.

Pure numpy; nothing here reads runs.
"""

from __future__ import annotations

import numpy as np

_CHUNK_BYTES = 32 * 2**20  # per array of one chunk of replicates: a few such arrays live at once


def _scores(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:  # one seed
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be [seeds, items] with at least one seed and one item, got {x.shape}")
    return x


def seed_item_bootstrap(
    a, b, n: int = 10_000, rng_seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its `level` percentile interval from a two-level bootstrap over items and seeds.

    `a` is [seeds_a, items]: method A's score per held-out item, one row per seed (a 1-D array is one seed);
    `b` is [seeds_b, items] for method B on the same items in the same order (seed counts may differ).
    Each of the `n` replicates draws the items with replacement (one draw for both methods: paired by item)
    and, independently per method, that method's seeds with replacement; its statistic is the mean of A's
    resampled scores minus the mean of B's. Items and seeds are crossed (every resampled seed is scored on
    every resampled item), so the statistic is sum_s sum_i c_s c_i a[s, i] / (seeds * items) with c the
    draw counts; it is computed per chunk of replicates as (seed counts @ scores) gathered at the drawn
    items, without a [replicates, seeds, items] array.

    With one seed per method the seed level draws nothing and this is the paired item bootstrap; with a
    few seeds the seed spread is under-stated by the bootstrap's (seeds - 1) / seeds, so the interval is, if
    anything, still too narrow. Deterministic given `rng_seed`.
    """
    a, b = _scores(a, "a"), _scores(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"a and b must be scored on the same items: a has {a.shape[1]} items, b has {b.shape[1]}"
        )
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(rng_seed)
    items = a.shape[1]
    chunk = max(1, _CHUNK_BYTES // (8 * items))
    stats = np.empty(n)
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        per_item = _seed_means(rng, a, size) - _seed_means(rng, b, size)  # [size, items]
        drawn = rng.integers(0, items, size=(size, items))
        stats[start : start + size] = np.take_along_axis(per_item, drawn, axis=1).mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(a.mean() - b.mean()), float(low), float(high)


def _seed_means(rng: np.random.Generator, x: np.ndarray, size: int) -> np.ndarray:
    """Per replicate, the per-item mean over `x`'s seeds drawn with replacement: [size, items]."""
    seeds = x.shape[0]
    if seeds == 1:
        return np.broadcast_to(x, (size, x.shape[1]))
    counts = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=size)  # [size, seeds]
    return counts @ x / seeds


def significant(low: float, high: float) -> bool:
    """Whether the interval [low, high] excludes 0."""
    return low > 0 or high < 0
