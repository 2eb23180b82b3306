"""`hm2bp.SpikeDataset` and `hm2bp.collate_dense`: a store split in torch's DataLoader, with worker processes that
reopen the store (fork and spawn), batches equal to the store's rasters."""

import pickle

import numpy as np
import pytest
import torch

from hm2bp import Network, SpikeDataset, collate_dense
from spikedata.store import open_store
from tests.hm2bp.synthetic import make_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("ds") / "s.zarr", n_train=40, n_test=21)


def test_items_and_collation(store):
    ds = SpikeDataset(store, "test")
    split = open_store(store)["test"]
    assert len(ds) == 21 and ds.n_steps == 50 and ds.n_units == 40 and ds.classes == split.classes
    spikes, label = ds[3]
    assert spikes.dtype == torch.bool and np.array_equal(spikes.numpy(), split.dense([3])[0])
    assert label == int(split.labels[3])
    x, y = collate_dense([ds[i] for i in (0, 5, 2)])
    assert x.shape == (3, 50, 40) and x.dtype == torch.bool and y.dtype == torch.int64
    assert np.array_equal(x.numpy(), split.dense([0, 5, 2])) and y.tolist() == split.labels[[0, 5, 2]].tolist()
    with pytest.raises(KeyError, match="no split 'valid'"):
        SpikeDataset(store, "valid")
    with pytest.raises(IndexError):
        ds.__getitems__([21])


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_with_two_workers(store, context):
    """Every sample once, in order, equal to the store; the dataset pickles without its open store (workers reopen
    it), and its batches feed a Network directly."""
    ds = SpikeDataset(store, "train")
    state = pickle.loads(pickle.dumps(ds))
    assert state.__dict__["_split"] is None and state[4][1] == ds[4][1]
    loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2, collate_fn=collate_dense,
                                         multiprocessing_context=context)
    batches = list(loader)
    split = open_store(store)["train"]
    assert [len(b[1]) for b in batches] == [8, 8, 8, 8, 8]
    x = torch.cat([b[0] for b in batches])
    assert np.array_equal(x.numpy(), split.dense(np.arange(40)))
    assert torch.cat([b[1] for b in batches]).tolist() == split.labels.tolist()
    net = Network.from_config({"steps": 50, "layers": [{"name": "out", "size": 4, "threshold": 2.0}]}, 40)
    assert net.predict(batches[0][0])[0].shape == (8,)
