"""`spikedata encode ntidigits|gsc` on data written to the published layouts (N-TIDIGITS: its one HDF5 file of
per-utterance channel and time datasets; Speech Commands: word folders of 16 kHz WAV files and the two lists):
classes, splits, per-sample values against a re-statement, errors, and the default encoding trained by the preset."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from spikedata.cli import app as spikedata_app
from spikedata.encoders.speech import SpeechFrontEnd
from spikedata.io.audio import read_audio
from spikedata.manifest import load_manifest
from spikedata.store import open_store
from tests.cli.roundtrip import fit_and_eval
from tests.writers import write_ntidigits

runner = CliRunner()


def encode(*args: str):
    return runner.invoke(spikedata_app, ["encode", *args, "--quiet"])


def stored_spikes(split, i: int) -> list:
    times, units = split.events(i)
    return list(zip(times.tolist(), units.tolist(), strict=True))


# ------------------------------------------------------------------------------------------------ N-TIDIGITS


def utterance(seed: int, n: int, start: float, length: float):
    """Times (float32 s, sorted, from `start`: the file's times do not start at 0) and channels 0-63."""
    rng = np.random.default_rng(seed)
    times = (start + np.sort(rng.uniform(0.0, length, n))).astype(np.float32)
    return times, rng.integers(0, 64, n)


def ntidigits_rows(split: str, speakers: tuple[str, ...], seed: int) -> list:
    """Single digits o, 1, z twice (productions a, b) per speaker, and two digit sequences, in a mixed order."""
    rows, k = [], seed
    for group, speaker in zip(("man", "woman"), speakers, strict=True):
        for digits in ("o", "1", "z", "17z" if split == "train" else "o5"):
            for production in "ab" if len(digits) == 1 else "a":
                k += 1
                rows.append((f"{group}-{speaker}-{production}-{digits}", *utterance(k, 150, 0.2 + 0.01 * k, 1.1)))
    return rows


def reference_spikes(times, channels, dt_us: int, n_steps: int) -> list:
    """(step, channel) pairs, one event at a time: step = floor((t - first t) * 10^6 / dt_us) exactly (on the
    float64 values of the file's times), kept below n_steps, each pair once, sorted."""
    t = [float(v) for v in np.asarray(times, dtype=np.float64)]
    first = min(t)
    pairs = set()
    for ti, ch in zip(t, np.asarray(channels).tolist(), strict=True):
        step = math.floor(Fraction((ti - first) * 1e6) / dt_us)
        if step < n_steps:
            pairs.add((step, int(ch)))
    return sorted(pairs)


@pytest.fixture()
def ntidigits_file(tmp_path):
    rows = {"train": ntidigits_rows("train", ("ae", "im"), 0), "test": ntidigits_rows("test", ("bc", "jp"), 100)}
    path = write_ntidigits(tmp_path / "n-tidigits.hdf5", rows)
    return path, rows


def test_ntidigits_single_digits_sequences_and_binning(ntidigits_file, tmp_path):
    path, rows = ntidigits_file
    out = tmp_path / "nt.zarr"
    r = runner.invoke(spikedata_app, ["encode", "ntidigits", "--source", str(path.parent), "--out", str(out),
                                      "--sequences"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "train: 12 single-digit utterances, the published file has 2464" in r.output  # a partial copy: noted
    store = open_store(out)
    classes = list(load_manifest("ntidigits").classes)
    assert store.classes == classes == ["o", "1", "2", "3", "4", "5", "6", "7", "8", "9", "z"]
    assert store.splits == ["train", "test", "train_sequences", "test_sequences"]
    assert store.attrs["split"] == {"kind": "published"} and store.attrs["unit_shape"] == [64]
    assert store.n_steps == 1500 and store.attrs["dt_us"] == 1000
    for split in ("train", "test"):
        single = [row for row in rows[split] if len(row[0].split("-")[-1]) == 1]  # the file's order
        stored = store[split]
        assert stored.extra("key").tolist() == [key for key, _, _ in single]
        assert stored.labels.tolist() == [classes.index(key[-1]) for key, _, _ in single]
        assert stored.extra("digits").tolist() == [key[-1] for key, _, _ in single]
        assert set(stored.extra("group").tolist()) == {"man", "woman"}
        for i, (_, times, channels) in enumerate(single):
            assert stored_spikes(stored, i) == reference_spikes(times, channels, 1000, 1500)
        assert stored.attrs["encode_stats"]["events_read"] == 150 * len(single)
    sequences = store["train_sequences"]
    assert sequences.extra("digits").tolist() == ["17z", "17z"] and sequences.labels.tolist() == [1, 1]
    assert sequences.extra("speaker").tolist() == ["ae", "im"]
    assert store["test_sequences"].labels.tolist() == [0, 0]  # "o5": labelled by its first digit


def test_ntidigits_subset_and_steps_auto(ntidigits_file, tmp_path):
    path, rows = ntidigits_file
    out = tmp_path / "sub.zarr"
    r = encode("ntidigits", "--source", str(path), "--out", str(out), "--max-train", "6", "--split-seed", "2",
               "--steps", "auto", "--dt-us", "2000")
    assert r.exit_code == 0, r.output
    store = open_store(out)
    assert store.splits == ["train", "test"] and len(store["train"]) == 6 and len(store["test"]) == 12
    assert sorted(store["train"].labels.tolist()) == [0, 0, 1, 1, 10, 10]  # stratified: 2 of each digit
    assert store.attrs["split"]["subsets"]["train"]["kept"] == 6
    longest = max(float(np.float64(t.max()) - np.float64(t.min())) for split in rows.values() for _, t, _ in split)
    assert store.n_steps == int(longest * 1e6 // 2000) + 1
    assert all(store[s].attrs["encode_stats"]["dropped_time"] == 0 for s in store.splits)


def test_ntidigits_errors_are_one_line(ntidigits_file, tmp_path):
    import h5py

    path, _ = ntidigits_file
    with h5py.File(path, "a") as f:
        f["test_addresses"]["woman-jp-a-o"][...] = 64
    r = encode("ntidigits", "--source", str(path), "--out", str(tmp_path / "a.zarr"))
    assert r.exit_code == 1 and "utterance 'woman-jp-a-o': address 64 is not a channel 0-63" in r.output
    assert r.output.count("error:") == 1 and not (tmp_path / "a.zarr").exists()
    with h5py.File(path, "a") as f:
        del f["test_labels"]
        f.create_dataset("test_labels", data=np.array([b"man-bc-a-o", b"hello"]))
    r = encode("ntidigits", "--source", str(path), "--out", str(tmp_path / "b.zarr"))
    assert r.exit_code == 1 and "test_labels[1] = 'hello' is not an utterance key" in r.output
    with h5py.File(path, "a") as f:
        del f["test_timestamps"]
    r = encode("ntidigits", "--source", str(path), "--out", str(tmp_path / "c.zarr"))
    assert r.exit_code == 1 and "group 'test_timestamps' is missing" in r.output
    r = encode("ntidigits", "--source", str(tmp_path / "c.zarr"), "--out", str(tmp_path / "d.zarr"))
    assert r.exit_code == 1 and "no such file or directory" in r.output


def test_ntidigits_file_to_trained_network(ntidigits_file, tmp_path):
    """N-TIDIGITS file -> `encode ntidigits` with its defaults -> `fit --preset ntidigits-mlp` (one epoch) ->
    `eval`."""
    path, _ = ntidigits_file
    store = tmp_path / "nt.zarr"
    assert encode("ntidigits", "--source", str(path), "--out", str(store)).exit_code == 0
    fit_and_eval(store, "ntidigits-mlp", tmp_path / "run")


# ------------------------------------------------------------------------------------------------ Speech Commands

GSC_WORDS = ("no", "yes", "zero")


def write_clip(path, seed: int, n: int = 16_000) -> None:
    """A 16 kHz, 16-bit mono WAV of `n` samples: a tone burst in low noise (speech-like energy, any content)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16_000
    audio = 0.01 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * (300 + 40 * seed) * t) * (t > 0.2) * (t < 0.7)
    soundfile.write(path, audio, 16_000, subtype="PCM_16")


@pytest.fixture()
def gsc_tree(tmp_path):
    """3 words x 5 utterances (one of them 0.75 s long, as the corpus has shorter clips), the lists naming one
    utterance of each word for validation and one for testing, and the background noise folder."""
    root = tmp_path / "speech_commands_v0.02"
    listed = {"valid": [], "test": []}
    for w, word in enumerate(GSC_WORDS):
        (root / word).mkdir(parents=True)
        for k in range(5):
            name = f"{word}/{0xA0B1C2 + 7 * k:08x}_nohash_{k % 2}.wav"
            write_clip(root / name, 10 * w + k, 12_000 if k == 4 else 16_000)
            if k == 1:
                listed["valid"].append(name)
            if k == 3:
                listed["test"].append(name)
    (root / "_background_noise_").mkdir()
    write_clip(root / "_background_noise_" / "white_noise.wav", 99, 16_000 * 3)
    (root / "validation_list.txt").write_text("\n".join(listed["valid"]) + "\n")
    (root / "testing_list.txt").write_text("\n".join(listed["test"]) + "\n")
    return root, listed


def test_gsc_published_lists_front_end_and_extras(gsc_tree, tmp_path):
    root, listed = gsc_tree
    out = tmp_path / "gsc.zarr"
    r = runner.invoke(spikedata_app, ["encode", "gsc", "--source", str(root), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "gsc: 9 train + 3 valid + 3 test recordings" in r.output and "the corpus has 84843" in r.output
    store = open_store(out)
    words = list(load_manifest("gsc").classes)
    assert store.classes == words and len(words) == 35 and store.splits == ["train", "valid", "test"]
    assert store.n_steps == 640 and store.attrs["dt_us"] == 1600 and store.attrs["unit_shape"] == [78]
    source = store.attrs["source"]
    assert source["n_files"] == 15 and set(source["files"]) == {"validation_list.txt", "testing_list.txt"}
    paths = {s: store[s].extra("path").tolist() for s in store.splits}
    assert paths["valid"] == listed["valid"] and paths["test"] == listed["test"]
    assert len(paths["train"]) == 9 and not any("_background_noise_" in p for p in sum(paths.values(), []))
    front_end = SpeechFrontEnd(steps=640)
    for split in store.splits:
        stored = store[split]
        assert stored.labels.tolist() == [words.index(p.split("/")[0]) for p in paths[split]]
        assert stored.extra("utterance").tolist() == [int(p[-5]) for p in paths[split]]
        assert stored.extra("speaker").tolist() == [p.split("/")[1].split("_")[0] for p in paths[split]]
        for i, rel in enumerate(paths[split]):
            spikes, _ = front_end.encode(*read_audio(root / rel))
            t, u = np.nonzero(spikes)
            assert stored_spikes(stored, i) == list(zip(t.tolist(), u.tolist(), strict=True)), rel
    assert sum(store[s].attrs["encode_stats"]["truncated"] for s in store.splits) == 0  # 1 s fits 640 steps


def test_gsc_layout_errors(gsc_tree, tmp_path):
    root, listed = gsc_tree
    (root / "testing_list.txt").write_text(listed["valid"][0] + "\nyes/gone_nohash_0.wav\n")
    r = encode("gsc", "--source", str(root), "--out", str(tmp_path / "a.zarr"))
    assert r.exit_code == 1 and "1 file(s) are in both lists, e.g. no/" in r.output
    (root / "testing_list.txt").write_text("yes/gone_nohash_0.wav\n")
    r = runner.invoke(spikedata_app, ["encode", "gsc", "--source", str(root), "--out", str(tmp_path / "b.zarr"),
                                      "--quiet", "--steps", "100"])  # fmt: skip
    assert r.exit_code == 0 and "testing_list.txt names 1 file(s) that are not under" in r.output
    (root / "hello").mkdir()
    write_clip(root / "hello" / "00000001_nohash_0.wav", 1)
    r = encode("gsc", "--source", str(root), "--out", str(tmp_path / "c.zarr"))
    assert r.exit_code == 1 and "hello: a folder of WAV files named by none of the 35 words" in r.output
    (root / "testing_list.txt").unlink()
    r = encode("gsc", "--source", str(root), "--out", str(tmp_path / "d.zarr"))
    assert r.exit_code == 1 and "no testing_list.txt: not the Speech Commands corpus directory" in r.output


def test_gsc_tree_to_trained_network(gsc_tree, tmp_path):
    """Speech Commands layout -> `encode gsc` with its defaults -> `fit --preset gsc-mlp` (one epoch, tested on
    the published test list) -> `eval`."""
    root, _ = gsc_tree
    store = tmp_path / "gsc.zarr"
    assert encode("gsc", "--source", str(root), "--out", str(store)).exit_code == 0
    fit_and_eval(store, "gsc-mlp", tmp_path / "run")
