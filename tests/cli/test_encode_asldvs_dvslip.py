"""`spikedata encode asldvs|dvslip` on trees written to the published layouts (ASL-DVS: letter folders of MAT-files
with ts, x, y, pol, level 5 and v7.3; DVS-Lip: train/ and test/ word folders of structured .npy arrays): classes,
splits, every sample's spikes against a one-event-at-a-time re-statement of the binning, errors, and the default
encoding trained by the dataset's preset."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from spikedata.cli import app as spikedata_app
from spikedata.manifest import load_manifest
from spikedata.splits import stratified_split
from spikedata.store import open_store
from tests.cli.roundtrip import fit_and_eval
from tests.writers import write_mat_events, write_npy_events

runner = CliRunner()


def encode(*args: str):
    return runner.invoke(spikedata_app, ["encode", *args, "--quiet"])


def reference_spikes(columns, dt_us: int, n_steps: int, factor: int, width: int, height: int) -> list:
    """(step, unit) pairs of one recording, one event at a time: time from the recording's first event, step =
    floor(dt / dt_us) kept below n_steps, pixels divided by `factor`, unit = p * H * W + y * W + x (the store's
    [polarity, height, width] order), each pair once, sorted."""
    t, x, y, p = (np.asarray(c).tolist() for c in columns)
    w, h = width // factor, height // factor
    first = min(t)
    pairs = set()
    for ti, xi, yi, pi in zip(t, x, y, p, strict=True):
        step = (ti - first) // dt_us
        if step < n_steps:
            pairs.add((step, (1 if pi > 0 else 0) * h * w + (yi // factor) * w + xi // factor))
    return sorted(pairs)


def stored_spikes(split, i: int) -> list:
    times, units = split.events(i)
    return list(zip(times.tolist(), units.tolist(), strict=True))


def recording(seed: int, width: int, height: int, span_us: int, n: int = 400):
    """A recording's columns: times from an absolute start (not 0), random pixels and polarities."""
    rng = np.random.default_rng(seed)
    t = 5_000_000 + 1_000 * seed + np.sort(rng.integers(0, span_us, n))
    return t, rng.integers(0, width, n), rng.integers(0, height, n), rng.integers(0, 2, n)


# ------------------------------------------------------------------------------------------------ ASL-DVS

ASL_FOLDERS = {"a": "a", "b": "Yin Bi - b", "y": "y"}  # plain letter folders and one as an archive unpacks


@pytest.fixture()
def asl_tree(tmp_path):
    """5 recordings of each of a, b, y: level 5 (doubles, as MATLAB saves) and v7.3 files, one with -1 / +1
    polarity; a macOS resource fork that must be skipped."""
    root = tmp_path / "ASL-DVS"
    files = {}
    for letter, folder in ASL_FOLDERS.items():
        (root / folder).mkdir(parents=True)
        for k in range(5):
            seed = 10 * ord(letter) + k
            t, x, y, p = recording(seed, 240, 180, 110_000)
            rel = f"{folder}/{letter}_{k + 1:04d}.mat"
            pol = 2 * p - 1 if (letter, k) == ("b", 2) else p
            write_mat_events(root / rel, t, x, y, pol, version="7.3" if k % 2 else "5")
            files[rel] = (letter, (t, x, y, p))
    (root / "__MACOSX" / "y").mkdir(parents=True)
    (root / "__MACOSX" / "y" / "._y_0001.mat").write_bytes(b"\x00\x05\x16\x07 resource fork")
    return root, files


def test_asldvs_classes_seeded_split_and_binning(asl_tree, tmp_path):
    root, files = asl_tree
    out = tmp_path / "asl.zarr"
    r = encode("asldvs", "--source", str(root), "--out", str(out), "--split-seed", "3")
    assert r.exit_code == 0, r.output
    store = open_store(out)
    classes = list(load_manifest("asldvs").classes)
    assert store.classes == classes and len(classes) == 24 and "j" not in classes and "z" not in classes
    assert store.attrs["unit_shape"] == [2, 45, 60] and store.n_steps == 120 and store.attrs["dt_us"] == 1000
    split = store.attrs["split"]
    assert (split["kind"], split["test_fraction"], split["seed"]) == ("seeded", 0.2, 3)
    assert (split["n_train"], split["n_test"]) == (12, 3)
    train, test = store["train"], store["test"]
    assert train.labels.tolist() == [0] * 4 + [1] * 4 + [23] * 4 and test.labels.tolist() == [0, 1, 23]
    # the test split is the seeded stratified one of docs/events.md: ranked by the hash of the relative path
    order = sorted(files, key=lambda rel: (classes.index(files[rel][0]), rel))
    labels = np.array([classes.index(files[rel][0]) for rel in order])
    _, test_idx = stratified_split(labels, order, 0.2, 3)
    expected = {"train": [rel for i, rel in enumerate(order) if i not in set(test_idx.tolist())],
                "test": [order[i] for i in test_idx]}
    for name, split_ in (("train", train), ("test", test)):
        for i, rel in enumerate(expected[name]):
            assert stored_spikes(split_, i) == reference_spikes(files[rel][1], 1000, 120, 4, 240, 180), rel
    assert train.attrs["encode_stats"]["events_read"] == 12 * 400
    assert train.attrs["encode_stats"]["dropped_time"] == 0  # 110 ms recordings in a 120 ms window


def test_asldvs_full_resolution_and_fraction(asl_tree, tmp_path):
    root, files = asl_tree
    out = tmp_path / "asl1.zarr"
    r = encode("asldvs", "--source", str(root), "--out", str(out), "--test-fraction", "0.4", "--downsample", "1",
               "--dt-us", "500", "--steps", "100", "--transform", "flip_y")
    assert r.exit_code == 0, r.output
    store = open_store(out)
    assert (len(store["train"]), len(store["test"])) == (9, 6) and store.attrs["unit_shape"] == [2, 180, 240]
    assert store.attrs["events"]["transforms"] == [{"name": "flip_y"}]
    flipped = {rel: (t, x, 179 - y, p) for rel, (_, (t, x, y, p)) in files.items()}
    expected = {tuple(reference_spikes(c, 500, 100, 1, 240, 180)) for c in flipped.values()}
    got = {tuple(stored_spikes(store[s], i)) for s in ("train", "test") for i in range(len(store[s]))}
    assert got == expected  # tonic's orientation (y mirrored); 50 ms of each 110 ms recording kept


def test_asldvs_errors_are_one_line(asl_tree, tmp_path):
    root, _ = asl_tree
    (root / "misc").mkdir()
    write_mat_events(root / "misc" / "x.mat", [1, 2], [3, 4], [5, 6], [0, 1])
    r = encode("asldvs", "--source", str(root), "--out", str(tmp_path / "x.zarr"))
    assert r.exit_code == 1 and "misc/x.mat: not in a letter folder of ASL-DVS" in r.output
    (root / "misc" / "x.mat").unlink()
    bad = root / "a" / "a_0002.mat"
    bad.write_bytes(bad.read_bytes()[:400])
    r = encode("asldvs", "--source", str(root), "--out", str(tmp_path / "y.zarr"))
    assert r.exit_code == 1 and "a_0002.mat" in r.output and "truncated or corrupt" in r.output
    assert r.output.count("error:") == 1 and "Traceback" not in r.output and not (tmp_path / "y.zarr").exists()
    write_mat_events(bad, [10, 20], [250, 3], [4, 5], [1, 0])
    r = encode("asldvs", "--source", str(root), "--out", str(tmp_path / "z.zarr"))
    assert r.exit_code == 1 and "outside the declared 240 x 180 sensor" in r.output


def test_asldvs_tree_to_trained_network(asl_tree, tmp_path):
    """ASL-DVS layout -> `encode asldvs` with its defaults -> `fit --preset asldvs-mlp` (one epoch) -> `eval`."""
    root, _ = asl_tree
    store = tmp_path / "asl.zarr"
    assert encode("asldvs", "--source", str(root), "--out", str(store)).exit_code == 0
    fit_and_eval(store, "asldvs-mlp", tmp_path / "run")


# ------------------------------------------------------------------------------------------------ DVS-Lip

LIP_WORDS = ("accused", "house", "young")
NPY_TYPES = [
    (("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "?")),
    (("x", "<u2"), ("y", "<u2"), ("p", "i1"), ("t", "<f8")),
    (("t", "<u4"), ("x", "<i4"), ("y", "<i4"), ("p", "<i4")),
]


@pytest.fixture()
def lip_tree(tmp_path):
    """DVS-Lip/{train,test}/<word>/<n>.npy: 3 words, 3 train and 2 test utterances each, of several field types."""
    root = tmp_path / "DVS-Lip"
    files = {}
    for split, n in (("train", 3), ("test", 2)):
        for w, word in enumerate(LIP_WORDS):
            (root / split / word).mkdir(parents=True)
            for k in range(n):
                columns = recording(100 * w + 10 * k + (split == "test"), 128, 128, 1_200_000)
                rel = f"{split}/{word}/{k}.npy"
                write_npy_events(root / rel, *columns, dtype=NPY_TYPES[(w + k) % 3])
                files[rel] = columns
    return tmp_path, files


def test_dvslip_published_split_and_binning(lip_tree, tmp_path):
    source, files = lip_tree
    out = tmp_path / "lip.zarr"
    r = encode("dvslip", "--source", str(source), "--out", str(out))
    assert r.exit_code == 0, r.output
    store = open_store(out)
    words = list(load_manifest("dvslip").classes)
    assert store.classes == words and len(words) == 100 and store.attrs["split"] == {"kind": "published"}
    assert store.attrs["unit_shape"] == [2, 32, 32] and store.n_steps == 150 and store.attrs["dt_us"] == 10_000
    label = {w: words.index(w) for w in LIP_WORDS}
    for split, n in (("train", 3), ("test", 2)):
        stored = store[split]
        assert stored.labels.tolist() == [label[w] for w in LIP_WORDS for _ in range(n)]
        order = [f"{split}/{w}/{k}.npy" for w in LIP_WORDS for k in range(n)]  # class, then natural file order
        for i, rel in enumerate(order):
            assert stored_spikes(stored, i) == reference_spikes(files[rel], 10_000, 150, 4, 128, 128), rel
    r = encode("dvslip", "--source", str(source / "DVS-Lip"), "--out", str(tmp_path / "m.zarr"), "--max-test", "3",
               "--downsample", "2", "--transform", "center_crop:width=96,height=96")
    assert r.exit_code == 0, r.output
    small = open_store(tmp_path / "m.zarr")
    assert small["test"].labels.tolist() == [label[w] for w in LIP_WORDS] and small.attrs["unit_shape"] == [2, 48, 48]
    assert small.attrs["split"]["subsets"]["test"] == {"method": small.attrs["split"]["subsets"]["test"]["method"],
                                                       "seed": 0, "kept": 3, "of": 6}


def test_dvslip_errors(lip_tree, tmp_path):
    source, _ = lip_tree
    (source / "DVS-Lip" / "train" / "hello").mkdir()
    write_npy_events(source / "DVS-Lip" / "train" / "hello" / "0.npy", [1], [2], [3], [1])
    r = encode("dvslip", "--source", str(source), "--out", str(tmp_path / "x.zarr"))
    assert r.exit_code == 1 and "['hello'] are not among the expected" in r.output
    r = encode("dvslip", "--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "y.zarr"))
    assert r.exit_code == 1 and "no DVS-Lip folders train/ or test/" in r.output


def test_dvslip_tree_to_trained_network(lip_tree, tmp_path):
    """DVS-Lip layout -> `encode dvslip` with its defaults -> `fit --preset dvslip-mlp` (one epoch) -> `eval`."""
    source, _ = lip_tree
    store = tmp_path / "lip.zarr"
    assert encode("dvslip", "--source", str(source), "--out", str(store)).exit_code == 0
    fit_and_eval(store, "dvslip-mlp", tmp_path / "run")
