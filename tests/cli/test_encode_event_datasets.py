"""`spikedata encode dvsgesture|ncars|ncaltech101|cifar10dvs` on fake trees in the real directory layouts, with
files written here to the published formats (AEDAT 3.1 + labels CSV + trial lists, ATIS 40-bit, AEDAT 2.0,
Prophesee DAT) and the real AEDAT 4.0 / DAT samples; splits, transforms and the sensor check at encode time."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spikedata import open_store
from spikedata.cli import app as spikedata_app
from spikedata.encoders.event_binning import BinningOptions, bin_events
from spikedata.io.event_types import make_events
from tests.writers import aedat2_bytes, aedat31_bytes, polarity_packet

runner = CliRunner()


def _invoke(*args: str):
    r = runner.invoke(spikedata_app, ["encode", *args, "--quiet"])
    return r


def _ok(*args: str):
    r = _invoke(*args)
    assert r.exit_code == 0, r.output
    return r


def _spikes(split, i):
    t, u = split.events(i)
    return list(zip(t.tolist(), u.tolist(), strict=True))


def _expected(events, options):
    b = bin_events(events, options)
    return list(zip(b.times.tolist(), b.units.tolist(), strict=True))


# ------------------------------------------------------------------------------------------------ DVS Gesture


def _recording(seed: int, t_end: int):
    """Events every 50 µs from 0 to t_end (x, y, p random on 128 x 128), as AEDAT 3.1 bytes and as an array."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, t_end, 50)
    x, y, p = rng.integers(0, 128, len(t)), rng.integers(0, 128, len(t)), rng.integers(0, 2, len(t))
    rows = [(int(a), int(b), int(c), int(d), 1) for a, b, c, d in zip(x, y, p, t, strict=True)]
    packets = [polarity_packet(rows[k : k + 500]) for k in range(0, len(rows), 500)]
    return aedat31_bytes(packets), make_events(t, x, y, p)


@pytest.fixture()
def gesture_dir(tmp_path):
    root = tmp_path / "DvsGesture"
    root.mkdir()
    recordings = {
        # name: (t_end µs, label rows (class 1-11, start, end))
        "user01_fluorescent": (40_000, [(1, 1000, 9000), (2, 8000, 15000), (11, 20000, 30000)]),  # rows 1-2 overlap
        "user02_lab": (30_000, [(3, 0, 10000), (4, 25000, 45000)]),  # the last row runs past the recording
        "user24_led": (20_000, [(5, 500, 4000), (6, 5000, 12000)]),
    }
    events = {}
    for k, (name, (t_end, rows)) in enumerate(recordings.items()):
        data, ev = _recording(k, t_end)
        (root / f"{name}.aedat").write_bytes(data)
        events[name] = ev
        lines = ["class,startTime_usec,endTime_usec", *(f"{c},{a},{b}" for c, a, b in rows)]
        (root / f"{name}_labels.csv").write_text("\n".join(lines) + "\n")
    (root / "trials_to_train.txt").write_text("user02_lab.aedat\nuser01_fluorescent.aedat\n\n")
    (root / "trials_to_test.txt").write_text("user24_led.aedat\n")
    return tmp_path, recordings, events


def test_dvsgesture_segments_labels_and_quirks(gesture_dir, tmp_path):
    source, recordings, events = gesture_dir
    out = tmp_path / "g.zarr"
    r = _ok("dvsgesture", "--source", str(source), "--out", str(out), "--dt-us", "1000", "--steps", "50",
            "--downsample", "1")  # fmt: skip
    assert "1 label row(s) overlap" in r.output
    store = open_store(out)
    assert store.classes[0] == "hand_clap" and len(store.classes) == 11
    assert store.attrs["unit_shape"] == [2, 128, 128] and store.attrs["split"] == {"kind": "published"}
    assert store.attrs["source"]["overlapping_label_rows"] == 1
    train, test = store["train"], store["test"]
    # trial lists in natural order: user01 then user02; one sample per row, label = class - 1
    assert train.labels.tolist() == [0, 1, 10, 2, 3] and test.labels.tolist() == [4, 5]
    assert train.extra("segment_us").tolist() == [[1000, 9000], [8000, 15000], [20000, 30000], [0, 10000],
                                                  [25000, 45000]]  # fmt: skip
    assert train.attrs["encode_stats"]["segments_past_end"] == 1
    opts = BinningOptions(sensor_size=(128, 128), dt_us=1000, n_steps=50, t_start_us=0)
    order = [("user01_fluorescent", r) for r in recordings["user01_fluorescent"][1]]
    order += [("user02_lab", r) for r in recordings["user02_lab"][1]]
    for i, (name, (_, a, b)) in enumerate(order):
        ev = events[name]
        seg = ev[(ev["t"] >= a) & (ev["t"] < b)].copy()
        seg["t"] -= a
        assert _spikes(train, i) == _expected(seg, opts), (name, a, b)
    # overlap kept: the events of [8000, 9000) are in both the first and the second sample
    assert train.events(0)[0].max() == 7 and train.events(1)[0].min() == 0


def test_dvsgesture_clip_overlap_and_max_train(gesture_dir, tmp_path):
    source, _, _ = gesture_dir
    out = tmp_path / "clip.zarr"
    _ok("dvsgesture", "--source", str(source), "--out", str(out), "--overlap", "clip", "--max-train", "3",
        "--split-seed", "4")  # fmt: skip
    store = open_store(out)
    assert len(store["train"]) == 3 and store.attrs["source"]["clipped_rows"] == 1
    assert store.attrs["split"]["subsets"]["train"]["kept"] == 3 and store.attrs["split"]["subsets"]["train"]["of"] == 5
    from spikedata.datasets.dvsgesture import find_dvsgesture

    clipped = find_dvsgesture(source, overlap="clip").splits["train"].segments
    assert clipped[:2] == ((1000, 8000), (8000, 15000))  # the first row ends where the next starts
    assert set(map(tuple, store["train"].extra("segment_us").tolist())) <= set(clipped)
    r = _invoke("dvsgesture", "--source", str(source), "--out", str(tmp_path / "x.zarr"), "--test-fraction", "0.2")
    assert r.exit_code != 0  # no such option: DVS Gesture has its published split


# ------------------------------------------------------------------------------------------------ N-Caltech101


def _atis(events) -> bytes:
    out = bytearray()
    for t, x, y, p in events:
        out += bytes([x, y, (p << 7) | (t >> 16) & 0x7F, (t >> 8) & 0xFF, t & 0xFF])
    return bytes(out)


@pytest.fixture()
def caltech_dir(tmp_path):
    root = tmp_path / "Caltech101"
    rng = np.random.default_rng(1)
    counts = {"accordion": 6, "airplanes": 10, "BACKGROUND_Google": 4}
    for name, n in counts.items():
        for k in range(1, n + 1):
            w, h = int(rng.integers(50, 120)), int(rng.integers(40, 90))
            t = np.sort(rng.integers(0, 200_000, 300))
            ev = [(int(a), int(rng.integers(w)), int(rng.integers(h)), int(rng.integers(2))) for a in t]
            (root / name).mkdir(parents=True, exist_ok=True)
            (root / name / f"image_{k:04d}.bin").write_bytes(_atis(ev))
    (root / "airplanes" / "image_0003.bin").write_bytes(_atis([(5, 172, 9, 1), (9, 3, 131, 0)]))  # the extremes
    return tmp_path, counts


def test_ncaltech101_extent_and_seeded_split(caltech_dir, tmp_path):
    source, counts = caltech_dir
    out = tmp_path / "c.zarr"
    r = _ok("ncaltech101", "--source", str(source), "--out", str(out), "--test-fraction", "0.25",
            "--split-seed", "9", "--downsample", "1", "--steps", "200")  # fmt: skip
    assert "sensor size from the data: 173 x 132" in r.output
    store = open_store(out)
    assert store.attrs["source"]["sensor_size_observed"] == [173, 132]
    assert store.attrs["events"]["sensor_size"] == [173, 132] and store.attrs["unit_shape"] == [2, 132, 173]
    assert store.classes == ["accordion", "airplanes", "BACKGROUND_Google"]
    split = store.attrs["split"]
    assert split["kind"] == "seeded" and split["seed"] == 9 and split["test_fraction"] == 0.25
    assert (split["n_train"], split["n_test"]) == (15, 5)
    test_counts = np.bincount(store["test"].labels, minlength=3).tolist()
    assert sum(test_counts) == 5 and all(abs(c - 0.25 * n) < 1 for c, n in zip(test_counts, counts.values(),
                                                                                  strict=True))  # fmt: skip
    # the same split again, with 2 workers: identical content
    out2 = tmp_path / "c2.zarr"
    _ok("ncaltech101", "--source", str(source), "--out", str(out2), "--test-fraction", "0.25", "--split-seed", "9",
        "--downsample", "1", "--steps", "200", "--workers", "2", "--chunk", "3")  # fmt: skip
    again = open_store(out2)
    assert again.attrs["split_sha256"] == store.attrs["split_sha256"]
    other = open_store(_ok_path(source, tmp_path / "c3.zarr", "10"))
    assert other.attrs["split_sha256"] != store.attrs["split_sha256"]


def _ok_path(source, out, seed):
    _ok("ncaltech101", "--source", str(source), "--out", str(out), "--test-fraction", "0.25", "--split-seed", seed,
        "--downsample", "1", "--steps", "200")  # fmt: skip
    return out


def test_events_outside_the_sensor_fail_unless_dropped(caltech_dir, tmp_path):
    source, _ = caltech_dir
    r = _invoke("ncaltech101", "--source", str(source), "--out", str(tmp_path / "a.zarr"), "--sensor-size", "100,100")
    assert r.exit_code == 1 and "events lie outside the declared 100 x 100 sensor (observed extent" in r.output
    assert "image_" in r.output and not (tmp_path / "a.zarr").exists()
    _ok("ncaltech101", "--source", str(source), "--out", str(tmp_path / "b.zarr"), "--sensor-size", "100,100",
        "--drop-outside")  # fmt: skip
    stats = open_store(tmp_path / "b.zarr")["train"].attrs["encode_stats"]
    assert stats["dropped_outside"] > 0


def test_transforms_at_encode_time_are_recorded(caltech_dir, tmp_path):
    source, _ = caltech_dir
    out = tmp_path / "t.zarr"
    _ok("ncaltech101", "--source", str(source), "--out", str(out), "--sensor-size", "180,140", "--transform",
        "refractory_period:refractory_us=1000", "--transform", "center_crop:width=64,height=48", "--transform",
        "flip_x", "--downsample", "1")  # fmt: skip
    store = open_store(out)
    assert store.attrs["events"]["transforms"] == [
        {"name": "refractory_period", "refractory_us": 1000}, {"name": "center_crop", "width": 64, "height": 48},
        {"name": "flip_x"},
    ]  # fmt: skip
    assert store.attrs["unit_shape"] == [2, 48, 64]
    r = _invoke("ncaltech101", "--source", str(source), "--out", str(tmp_path / "u.zarr"), "--transform", "blur")
    assert r.exit_code != 0 and "unknown transform" in r.output


# ------------------------------------------------------------------------------------------------ CIFAR10-DVS


def _dvs128_record(x, y, p, t):
    return (y << 8) | (x << 1) | (1 - p), t  # jAER DVS128: raw bit 0 = 0 is ON


def test_cifar10dvs_aedat2_tree(tmp_path):
    src = tmp_path / "cifar"
    rng = np.random.default_rng(2)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    expected = {}
    for c in classes[:3]:
        for k in range(4):
            t0 = 10**9 + int(rng.integers(10**6))
            recs = [_dvs128_record(int(rng.integers(128)), int(rng.integers(128)), int(rng.integers(2)), t0 + 37 * i)
                    for i in range(200)]  # fmt: skip
            (src / c).mkdir(parents=True, exist_ok=True)
            (src / c / f"cifar10_{c}_{k}.aedat").write_bytes(aedat2_bytes(recs, None))
            expected[f"{c}/cifar10_{c}_{k}.aedat"] = recs
    out = tmp_path / "c.zarr"
    _ok("cifar10dvs", "--source", str(src), "--out", str(out), "--test-fraction", "0.25", "--downsample", "1",
        "--dt-us", "100")  # fmt: skip
    store = open_store(out)
    assert store.classes == classes and store.attrs["source"]["release"] == "aedat2"
    assert len(store["train"]) == 9 and len(store["test"]) == 3
    assert np.bincount(store["test"].labels, minlength=3).tolist()[:3] == [1, 1, 1]
    assert store["train"].attrs["encode_stats"]["events_read"] == 9 * 200
    # time starts at each file's first event (absolute AEDAT time stamps)
    assert store["train"].events(0)[0].min() == 0


def test_cifar10dvs_aedat4_sample(shared_data, tmp_path):
    """The real AEDAT 4.0 sample (DV's own writer; a 320 x 240 DVXplorer, not a 128 x 128 DVS) placed in the
    re-hosting's layout: the sensor check stops it, --drop-outside encodes the 128 x 128 corner."""
    src = tmp_path / "cifar4"
    (src / "cat").mkdir(parents=True)
    (src / "cat" / "cifar10_cat_0.aedat4").write_bytes((shared_data / "dvs/sample.aedat4").read_bytes())
    r = _invoke("cifar10dvs", "--source", str(src), "--out", str(tmp_path / "a.zarr"))
    assert r.exit_code == 1 and "outside the declared 128 x 128 sensor (observed extent x 0..319, y 0..239)" in r.output
    _ok("cifar10dvs", "--source", str(src), "--out", str(tmp_path / "b.zarr"), "--drop-outside")
    store = open_store(tmp_path / "b.zarr")
    assert store.attrs["source"]["release"] == "aedat4" and store["train"].labels.tolist() == [3]
    stats = store["train"].attrs["encode_stats"]
    assert stats["events_read"] == 111954 and 0 < stats["dropped_outside"] < 111954


# ------------------------------------------------------------------------------------------------ N-CARS


def _dat(rows) -> bytes:
    head = b"% Data file containing Event2D events.\n% Version 2\n% Date 2017-10-31 11:29:21\n\x00\x08"
    return head + b"".join(struct.pack("<II", t, x | y << 14 | p << 28) for t, x, y, p in rows)


def test_ncars_tree(tmp_path, shared_data):
    src = tmp_path / "ncars"
    real = (shared_data / "dvs/ncars_sample.dat").read_bytes()
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("cars", "background"):
            d = src / f"n-cars_{split}" / cls
            d.mkdir(parents=True)
            for k in range(n):
                data = real if cls == "cars" else _dat([(1000 * i, (7 * i + k) % 120, (3 * i) % 100, i % 2)
                                                        for i in range(80)])  # fmt: skip
                (d / f"obj_{k:06d}_td.dat").write_bytes(data)
    out = tmp_path / "n.zarr"
    _ok("ncars", "--source", str(src), "--out", str(out))
    store = open_store(out)
    assert store.classes == ["background", "cars"] and store.attrs["events"]["sensor_size"] == [120, 100]
    assert store["train"].labels.tolist() == [0, 0, 0, 1, 1, 1] and store["test"].labels.tolist() == [0, 0, 1, 1]
    assert store["train"].attrs["encode_stats"]["events_read"] == 3 * 80 + 3 * 2009
    r = _invoke("ncars", "--source", str(src), "--out", str(tmp_path / "m.zarr"), "--max-test", "2")
    assert r.exit_code == 0, r.output
    assert open_store(tmp_path / "m.zarr")["test"].labels.tolist() == [0, 1]


# ------------------------------------------------------------------------------------------------ interop


def test_split_indexing_dataloader_tonic_and_dimension_names(caltech_dir, tmp_path):
    source, _ = caltech_dir
    out = tmp_path / "i.zarr"
    _ok("ncaltech101", "--source", str(source), "--out", str(out), "--sensor-size", "180,140", "--downsample", "1")
    split = open_store(out)["train"]
    raster, label = split[2]
    assert raster.shape == (split.n_steps, split.n_units) and label == int(split.labels[2])
    assert np.array_equal(raster, split.dense([2])[0])
    torch = pytest.importorskip("torch")
    batch = next(iter(torch.utils.data.DataLoader(split, batch_size=4)))
    assert tuple(batch[0].shape) == (4, split.n_steps, split.n_units) and batch[1].tolist() == split.labels[:4].tolist()
    from spikedata import to_tonic

    ev = to_tonic(split, 1)
    assert ev.dtype.names == ("x", "y", "t", "p")
    times, units = split.events(1)
    c, h, w = split.unit_shape
    assert (ev["p"] * h * w + ev["y"] * w + ev["x"]).tolist() == units.tolist()
    assert ev["t"].tolist() == (times.astype(np.int64) * int(split.dt_us)).tolist()
    for name, dims in (("times", ["event"]), ("units", ["event"]), ("labels", ["sample"]),
                       ("indptr", ["sample_boundary"])):  # fmt: skip
        meta = json.loads((Path(out) / "train" / name / "zarr.json").read_text())
        assert meta["dimension_names"] == dims


# ------------------------------------------------------------------------------------------------ presets


@pytest.mark.parametrize("dataset", ["dvsgesture", "cifar10dvs", "ncars"])
def test_event_presets_fit_the_default_encoding(dataset):
    """NAME-mlp simulates exactly the steps and takes exactly the units `spikedata encode NAME` writes by default."""
    from hm2bp.config import load_config
    from hm2bp.presets import load_preset, preset_meta
    from spikedata.manifest import load_manifest

    manifest = load_manifest(dataset)
    layout = manifest.layout
    opts = BinningOptions(sensor_size=tuple(layout["sensor_size"]), dt_us=layout["dt_us"], n_steps=layout["n_steps"],
                          downsample=layout.get("downsample", 1))  # fmt: skip
    cfg = load_config(load_preset(f"{dataset}-mlp"))
    assert preset_meta(f"{dataset}-mlp")["inputs"] == opts.n_units
    assert cfg.steps == opts.n_steps and [s.size for s in cfg.layers] == [800, len(manifest.classes)]


def test_gesture_tree_to_trained_network(gesture_dir, tmp_path):
    """DVS Gesture layout -> `encode dvsgesture` with its defaults -> `fit --preset dvsgesture-mlp` (one epoch)."""
    from hm2bp.cli import app as hm2bp_app

    source, _, _ = gesture_dir
    store = tmp_path / "g.zarr"
    _ok("dvsgesture", "--source", str(source), "--out", str(store))
    assert open_store(store).attrs["unit_shape"] == [2, 32, 32]
    out = tmp_path / "run"
    r = runner.invoke(hm2bp_app, ["fit", str(store), "--preset", "dvsgesture-mlp", "--epochs", "1", "--batch-size",
                                  "2", "--out", str(out), "--device", "cpu", "--quiet"])  # fmt: skip
    assert r.exit_code == 0, r.output
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and 0.0 <= metrics[0]["test_accuracy"] <= 1.0
