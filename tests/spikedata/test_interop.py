"""Spike stores in other libraries, installed as `make` installs them: tonic (with its own dependencies) reads
`to_tonic` events back into our rasters; xarray opens a split without a warning (`to_xarray`, and the documented
`xarray.open_zarr` call)."""

import warnings
from functools import partial

import numpy as np
import pytest

from spikedata import to_tonic, to_xarray
from spikedata.pipeline import SplitJob, dense_to_block, encode_to_store
from spikedata.store import open_store

SHAPE = (2, 4, 5)  # polarity x height x width, the unit order of the event encoders ("pyx")
STEPS, DT_US = 30, 600


def rasters(start: int, stop: int, n: int):
    """Samples [start, stop) of a seeded event split: bool rasters [k, T, 2*4*5] and labels."""
    rng = np.random.default_rng([n, start])
    raster = rng.random((stop - start, STEPS, int(np.prod(SHAPE)))) < 0.15
    return dense_to_block(raster, (np.arange(start, stop) % 3).astype(np.int16))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("interop") / "ev.zarr"
    attrs = {"dataset": "synthetic-events", "encoder": {"name": "events", "params": {"unit_order": "pyx"}},
             "n_units": int(np.prod(SHAPE)), "unit_shape": list(SHAPE), "n_steps": STEPS, "dt_us": DT_US,
             "classes": ["a", "b", "c"], "seed": 0, "source": {"files": {}}}
    jobs = {"train": SplitJob(12, partial(rasters, n=12), chunk=8), "test": SplitJob(5, partial(rasters, n=5))}
    return encode_to_store(path, attrs, jobs, workers=1, progress=False)


def test_tonic_frames_of_to_tonic_events_are_the_store_rasters(store):
    tonic = pytest.importorskip("tonic", reason="tonic (with its dependencies, installed by make) is not importable")
    split = open_store(store)["train"]
    c, h, w = SHAPE
    frame = tonic.transforms.ToFrame(sensor_size=(w, h, c), time_window=DT_US, start_time=0, end_time=STEPS * DT_US)
    for i in range(len(split)):
        frames = frame(to_tonic(split, i))  # [T, P, H, W] event counts
        raster = split[i][0].reshape(STEPS, c, h, w)
        assert frames.shape == raster.shape and np.array_equal(frames, raster), i


def test_xarray_opens_a_split_without_warnings(store):
    xr = pytest.importorskip("xarray", reason="xarray (extra [xarray], installed by make) is not installed")
    split = open_store(store)["train"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = to_xarray(split)
        documented = xr.open_zarr(store, group="train", consolidated=False)  # the call docs/events.md gives
    for d in (ds, documented):
        assert dict(d.sizes) == {"event": split.n_events, "sample": 12, "sample_boundary": 13}
        assert np.array_equal(d["labels"].values, split.labels) and np.array_equal(d["indptr"].values, split.indptr)
    i = 7
    lo, hi = split.indptr[i], split.indptr[i + 1]
    times, units = split.events(i)
    assert np.array_equal(ds["times"][lo:hi].values, times) and np.array_equal(ds["units"][lo:hi].values, units)
    assert ds.attrs["n_samples"] == 12
