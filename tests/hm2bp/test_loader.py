"""Streaming loader: every sample once per epoch, seeded reproducible order, dense batches equal Split.dense."""

import numpy as np
import pytest
import torch

from hm2bp.train.loader import SpikeLoader, dense_from_events
from spikedata.store import open_store
from tests.hm2bp.synthetic import make_store


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    path = make_store(tmp_path_factory.mktemp("loader") / "s.zarr", n_train=150, n_test=20)
    return open_store(path)["train"]


def _epoch(loader, epoch):
    return list(loader.epoch(epoch))


LAYOUTS = [dict(), dict(block_size=16, buffer_samples=40), dict(block_size=7, buffer_samples=1)]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_epoch_covers_every_sample_once_and_matches_dense(split, layout):
    loader = SpikeLoader(split, 32, shuffle=True, seed=5, **layout)
    batches = _epoch(loader, 2)
    assert len(batches) == len(loader) == 5
    assert [len(b) for b in batches] == [32, 32, 32, 32, 22]
    order = np.concatenate([b.indices for b in batches])
    np.testing.assert_array_equal(np.sort(order), np.arange(150))
    np.testing.assert_array_equal(order, loader.epoch_order(2))
    for b in batches:
        assert b.spikes.dtype == torch.bool and b.spikes.shape == (len(b), split.n_steps, split.n_units)
        assert torch.equal(b.spikes, torch.from_numpy(split.dense(b.indices)))
        np.testing.assert_array_equal(b.labels.numpy(), split.labels[b.indices])


def test_seeded_order_is_reproducible_and_changes_with_epoch_and_seed(split):
    a = SpikeLoader(split, 16, shuffle=True, seed=1)
    b = SpikeLoader(split, 16, shuffle=True, seed=1, prefetch=0)
    np.testing.assert_array_equal(a.epoch_order(3), np.concatenate([x.indices for x in b.epoch(3)]))
    assert not np.array_equal(a.epoch_order(0), a.epoch_order(1))
    assert not np.array_equal(a.epoch_order(0), SpikeLoader(split, 16, shuffle=True, seed=2).epoch_order(0))
    assert not np.array_equal(a.epoch_order(0), np.arange(150))
    # Small buffers: the order mixes only within a buffer of blocks but is still a seeded permutation.
    c = SpikeLoader(split, 16, shuffle=True, seed=1, block_size=10, buffer_samples=30)
    order = c.epoch_order(0)
    np.testing.assert_array_equal(order, c.epoch_order(0))
    first_buffer_blocks = {int(i) // 10 for i in order[:30]}
    assert len(first_buffer_blocks) == 3


def test_sequential_limit_and_early_stop(split):
    loader = SpikeLoader(split, 64, limit=100, block_size=30)
    batches = _epoch(loader, 0)
    np.testing.assert_array_equal(np.concatenate([b.indices for b in batches]), np.arange(100))
    assert torch.equal(batches[1].spikes, torch.from_numpy(split.dense(np.arange(64, 100))))
    it = loader.epoch(0)
    next(it)
    it.close()  # stopping mid-epoch must not hang the prefetch thread


def test_dense_from_events_hand_example():
    indptr = np.array([0, 2, 2, 5])
    times = np.array([1, 3, 0, 0, 2])
    units = np.array([0, 2, 1, 2, 0])
    out = dense_from_events(indptr, times, units, np.array([2, 0, 1]), n_steps=4, n_units=3)
    expected = np.zeros((3, 4, 3), dtype=bool)
    expected[0, 0, 1] = expected[0, 0, 2] = expected[0, 2, 0] = True
    expected[1, 1, 0] = expected[1, 3, 2] = True
    np.testing.assert_array_equal(out.numpy(), expected)


def test_empty_split_is_a_clear_error(tmp_path):
    store = open_store(make_store(tmp_path / "e.zarr", n_train=0, n_test=5, empty_train=True))
    with pytest.raises(ValueError, match="no samples"):
        SpikeLoader(store["train"], 4)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("world", [1, 2])
def test_device_placements_serve_the_same_batches(split, layout, world):
    """Events resident on the device or streamed through (pinned) host buffers give the batches of the host path:
    same order, same rank shares, same rasters (the device code runs on CPU tensors here)."""
    for rank in range(world):
        kw = dict(shuffle=True, seed=3, rank=rank, world_size=world, **layout)
        host = _epoch(SpikeLoader(split, 16, placement="host", **kw), 1)
        for placement in ("resident", "stream"):
            other = _epoch(SpikeLoader(split, 16, placement=placement, **kw), 1)
            assert len(other) == len(host)
            for a, b in zip(host, other, strict=True):
                np.testing.assert_array_equal(a.indices, b.indices)
                assert torch.equal(a.labels, b.labels) and torch.equal(a.spikes, b.spikes)
                assert torch.equal(b.index_tensor, torch.from_numpy(a.indices))


def test_loader_without_events_serves_labels_only(split):
    for placement in ("host", "resident"):
        batches = _epoch(SpikeLoader(split, 40, shuffle=True, seed=1, events=False, placement=placement), 0)
        assert all(b.spikes is None for b in batches)
        order = np.concatenate([b.indices for b in batches])
        np.testing.assert_array_equal(np.sort(order), np.arange(150))
        np.testing.assert_array_equal(np.concatenate([b.labels.numpy() for b in batches]), split.labels[order])
