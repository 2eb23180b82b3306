"""`spikedata encode nmnist|events` end to end: a small store from the real samples opens with the right shapes."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from spikedata import open_store
from spikedata.cli import app as spikedata_app
from spikedata.datasets.nmnist import NMNIST_REFERENCE
from spikedata.encoders.event_binning import bin_events
from spikedata.io.events import read_events

runner = CliRunner()


@pytest.fixture()
def nmnist_dir(shared_data, tmp_path):
    src = tmp_path / "nmnist"
    a = (shared_data / "nmnist/tonic_sample_nmnist.bin").read_bytes()
    b = (shared_data / "nmnist/slayer_NMNIST_1.bs2").read_bytes()
    for rel, data in [("Train/0/00002.bin", a), ("Train/5/00007.bin", b), ("Train/5/00009.bin", a),
                      ("Test/0/00001.bin", a), ("Test/5/00004.bin", b)]:  # fmt: skip
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    return src


def test_encode_nmnist_store(nmnist_dir, tmp_path, shared_data):
    out = tmp_path / "nmnist.zarr"
    args = ["encode", "nmnist", "--source", str(nmnist_dir), "--out", str(out), "--quiet", "--preset",
            "reference-exact", "--chunk", "2"]  # fmt: skip
    r = runner.invoke(spikedata_app, args)
    assert r.exit_code == 0, r.output
    store = open_store(out)
    assert store.attrs["unit_shape"] == [2, 34, 34] and store.attrs["n_units"] == 2312
    assert store.attrs["n_steps"] == 540 and store.attrs["dt_us"] == 600 and store.attrs["dataset"] == "nmnist"
    assert store.attrs["encoder"]["params"]["stabilize"] is True
    train, test = store["train"], store["test"]
    assert len(train) == 3 and len(test) == 2
    assert train.labels.tolist() == [0, 5, 5] and test.labels.tolist() == [0, 5]
    assert train.dense([0, 1]).shape == (2, 540, 2312)
    times, units = train.events(1)
    expect = bin_events(read_events(shared_data / "nmnist/slayer_NMNIST_1.bs2"), NMNIST_REFERENCE)
    assert np.array_equal(times, expect.times) and np.array_equal(units, expect.units)
    stats = train.attrs["encode_stats"]
    assert stats["events_read"] == 4325 + 4681 + 4325 and stats["spikes"] == train.n_events
    # existing store without --overwrite: one-line error, no traceback
    r = runner.invoke(spikedata_app, args)
    assert r.exit_code == 1 and "already exists" in r.output


def test_encode_events_generic(shared_data, tmp_path):
    src = tmp_path / "gestures"
    for rel, f in [("wave/g1.bs2", "dvs/gesture_1.bs2"), ("bar/b1.aedat", "dvs/TranslatingBarY_synthesized.aedat")]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes((shared_data / f).read_bytes())
    out = tmp_path / "g.zarr"
    base = ["encode", "events", "--source", str(src), "--out", str(out), "--quiet", "--steps", "100"]
    r = runner.invoke(spikedata_app, base)
    assert r.exit_code == 1 and "--sensor-size" in r.output  # neither format states the size
    r = runner.invoke(spikedata_app, [*base, "--sensor-size", "256,256", "--dt-us", "20000", "--downsample", "2"])
    assert r.exit_code == 0, r.output
    split = open_store(out)["train"]
    assert split.classes == ["bar", "wave"] and split.labels.tolist() == [0, 1]
    assert split.unit_shape == (2, 128, 128) and split.n_steps == 100 and split.dt_us == 20000
    times, _ = split.events(0)  # the bar: time from its first event, stamps 100 ms apart; 100 x 20 ms kept
    assert sorted({int(t) * 20000 for t in times}) == [100000 * k for k in range(20)]


def test_bad_options_are_reported(nmnist_dir, tmp_path):
    out = str(tmp_path / "x.zarr")
    r = runner.invoke(spikedata_app, ["encode", "nmnist", "--source", str(nmnist_dir), "--out", out, "--preset", "x"])
    assert r.exit_code == 2 and "--preset" in r.output
    r = runner.invoke(spikedata_app, ["encode", "nmnist", "--source", str(nmnist_dir), "--out", out, "--crop", "1,2"])
    assert r.exit_code == 2 and "--crop" in r.output
    r = runner.invoke(spikedata_app, ["encode", "nmnist", "--source", str(tmp_path / "none"), "--out", out])
    assert r.exit_code == 1 and "no N-MNIST split folders" in r.output
