"""Store integrity (format version 2): every kind of damage ends in a StoreError naming store, split, array and
chunk, at open or at the first read of the chunk; `verify_store` re-derives everything; old stores are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from spikedata.store import (
    FORMAT_VERSION,
    StoreError,
    StoreWriter,
    canonical_sha256,
    chunk_digest,
    open_store,
    verify_store,
)

N_UNITS, N_STEPS, CHUNK = 12, 30, 64


def attrs(**over):
    a = dict(dataset="synthetic", encoder={"name": "bernoulli", "params": {}}, n_units=N_UNITS, unit_shape=[3, 4],
             n_steps=N_STEPS, dt_us=1000, classes=["a", "b", "c"], seed=7, source={"files": {}})
    a.update(over)
    return a


def rasters(n, seed):
    rng = np.random.default_rng(seed)
    return rng.random((n, N_STEPS, N_UNITS)) < 0.08, rng.integers(0, 3, n)


def write(path: Path, n_train=40, n_test=40) -> tuple[Path, dict]:
    """A store with several 64-event chunks per array (so that chunks can be swapped) and its dense content."""
    content = {}
    with StoreWriter(path, attrs(), event_chunk=CHUNK) as w:
        for name, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
            r, labels = rasters(n, seed)
            s, t, u = np.nonzero(r)
            indptr = np.concatenate([[0], np.cumsum(np.bincount(s, minlength=n))])
            w.split(name).append(indptr, t, u, labels, extras={"images": (r.sum(1) * 9).astype(np.uint8)})
            content[name] = (r, labels)
    return path, content


@pytest.fixture
def store(tmp_path):
    return write(tmp_path / "s.zarr")


def read_all(path: Path):
    st = open_store(path)
    return {name: (st[name].dense(range(len(st[name]))), st[name].labels.copy(), st[name].extra("images"))
            for name in st.splits}


def damaged(tmp_path, store_path, name="d.zarr") -> Path:
    out = tmp_path / name
    shutil.copytree(store_path, out)
    return out


def edit_json(path: Path, fn) -> None:
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


def test_intact_store_round_trips_and_verifies(store):
    path, content = store
    got = read_all(path)
    for name, (r, labels) in content.items():
        assert np.array_equal(got[name][0], r) and np.array_equal(got[name][1], labels)
    st = open_store(path)
    assert st.attrs["format_version"] == FORMAT_VERSION == 2
    manifest = st["train"].attrs["integrity"]
    assert manifest["algorithm"] == "crc32c"
    n_chunks = -(-st["train"].n_events // CHUNK)
    assert len(manifest["arrays"]["times"]["crc32c"]) == n_chunks >= 4
    # the manifest digest of chunk 1 is the crc32c of the decoded values of that chunk
    times = st["train"]._times.array[:]
    assert manifest["arrays"]["times"]["crc32c"][1] == chunk_digest(times[CHUNK : 2 * CHUNK])
    report = verify_store(path)
    assert report["train"]["events"] == content["train"][0].sum() and report["train"]["samples"] == 40
    assert report["train"]["content_sha256"] == st["train"].attrs["content_sha256"]
    # after a full read every chunk has been verified once
    st["train"].read_range(0, 40)
    st["train"].extra("images")
    assert all(a["chunks"] == a["verified"] for a in st["train"].integrity().values())


def chunk(path: Path, split: str, array: str, k: int) -> Path:
    return path / split / array / "c" / str(k)


DAMAGE = {
    # name: (damage(path), regex the StoreError must match, where it fails: "open" or "read")
    "deleted labels chunk": (lambda p: chunk(p, "train", "labels", 0).unlink(),
                             r"split 'train', array 'labels', chunk 0 .* is missing", "open"),
    "deleted times chunk": (lambda p: chunk(p, "train", "times", 2).unlink(),
                            r"split 'train', array 'times', chunk 2 .* is missing", "read"),
    "all times chunks deleted": (lambda p: [f.unlink() for f in (p / "train/times/c").iterdir()],
                                 r"array 'times', chunk 0 .* is missing", "read"),
    "truncated units chunk": (lambda p: chunk(p, "train", "units", 1).write_bytes(
        chunk(p, "train", "units", 1).read_bytes()[:-7]), r"array 'units', chunk 1 .*cannot be decoded", "read"),
    "bit flip in a times chunk": (lambda p: flip(chunk(p, "train", "times", 3), 20),
                                  r"array 'times', chunk 3 .*cannot be decoded", "read"),
    "two flipped bytes in labels": (lambda p: flip(chunk(p, "test", "labels", 0), 30, 31),
                                    r"split 'test', array 'labels', chunk 0 .*cannot be decoded", "open"),
    "swapped times chunks": (lambda p: swap(chunk(p, "train", "times", 0), chunk(p, "train", "times", 1)),
                             r"array 'times', chunk 0 .*does not match the manifest", "read"),
    "units chunk copied from the test split": (lambda p: shutil.copy(chunk(p, "test", "units", 1),
                                                                     chunk(p, "train", "units", 1)),
                                               r"split 'train', array 'units', chunk 1 .*does not match", "read"),
    "times chunk copied into units": (lambda p: shutil.copy(chunk(p, "train", "times", 1),
                                                            chunk(p, "train", "units", 1)),
                                      r"array 'units', chunk 1 .*does not match", "read"),
    "deleted images extra chunk": (lambda p: (p / "train/extra/images/c/0/0").unlink(),
                                   r"array 'extra/images', chunk 0 .* is missing", "extra"),
    "n_units edited to text": (lambda p: edit_json(p / "zarr.json", lambda m: m["attributes"].update(n_units="abc")),
                               r"attribute 'n_units' is 'abc', expected a positive integer", "open"),
    "dt_us edited to text": (lambda p: edit_json(p / "zarr.json", lambda m: m["attributes"].update(dt_us="fast")),
                             r"attribute 'dt_us' is 'fast'", "open"),
    "dt_us edited to another number": (lambda p: edit_json(p / "zarr.json",
                                                           lambda m: m["attributes"].update(dt_us=1001)),
                                       r"root attributes do not match their recorded sha256", "open"),
    "class counts edited": (lambda p: edit_json(p / "train/zarr.json", lambda m: m["attributes"].update(
        class_counts=[1, 2, 3])), r"split 'train': its attributes .* do not match the digest", "open"),
    "manifest digest edited": (lambda p: edit_json(p / "train/zarr.json", lambda m: m["attributes"]["integrity"][
        "arrays"]["times"]["crc32c"].__setitem__(0, 1)), r"split 'train': its attributes", "open"),
    "times dtype edited": (lambda p: edit_json(p / "train/times/zarr.json", lambda m: m.update(data_type="uint32")),
                           r"array 'times' does not match its manifest: dtype uint32", "open"),
    "crc32c codec removed": (lambda p: edit_json(p / "train/labels/zarr.json",
                                                 lambda m: m.update(codecs=m["codecs"][:-1])),
                             r"array 'labels' does not match its manifest: no crc32c codec", "open"),
    "split group deleted": (lambda p: shutil.rmtree(p / "test"), r"split 'test': missing", "open"),
    "units array deleted": (lambda p: shutil.rmtree(p / "train/units"), r"missing array 'units'", "open"),
    "split replaced by another store's": (None, r"split 'train': its attributes", "open"),
    "root zarr.json truncated": (lambda p: (p / "zarr.json").write_bytes((p / "zarr.json").read_bytes()[:100]),
                                 r"cannot read Zarr metadata", "open"),
}


def flip(path: Path, *positions: int) -> None:
    data = bytearray(path.read_bytes())
    for pos in positions:
        data[pos] ^= 0x10
    path.write_bytes(bytes(data))


def swap(a: Path, b: Path) -> None:
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damage_is_named_before_the_data_is_used(tmp_path, store, kind):
    path, _ = store
    bad = damaged(tmp_path, path)
    damage, message, when = DAMAGE[kind]
    if damage is None:  # a complete, intact split of another store (its own manifest included) copied in
        shutil.rmtree(bad / "train")
        shutil.copytree(write(tmp_path / "other.zarr")[0] / "test", bad / "train")
    else:
        damage(bad)
    if when == "open":
        with pytest.raises(StoreError, match=message) as err:
            open_store(bad)
    else:
        split = open_store(bad)["train"]
        with pytest.raises(StoreError, match=message) as err:
            if when == "read":
                split.read_range(0, len(split))
            else:
                split.extra("images")
    assert str(bad) in str(err.value)
    if when != "open":  # verify finds it too
        with pytest.raises(StoreError, match=message):
            verify_store(bad)


def test_reads_are_independent_arrays(store):
    """Consecutive reads share a decoded chunk internally; what a caller gets is its own writable array."""
    split = open_store(store[0])["train"]
    a = split.read_range(0, 7)
    b = split.read_range(7, 9)  # starts in the chunk the first read ended in
    want_b = b.times.copy()
    a.times[:] = 0
    b.times[:] = 0
    c = split.read_range(7, 9)
    assert np.array_equal(c.times, want_b)
    t, _ = split.events(8)
    t[:] = 1
    assert np.array_equal(split.events(8)[0], want_b[b.indptr[1] : b.indptr[2]])
    r, _ = store[1]["train"]
    assert np.array_equal(split.dense(range(40)), r)


def test_fill_values_cannot_pass_validation(store):
    """Even without the manifest, a missing chunk reads as invalid data: labels -1, times/units at the dtype max."""
    st = open_store(store[0])
    fills = {name: a["fill_value"] for name, a in st["train"].attrs["integrity"]["arrays"].items()}
    assert fills["labels"] == -1 and fills["indptr"] == -1
    assert fills["times"] == np.iinfo(np.uint16).max >= N_STEPS and fills["units"] == np.iinfo(np.uint16).max


def test_verify_recomputes_the_content_hash(tmp_path, store):
    """A forged split (manifest and digests rewritten to match, content hash not) is found by verify only."""
    bad = damaged(tmp_path, store[0])

    def forge(meta):
        meta["attributes"]["content_sha256"] = "0" * 64

    edit_json(bad / "train/zarr.json", forge)
    train_attrs = json.loads((bad / "train/zarr.json").read_text())["attributes"]
    edit_json(bad / "zarr.json", lambda m: m["attributes"]["integrity"]["splits"].update(
        train=canonical_sha256(train_attrs)))
    open_store(bad)["train"].read_range(0, 40)  # every chunk matches its manifest
    with pytest.raises(StoreError, match="content hash .* does not match the stored content_sha256"):
        verify_store(bad)


def test_older_store_gets_a_clear_message(tmp_path, store):
    old = damaged(tmp_path, store[0])
    edit_json(old / "zarr.json", lambda m: m["attributes"].update(format_version=1))
    with pytest.raises(StoreError, match=r"format version 1 \(no chunk checksums or chunk manifest\); this spikedata "
                                         r"reads only version 2 .*re-encode the dataset with this version"):
        open_store(old)


def test_training_never_sees_a_damaged_chunk(tmp_path, store):
    """The loader (what `hm2bp fit` streams from) raises the StoreError before yielding any batch."""
    from hm2bp.train.loader import SpikeLoader

    bad = damaged(tmp_path, store[0])
    chunk(bad, "train", "times", 1).unlink()
    loader = SpikeLoader(open_store(bad)["train"], batch_size=4, shuffle=True, seed=0)
    seen = []
    with pytest.raises(StoreError, match="array 'times', chunk 1"):
        for batch in loader.epoch(0):
            seen.append(batch)
    assert seen == []  # the whole split is resident: read (and refused) before the first batch
