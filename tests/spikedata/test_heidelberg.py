"""SHD / SSC: files written here to the published HDF5 layout (h5py, variable-length arrays, the extra/ group),
gzipped and unpacked, encoded and compared with a brute-force binning; every kind of bad file."""

import gzip
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from spikedata.cli import app as spikedata_app
from spikedata.datasets.shared.heidelberg import find_files, probe_heidelberg
from spikedata.encoders.event_binning import bin_unit_events
from spikedata.errors import DatasetError
from spikedata.store import open_store
from tests.writers import SHD_KEYS, make_samples, write_heidelberg

REPO = Path(__file__).resolve().parents[2]







def brute_force(times, units, dt_us, n_steps):
    """Dense bool [n, n_steps, 700] by the definition, and (collapsed, dropped, truncated) counted the slow way."""
    dense = np.zeros((len(times), n_steps, 700), bool)
    collapsed = dropped = truncated = 0
    for i, (t, u) in enumerate(zip(times, units, strict=True)):
        steps = [int(np.floor(float(x) * 1e6 / dt_us)) for x in t]
        kept = [(s, int(c)) for s, c in zip(steps, u, strict=True) if s < n_steps]
        dropped += len(steps) - len(kept)
        truncated += len(steps) > len(kept)
        collapsed += len(kept) - len(set(kept))
        for s, c in kept:
            dense[i, s, c] = True
    return dense, collapsed, dropped, truncated


runner = CliRunner()


def encode(*args):
    return runner.invoke(spikedata_app, ["encode", *args])


def _dense(split):
    return split.dense(range(len(split)))


@pytest.mark.parametrize("gz", [False, True], ids=["unpacked", "gzipped"])
def test_shd_encodes_to_the_brute_force_raster(tmp_path, gz):
    src = tmp_path / "shd"
    src.mkdir()
    suffix = ".h5.gz" if gz else ".h5"
    data = {"train": make_samples(30, seed=1), "test": make_samples(12, seed=2)}
    for split, (t, u, lab, spk) in data.items():
        write_heidelberg(src / f"shd_{split}{suffix}", t, u, lab, spk, gz=gz)
    out = tmp_path / "shd.zarr"
    r = encode("shd", "--source", str(src), "--out", str(out), "--quiet", "--steps", "1100")
    assert r.exit_code == 0, r.output
    assert "train: 30 samples, the published file has 8156" in r.output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no unpacked copy left behind
    store = open_store(out)
    assert store.splits == ["train", "test"] and store.classes == SHD_KEYS
    assert store.attrs["dt_us"] == 1000 and store.attrs["n_steps"] == 1100 and store.attrs["unit_shape"] == [700]
    assert set(store.attrs["source"]["files"]) == {f"shd_train{suffix}", f"shd_test{suffix}"}
    for split, (t, u, lab, spk) in data.items():
        s = store[split]
        dense, collapsed, dropped, truncated = brute_force(t, u, 1000, 1100)
        np.testing.assert_array_equal(_dense(s), dense)
        assert s.labels.tolist() == lab.tolist() and s.extra("speaker").tolist() == spk.tolist()
        stats = s.attrs["encode_stats"]
        assert stats == {"events_read": sum(map(len, t)), "spikes": int(dense.sum()), "collapsed": collapsed,
                         "dropped_time": dropped, "truncated": truncated}
        assert collapsed >= 5 and dropped > 0 and truncated > 0  # the test data exercise both
    assert f"{truncated} samples outlast 1100 steps" in r.output


def test_gzipped_and_unpacked_give_the_same_store(tmp_path):
    t, u, lab, spk = make_samples(20, seed=3)
    for kind, gz in (("plain", False), ("gz", True)):
        (tmp_path / kind).mkdir()
        write_heidelberg(tmp_path / kind / ("shd_test.h5.gz" if gz else "shd_test.h5"), t, u, lab, spk, gz=gz)
        assert encode("shd", "--source", str(tmp_path / kind), "--out", str(tmp_path / f"{kind}.zarr"),
                      "--quiet").exit_code == 0
    a, b = open_store(tmp_path / "plain.zarr"), open_store(tmp_path / "gz.zarr")
    assert a.splits == ["test"] and a["test"].attrs["content_sha256"] == b["test"].attrs["content_sha256"]
    assert a.attrs["n_steps"] == 1400  # the manifest's cut-off: 1.4 s of 1 ms steps


def test_steps_auto_and_other_bins(tmp_path):
    t, u, lab, spk = make_samples(15, seed=4, longest=0.8)
    write_heidelberg(tmp_path / "shd_train.h5", t, u, lab, spk)
    out = tmp_path / "auto.zarr"
    r = encode("shd", "--source", str(tmp_path), "--out", str(out), "--quiet", "--steps", "auto", "--dt-us", "4000")
    assert r.exit_code == 0, r.output
    latest = max(float(x.max()) for x in t if len(x))
    store = open_store(out)
    assert store.attrs["n_steps"] == int(latest * 1e6 // 4000) + 1 and store.attrs["dt_us"] == 4000
    stats = store["train"].attrs["encode_stats"]
    assert stats["dropped_time"] == 0 and stats["truncated"] == 0
    dense, collapsed, _, _ = brute_force(t, u, 4000, store.attrs["n_steps"])
    np.testing.assert_array_equal(_dense(store["train"]), dense)
    assert stats["collapsed"] == collapsed
    r = encode("shd", "--source", str(tmp_path), "--out", str(tmp_path / "x.zarr"), "--steps", "many")
    assert r.exit_code == 2 and "--steps must be a positive integer or 'auto'" in r.output


def test_ssc_valid_split_and_workers(tmp_path):
    keys = [f"word{i}" for i in range(35)]
    data = {split: make_samples(n, seed=10 + n, longest=1.0, n_classes=35)
            for split, n in (("train", 24), ("valid", 9), ("test", 11))}
    for split, (t, u, lab, spk) in data.items():
        write_heidelberg(tmp_path / f"ssc_{split}.h5", t, u, lab, spk.astype("S4"), keys=keys, gz=split == "valid")
    one, two = tmp_path / "one.zarr", tmp_path / "two.zarr"
    assert encode("ssc", "--source", str(tmp_path), "--out", str(one), "--quiet", "--chunk", "5").exit_code == 0
    r = encode("ssc", "--source", str(tmp_path), "--out", str(two), "--quiet", "--chunk", "5", "--workers", "2")
    assert r.exit_code == 0, r.output
    a, b = open_store(one), open_store(two)
    assert a.splits == ["train", "valid", "test"] and a.classes == keys and a.attrs["n_steps"] == 1000
    for split, (t, u, lab, spk) in data.items():
        assert a[split].attrs["content_sha256"] == b[split].attrs["content_sha256"]
        np.testing.assert_array_equal(_dense(a[split]), brute_force(t, u, 1000, 1000)[0])
        assert a[split].extra("speaker").tolist() == spk.astype(str).tolist()
        assert a[split].labels.tolist() == lab.tolist()


def test_probe_and_find(tmp_path):
    t, u, lab, spk = make_samples(8, seed=5)
    write_heidelberg(tmp_path / "shd_train.h5.gz", t, u, lab, spk, gz=True)
    write_heidelberg(tmp_path / "shd_test.h5", t, u, lab, None, keys=None)
    info = probe_heidelberg(tmp_path / "shd_train.h5.gz")
    assert (info.n_samples, info.classes, info.has_speaker, info.max_label) == (8, SHD_KEYS, True, int(lab.max()))
    plain = probe_heidelberg(tmp_path / "shd_test.h5")
    assert plain.classes is None and not plain.has_speaker
    files, missing = find_files(tmp_path, "shd")
    assert [p.name for p in files.values()] == ["shd_train.h5.gz", "shd_test.h5"] and missing == []
    with pytest.raises(DatasetError, match=r"none of ssc_train\.h5\[\.gz\].*the directory holds shd_test\.h5"):
        find_files(tmp_path, "ssc")


def test_class_names_fall_back_to_the_manifest(tmp_path):
    t, u, lab, spk = make_samples(6, seed=6)
    write_heidelberg(tmp_path / "shd_test.h5", t, u, lab, None, keys=None)
    out = tmp_path / "s.zarr"
    assert encode("shd", "--source", str(tmp_path), "--out", str(out), "--quiet").exit_code == 0
    store = open_store(out)
    assert len(store.classes) == 20 and store.classes[0] == "zero"
    assert store.attrs["source"]["class_names_from"] == "data_manifests/shd.toml"
    assert store["test"].extra_names == []


def test_block_binning_matches_definition_on_edges():
    """Exact floor at bin edges, any order within a sample, collapse and cut-off counts."""
    t = np.array([0.0, 0.001, 0.000999, 0.0025, 0.0021, 0.003, 0.0035, 0.0041])
    u = np.array([5, 5, 5, 0, 0, 699, 699, 1])
    b = bin_unit_events(np.array([0, 5, 8]), t, u, 700, 1000, 4)
    assert b.indptr.tolist() == [0, 3, 4]
    assert list(zip(b.times.tolist(), b.units.tolist(), strict=True)) == [(0, 5), (1, 5), (2, 0), (3, 699)]
    assert (b.n_collapsed, b.n_dropped_time, b.n_truncated) == (3, 1, 1)
    with pytest.raises(ValueError, match=r"sample 1, spike 2: time -0\.5 s is negative"):
        bin_unit_events(np.array([0, 1, 4]), np.array([0.1, 0.1, 0.2, -0.5]), np.array([1, 2, 3, 4]), 700, 1000, 9)


def _bad(tmp_path, name, **changes):
    """One split file, damaged as `changes` says; returns the source directory."""
    t, u, lab, spk = make_samples(10, seed=7)
    t = [x.copy() for x in t]
    u = [x.copy() for x in u]
    kind = changes.get("kind")
    if kind == "negative":
        t[3][1] = -0.25
    elif kind == "nan":
        t[4][0] = np.nan
    elif kind == "unit":
        u[5][2] = 700
    elif kind == "lengths":
        u[6] = u[6][:-1]
    elif kind == "labels":
        lab = lab[:-2]
    elif kind == "label":
        lab[8] = 20
    src = tmp_path / name
    src.mkdir()
    path = src / "shd_train.h5"
    if kind == "labels":  # h5py cannot write it through write_heidelberg's checks-free path: do it by hand
        write_heidelberg(path, t, u, np.zeros(10, np.uint8), spk)
        with h5py.File(path, "r+") as f:
            del f["labels"]
            f["labels"] = lab
    else:
        write_heidelberg(path, t, u, lab, spk)
    with h5py.File(path, "r+") as f:
        if kind == "missing":
            del f["spikes/units"]
    if kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    if kind == "not_hdf5":
        path.write_bytes(b"PK\x03\x04 a zip, not the unpacked file")
    if kind == "truncated_gz":
        data = gzip.compress(path.read_bytes())
        path.unlink()
        (src / "shd_train.h5.gz").write_bytes(data[: len(data) // 2])
    return src


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("not_hdf5", r"shd_train\.h5: not an HDF5 file nor a gzipped one"),
        ("truncated", r"shd_train\.h5: cannot read as HDF5 .*truncated or corrupt"),
        ("truncated_gz", r"shd_train\.h5\.gz: cannot decompress .*truncated or corrupt"),
        ("missing", r"shd_train\.h5: dataset 'spikes/units' is missing"),
        ("negative", r"shd_train\.h5: sample 3, spike 1: time -0\.25 s is negative"),
        ("nan", r"shd_train\.h5: sample 4, spike 0: time nan s is not finite"),
        ("unit", r"shd_train\.h5: sample 5, spike 2: unit 700 outside \[0, 700\)"),
        ("lengths", r"shd_train\.h5: sample 6 has \d+ spike times but \d+ units"),
        ("labels", r"shd_train\.h5: labels has 8 entries, spikes/times 10"),
        ("label", r"shd_train\.h5: label 20 at sample 8 but extra/keys names only 20 classes"),
    ],
)
def test_bad_files_are_clear_errors_and_leave_no_store(tmp_path, kind, message):
    src = _bad(tmp_path, "src", kind=kind)
    out = tmp_path / "out" / "shd.zarr"
    r = encode("shd", "--source", str(src), "--out", str(out), "--quiet")
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    lines = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and re.search(message, lines[0]), r.output
    assert not out.exists()
    leftovers = list(out.parent.iterdir()) if out.parent.exists() else []
    assert leftovers == [], leftovers  # neither a partial store nor an unpacked copy
    if kind in ("not_hdf5", "truncated", "missing", "labels", "label"):  # the cheap check finds them too
        with pytest.raises(DatasetError, match=message):
            probe_heidelberg(next(src.iterdir()))


def test_classes_must_agree_between_files(tmp_path):
    t, u, lab, spk = make_samples(5, seed=8)
    write_heidelberg(tmp_path / "shd_train.h5", t, u, lab, spk)
    write_heidelberg(tmp_path / "shd_test.h5", t, u, lab, spk, keys=SHD_KEYS[10:] + SHD_KEYS[:10])
    r = encode("shd", "--source", str(tmp_path), "--out", str(tmp_path / "x.zarr"), "--quiet")
    assert r.exit_code == 1 and "shd_test.h5: extra/keys" in r.output and "differ from" in r.output


def _crash(path, where):
    import faulthandler
    import os

    faulthandler.disable()  # pytest's traceback dump of the intended abort would only clutter the test log
    os.abort()  # what libhdf5 does to a process on some damaged files


def test_a_reader_crash_is_an_error_naming_the_file(tmp_path):
    from spikedata.datasets.shared.heidelberg import vet_file

    path = tmp_path / "shd_train.h5"
    path.write_bytes(b"not used by the crashing reader")
    with pytest.raises(DatasetError, match="shd_train.h5: the HDF5 library crashed while reading it"):
        vet_file(path, str(path), reader=_crash)


def _loop(path, where):
    while True:  # what libhdf5 does with some damaged files
        pass


def test_a_reader_that_never_ends_is_an_error_naming_the_file(tmp_path):
    from spikedata.datasets.shared.heidelberg import vet_file

    path = tmp_path / "shd_test.h5"
    path.write_bytes(b"not used by the looping reader")
    with pytest.raises(DatasetError, match="shd_test.h5: reading it did not finish within 1 s"):
        vet_file(path, str(path), reader=_loop, timeout_s=1)


def loop_telling_pid(path, where):
    import os
    from pathlib import Path

    Path(path).with_suffix(".pid").write_text(str(os.getpid()))
    while True:
        pass


def _ended(pid: int) -> bool:
    from pathlib import Path

    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status  # ended, not yet reaped by whoever adopted it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_vetting_child_ends_itself_when_its_parent_is_killed(tmp_path):
    """A parent killed while it waits (the OOM killer, kill -9) must not leave a process looping in libhdf5."""
    path = tmp_path / "shd_test.h5"
    path.write_bytes(b"not used by the looping reader")
    script = (
        "import os, signal, sys, threading, time\n"
        "from pathlib import Path\n"
        "from spikedata.datasets.shared.heidelberg import vet_file\n"
        "from tests.spikedata.test_heidelberg import loop_telling_pid\n"
        f"pid_file = Path({str(path.with_suffix('.pid'))!r})\n"
        "def die():\n"
        "    while not pid_file.exists():\n"
        "        time.sleep(0.05)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "threading.Thread(target=die, daemon=True).start()\n"
        f"vet_file({str(path)!r}, reader=loop_telling_pid, timeout_s=1)\n"
    )
    log = tmp_path / "parent.log"  # not a pipe: an orphaned child would hold it open
    with log.open("wb") as out:
        parent = subprocess.run([sys.executable, "-c", script], cwd=REPO, stdout=out, stderr=out, timeout=120)
    assert parent.returncode == -signal.SIGKILL, log.read_text()[-2000:]
    child = int(path.with_suffix(".pid").read_text())
    deadline = time.monotonic() + 30
    while not _ended(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    ended = _ended(child)
    if not ended:
        os.kill(child, signal.SIGKILL)
    assert ended, "the vetting child outlived its parent by 30 s"
