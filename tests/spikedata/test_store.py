"""Spike store: round trip, invariants, rejection of foreign/truncated/interrupted stores."""

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from spikedata.pipeline import SplitJob, dense_to_block, encode_to_store
from spikedata.store import FORMAT_VERSION, EventBlock, StoreError, StoreWriter, open_store

N_UNITS, N_STEPS = 12, 30


def _attrs(**over):
    attrs = dict(
        dataset="synthetic",
        encoder={"name": "bernoulli", "params": {"p": 0.1}},
        n_units=N_UNITS,
        unit_shape=[3, 4],
        n_steps=N_STEPS,
        dt_us=1000,
        classes=["a", "b", "c"],
        seed=7,
        source={"files": {}},
    )
    attrs.update(over)
    return attrs


def _rasters(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, N_STEPS, N_UNITS)) < 0.1, rng.integers(0, 3, n)


def _encode_range(start, stop, rasters, labels):
    extras = {"source_index": np.arange(start, stop), "speaker": np.array(["x", "y"])[np.arange(start, stop) % 2]}
    return dense_to_block(rasters[start:stop], labels[start:stop], extras=extras, stats={"collapsed": stop - start})


@pytest.fixture
def store_path(tmp_path):
    rasters, labels = _rasters(50)
    test_r, test_l = _rasters(7, seed=1)
    import functools

    jobs = {
        "train": SplitJob(50, functools.partial(_encode_range, rasters=rasters, labels=labels), chunk=8),
        "test": SplitJob(7, functools.partial(_encode_range, rasters=test_r, labels=test_l), chunk=8),
    }
    path = encode_to_store(tmp_path / "s.zarr", _attrs(), jobs, progress=False)
    return path, (rasters, labels), (test_r, test_l)


def test_round_trip(store_path):
    path, (rasters, labels), (test_r, test_l) = store_path
    store = open_store(path)
    assert store.splits == ["train", "test"]
    train = store["train"]
    assert len(train) == 50 and train.n_units == N_UNITS and train.n_steps == N_STEPS
    assert train.unit_shape == (3, 4) and train.classes == ["a", "b", "c"] and train.dt_us == 1000
    np.testing.assert_array_equal(train.labels, labels)
    np.testing.assert_array_equal(train.dense(np.arange(50)), rasters)
    # arbitrary order and repeats
    idx = [49, 3, 3, 17, 0]
    np.testing.assert_array_equal(train.dense(idx), rasters[idx])
    np.testing.assert_array_equal(store["test"].dense(range(7)), test_r)
    t, u = train.events(10)
    ref_t, ref_u = np.nonzero(rasters[10])
    np.testing.assert_array_equal(t, ref_t)
    np.testing.assert_array_equal(u, ref_u)
    block = train.read_range(5, 9)
    assert block.indptr[0] == 0 and len(block) == 4
    assert block.indptr[-1] == rasters[5:9].sum()
    np.testing.assert_array_equal(train.extra("source_index"), np.arange(50))
    assert list(train.extra("speaker")[:3]) == ["x", "y", "x"]
    assert train.attrs["encode_stats"] == {"collapsed": 50}
    assert train.attrs["class_counts"] == np.bincount(labels, minlength=3).tolist()
    assert store.attrs["created_by"]["package"] == "spikedata"
    assert store.attrs["encoder"] == {"name": "bernoulli", "params": {"p": 0.1}}
    assert len(store.fingerprint) == 64


def test_fingerprint_depends_on_content(tmp_path, store_path):
    path, _, _ = store_path
    rasters, labels = _rasters(5, seed=3)
    job = SplitJob(5, lambda a, b: dense_to_block(rasters[a:b], labels[a:b]))
    other = encode_to_store(tmp_path / "o.zarr", _attrs(), {"train": job}, progress=False)
    assert open_store(path).fingerprint != open_store(other).fingerprint


def test_index_errors(store_path):
    train = open_store(store_path[0])["train"]
    with pytest.raises(IndexError, match="out of range"):
        train.events(50)
    with pytest.raises(IndexError):
        train.read_range(40, 51)
    with pytest.raises(KeyError, match="no split 'valid'"):
        open_store(store_path[0])["valid"]
    with pytest.raises(KeyError, match="no extra array"):
        train.extra("nope")


def test_writer_rejects_bad_blocks(tmp_path):
    with pytest.raises(ValueError, match=r"unit indices must lie in \[0, 12\)"):
        with StoreWriter(tmp_path / "bad.zarr", _attrs()) as w:
            w.split("train").append(np.array([0, 1]), np.array([3]), np.array([12]), np.array([0]))
    assert not (tmp_path / "bad.zarr").exists()
    assert not list(tmp_path.iterdir()), "temporary directory left behind"
    with pytest.raises(ValueError, match="not strictly sorted"):
        with StoreWriter(tmp_path / "bad.zarr", _attrs()) as w:
            w.split("train").append(np.array([0, 2]), np.array([3, 1]), np.array([0, 0]), np.array([0]))
    with pytest.raises(ValueError, match="labels must lie"):
        with StoreWriter(tmp_path / "bad.zarr", _attrs()) as w:
            w.split("train").append(np.array([0, 0]), np.array([], int), np.array([], int), np.array([3]))
    with pytest.raises(ValueError, match="does not multiply"):
        StoreWriter(tmp_path / "bad.zarr", _attrs(unit_shape=[5, 5]))


def test_existing_store_needs_overwrite(store_path):
    path = store_path[0]
    with pytest.raises(FileExistsError):
        StoreWriter(path, _attrs())
    with StoreWriter(path, _attrs(), overwrite=True) as w:
        w.split("train").append(np.array([0, 1]), np.array([2]), np.array([3]), np.array([1]))
    assert len(open_store(path)["train"]) == 1
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_rejects_missing_foreign_and_old_stores(tmp_path, store_path):
    with pytest.raises(StoreError, match="no such spike store"):
        open_store(tmp_path / "nothing.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="not a Zarr v3 store"):
        open_store(tmp_path / "plain")
    import zarr

    zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w", zarr_format=3).attrs["format"] = "something"
    with pytest.raises(StoreError, match="not a spike store"):
        open_store(tmp_path / "foreign.zarr")
    old = tmp_path / "old.zarr"
    shutil.copytree(store_path[0], old)
    meta = json.loads((old / "zarr.json").read_text())
    meta["attributes"]["format_version"] = FORMAT_VERSION + 1
    (old / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=f"format version {FORMAT_VERSION + 1}"):
        open_store(old)


def test_rejects_truncated_store(tmp_path, store_path):
    cut = tmp_path / "cut.zarr"
    shutil.copytree(store_path[0], cut)
    import zarr

    group = zarr.open_group(str(cut / "train"), mode="r+", zarr_format=3)
    group["times"].resize((group["times"].shape[0] - 5,))
    with pytest.raises(StoreError, match="array 'times' does not match its manifest: shape"):
        open_store(cut)
    shutil.rmtree(cut / "test")
    with pytest.raises(StoreError, match="test"):
        open_store(cut)


def test_rewritten_chunk_is_refused_on_read(tmp_path, store_path):
    """A chunk rewritten through zarr (valid codec checksum, other values) no longer matches the manifest."""
    bad = tmp_path / "bad.zarr"
    shutil.copytree(store_path[0], bad)
    import zarr

    units = zarr.open_group(str(bad / "train"), mode="r+", zarr_format=3)["units"]
    units[0] = N_UNITS + 3
    with pytest.raises(StoreError, match=r"split 'train', array 'units', chunk 0 .*does not match the manifest"):
        open_store(bad)["train"].read_range(0, 5)


def test_killed_encode_leaves_nothing_that_opens(tmp_path):
    out = tmp_path / "killed.zarr"
    script = textwrap.dedent(
        f"""
        import time, numpy as np
        from spikedata.pipeline import SplitJob, dense_to_block, encode_to_store
        attrs = {_attrs()!r}
        def slow(a, b):
            time.sleep(0.05)
            r = np.zeros((b - a, {N_STEPS}, {N_UNITS}), bool); r[:, 1, 2] = True
            return dense_to_block(r, np.zeros(b - a, int))
        encode_to_store({str(out)!r}, attrs, {{"train": SplitJob(100000, slow, chunk=10)}}, progress=False)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while not any(p.name.startswith(".killed.zarr.partial") for p in tmp_path.iterdir()):
        assert time.time() < deadline and proc.poll() is None, "writer never started"
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    partial = next(p for p in tmp_path.iterdir() if p.name.startswith(".killed.zarr.partial"))
    with pytest.raises(StoreError):
        open_store(partial)


def test_worker_count_does_not_change_bytes(tmp_path):
    jobs = {"train": SplitJob(40, _deterministic_block, chunk=6)}
    a = open_store(encode_to_store(tmp_path / "a.zarr", _attrs(), jobs, workers=1, progress=False))
    b = open_store(encode_to_store(tmp_path / "b.zarr", _attrs(), jobs, workers=2, progress=False))
    assert a.fingerprint == b.fingerprint
    np.testing.assert_array_equal(a["train"].dense(range(40)), b["train"].dense(range(40)))


def _deterministic_block(start, stop) -> EventBlock:
    rasters = np.stack([np.random.default_rng([11, i]).random((N_STEPS, N_UNITS)) < 0.2 for i in range(start, stop)])
    return dense_to_block(rasters, np.arange(start, stop) % 3)


def test_open_over_http(store_path):
    """Many machines read one store without copying it: any fsspec URL works (here HTTP on loopback)."""
    import functools
    import http.server
    import threading

    path, (rasters, labels), _ = store_path
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(path.parent))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
        remote = open_store(url)
        assert remote.fingerprint == open_store(path).fingerprint
        np.testing.assert_array_equal(remote["train"].dense([0, 7, 49]), rasters[[0, 7, 49]])
        np.testing.assert_array_equal(remote["train"].labels, labels)
        with pytest.raises(StoreError, match="cannot open"):
            open_store(f"http://127.0.0.1:{server.server_address[1]}/missing.zarr")
    finally:
        server.shutdown()


def test_content_hash_independent_of_chunking(tmp_path):
    small = {"train": SplitJob(40, _deterministic_block, chunk=3)}
    large = {"train": SplitJob(40, _deterministic_block, chunk=40)}
    a = open_store(encode_to_store(tmp_path / "a.zarr", _attrs(), small, progress=False))
    b = open_store(encode_to_store(tmp_path / "b.zarr", _attrs(), large, progress=False))
    assert a["train"].attrs["content_sha256"] == b["train"].attrs["content_sha256"]
    assert a.fingerprint == b.fingerprint
