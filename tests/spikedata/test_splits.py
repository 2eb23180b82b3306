"""Seeded stratified splits and subsets: exact counts per class, determinism, independence of the input order."""

import numpy as np
import pytest

from spikedata.splits import largest_remainder, rank_keys, stratified_split, stratified_subset


def _data(counts=(50, 31, 7, 12)):
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    keys = [f"c{c}/file_{i:04d}.bin" for c, n in enumerate(counts) for i in range(n)]
    return labels, keys


def test_split_is_stratified_and_exact():
    labels, keys = _data()
    train, test = stratified_split(labels, keys, 0.2, seed=3)
    assert len(test) == round(0.2 * 100) and len(train) == 80
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(100))
    per_class = np.bincount(labels[test], minlength=4)
    assert per_class.sum() == 20
    assert all(abs(per_class[c] - 0.2 * n) < 1 for c, n in enumerate((50, 31, 7, 12)))
    assert np.all(np.diff(test) > 0) and np.all(np.diff(train) > 0)


def test_split_is_deterministic_and_seed_dependent():
    labels, keys = _data()
    a = stratified_split(labels, keys, 0.25, seed=7)
    b = stratified_split(labels, keys, 0.25, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    c = stratified_split(labels, keys, 0.25, seed=8)
    assert not np.array_equal(a[1], c[1])


def test_split_depends_on_keys_not_order():
    """Shuffling the listing does not move a sample to the other side; neither does adding files."""
    labels, keys = _data()
    _, test = stratified_split(labels, keys, 0.2, seed=1)
    chosen = {keys[i] for i in test}
    perm = np.random.default_rng(0).permutation(len(keys))
    _, test2 = stratified_split(labels[perm], [keys[i] for i in perm], 0.2, seed=1)
    assert {keys[perm[i]] for i in test2} == chosen


def test_rank_is_a_fixed_function():
    """The ranking is blake2b of (seed, key), not a random stream: a fixed value pins it across machines."""
    import hashlib

    digest = hashlib.blake2b((5).to_bytes(8, "little", signed=True) + b"\x00a/b.bin", digest_size=8).digest()
    assert rank_keys(["a/b.bin"], 5)[0] == int.from_bytes(digest, "little")


def test_subset_keeps_proportions():
    labels, keys = _data()
    idx = stratified_subset(labels, keys, 10, seed=0)
    assert len(idx) == 10 and np.bincount(labels[idx], minlength=4).tolist() == [5, 3, 1, 1]
    assert np.array_equal(idx, stratified_subset(labels, keys, 10, seed=0))
    assert len(stratified_subset(labels, keys, 1000, seed=0)) == 100
    # a bigger subset contains the smaller one (same ranking)
    assert set(idx.tolist()) <= set(stratified_subset(labels, keys, 40, seed=0).tolist())


def test_largest_remainder_and_errors():
    assert largest_remainder(np.array([50, 31, 7, 12]), 10).tolist() == [5, 3, 1, 1]
    assert largest_remainder(np.array([1, 1, 1]), 2).tolist() == [1, 1, 0]
    labels, keys = _data()
    with pytest.raises(ValueError, match="strictly between"):
        stratified_split(labels, keys, 1.0, 0)
    with pytest.raises(ValueError, match="unique"):
        stratified_split(labels[:2], ["a", "a"], 0.5, 0)
