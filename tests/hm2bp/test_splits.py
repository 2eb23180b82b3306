"""`hm2bp.train.splits`: the split protocol, the seeded stratified hold-out and subset views of a split."""

import numpy as np
import pytest

from hm2bp.train import distributed as dp
from hm2bp.train.loader import SpikeLoader
from hm2bp.train.splits import SplitSource, SubsetSplit, holdout
from spikedata.store import open_store
from tests.hm2bp.synthetic import make_store


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return open_store(make_store(tmp_path_factory.mktemp("splits") / "s.zarr", n_train=90, n_test=10))["train"]


class _Labels:
    def __init__(self, labels):
        self.labels = labels


def test_holdout_is_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(4), [40, 20, 10, 1])
    src = _Labels(labels)
    kept, held = holdout(src, len(labels), 0.25, seed=3)
    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(labels)))
    # round(0.25 * 71) = 18 held out, by class in proportion (largest remainder): 10 + 5 + 3 + 0 or 10 + 5 + 2 + 1
    assert len(held) == 18 and np.bincount(labels[held], minlength=4)[:2].tolist() == [10, 5]
    assert np.all(np.diff(held) > 0) and np.all(np.diff(kept) > 0)
    again_kept, again_held = holdout(src, len(labels), 0.25, seed=3)
    assert np.array_equal(held, again_held) and np.array_equal(kept, again_kept)
    assert not np.array_equal(held, holdout(src, len(labels), 0.25, seed=4)[1])
    first = holdout(src, 60, 0.25, seed=3)  # the first 60 samples only
    assert first[0].max() < 60 and len(first[1]) == 15
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="`val_fraction` must lie in"):
            holdout(src, len(labels), bad, seed=0)


def test_subset_reads_exactly_its_samples(split):
    ids = np.array([1, 2, 5, 40, 41, 89])
    sub = SubsetSplit(split, ids, "valid")
    assert len(sub) == 6 and sub.name == "valid" and sub.n_units == split.n_units
    np.testing.assert_array_equal(sub.labels, split.labels[ids])
    for a, b in ((0, 6), (2, 5), (3, 3)):
        block = sub.read_range(a, b)
        dense = np.zeros((b - a, split.n_steps, split.n_units), bool)
        for k in range(b - a):
            t, u = block.times[block.indptr[k]:block.indptr[k + 1]], block.units[block.indptr[k]:block.indptr[k + 1]]
            dense[k, t, u] = True
        np.testing.assert_array_equal(dense, split.dense(ids[a:b]))
        np.testing.assert_array_equal(block.labels, split.labels[ids[a:b]])
    with pytest.raises(IndexError):
        sub.read_range(0, 7)
    with pytest.raises(ValueError, match="sorted and unique"):
        SubsetSplit(split, np.array([3, 2]), "x")


def test_loader_over_a_subset_serves_its_samples(split):
    ids = np.sort(np.random.default_rng(0).choice(len(split), 37, replace=False))
    sub = SubsetSplit(split, ids, "valid")
    batches = list(SpikeLoader(sub, 8, prefetch=0, block_size=16).epoch(0))
    assert sum(len(b) for b in batches) == 37
    for b in batches:
        np.testing.assert_array_equal(b.spikes.numpy(), split.dense(ids[b.indices]))


def test_every_split_kind_is_a_split_source(split):
    sub = SubsetSplit(split, np.arange(10), "valid")
    shard = dp.shard_split(sub, dp.World(rank=1, world_size=2, backend="gloo"))
    for s in (split, sub, shard):
        assert isinstance(s, SplitSource)
    np.testing.assert_array_equal(shard.labels, split.labels[5:10])
