"""HDF5 event files written here to each published layout from the real EVT 3.0 sample's events: Prophesee's
/CD/events with ECF-compressed chunks (an ECF encoder written here from the codec's description, all three of its
x / y / polarity modes), DSEC's events/{x,y,p,t} + ms_to_idx + t_offset (Blosc through hdf5plugin where
installed), evlib's events/{xs,ys,ts,ps}; evlib (a test-only peer) as an independent ECF decoder."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from spikedata.io.ecf import FILTER_ID
from spikedata.io.event_types import EventFileError
from spikedata.io.events import read_events, read_events_with_info

h5py = pytest.importorskip("h5py")

CD_DTYPE = np.dtype({"names": ["x", "y", "p", "t"], "formats": ["<u2", "<u2", "<i2", "<i8"],
                     "offsets": [0, 2, 4, 8], "itemsize": 16})  # fmt: skip
CHUNK = 16384


# ------------------------------------------------------------------------------------------ ECF encoder


def _runs(values: np.ndarray) -> list[tuple[int, int]]:
    """(value, count) runs of a 1-d array."""
    edges = np.flatnonzero(np.diff(values)) + 1
    starts = np.concatenate([[0], edges])
    counts = np.diff(np.concatenate([starts, [len(values)]]))
    return [(int(values[s]), int(c)) for s, c in zip(starts, counts, strict=True)]


def ecf_encode(ev: np.ndarray, mode: str) -> bytes:
    """One ECF chunk of time-ordered events `ev` (fields t, x, y, p); mode 'yxp', 'xp' or 'masked'."""
    n = len(ev)
    t, x, y, p = (ev[k].astype(np.int64) for k in "txyp")
    out = bytearray(struct.pack("<I", n << 2 | (mode == "yxp") << 1 | (mode == "xp")))
    out += struct.pack("<Q", int(t[0]))
    cur = int(t[0])
    for value, count in _runs(t):
        if value >= cur + 15:  # a time jump: 4-bit digits, least significant first
            dt = value - cur
            while dt:
                out.append(0xF0 | (dt & 15))
                dt >>= 4
            cur = value
        d, cur = value - cur, value
        out += bytes([d << 4 | 15, count & 255, count >> 8]) if count >= 15 else bytes([d << 4 | count])
    pad = lambda a: np.concatenate([a, np.zeros(-len(a) % 4, np.int64)])  # noqa: E731
    if mode == "yxp":
        v = pad(y << 12 | x << 1 | p).reshape(-1, 4)
        words = np.stack([v[:, 0] << 8 | v[:, 1] & 0xFF, (v[:, 1] >> 8) << 16 | v[:, 2] & 0xFFFF,
                          (v[:, 2] >> 16) << 24 | v[:, 3] & 0xFFFFFF], 1) & 0xFFFFFFFF  # fmt: skip
        return bytes(out + words.astype("<u4").tobytes())
    for value, count in _runs(y):
        out += struct.pack("<HH", value << 5 | 31, count) if count >= 31 else struct.pack("<H", value << 5 | count)
    if mode == "xp":
        v = pad(x << 1 | p).reshape(-1, 4)
        words = np.stack([v[:, 0] << 4 | v[:, 1] & 0xF, (v[:, 1] >> 4) << 8 | v[:, 2] & 0xFF,
                          (v[:, 2] >> 8) << 12 | v[:, 3] & 0xFFF], 1) & 0xFFFF  # fmt: skip
        return bytes(out + words.astype("<u2").tobytes())
    i = 0
    while i < n:  # x with a mask of the next five x values present
        word, base = int(x[i]) << 5, int(x[i])
        i += 1
        for j in range(5):
            if i < n and x[i] == base + j + 1:
                word |= 1 << (4 - j)
                i += 1
        out += struct.pack("<H", word)
    for value, count in _runs(p):
        out += bytes([value << 7 | 127, count & 255, count >> 8]) if count >= 127 else bytes([value << 7 | count])
    return bytes(out)


def write_prophesee_hdf5(path, events: np.ndarray, modes=("yxp", "xp", "masked"), geometry="1280x720") -> None:
    """Metavision's layout: /CD/events (ECF chunks of 16384 events), /CD/indexes, /EXT_TRIGGER, file attributes."""
    cd = np.zeros(len(events), CD_DTYPE)
    for k in "txyp":
        cd[k] = events[k]
    with h5py.File(path, "w") as f:
        f.attrs["version"] = b"1.0"
        f.attrs["format"] = b"ECF"
        f.attrs["geometry"] = geometry.encode()
        ds = f.create_dataset("CD/events", shape=(len(cd),), maxshape=(None,), chunks=(CHUNK,), dtype=CD_DTYPE,
                              compression=FILTER_ID, allow_unknown_filter=True)
        for k, a in enumerate(range(0, len(cd), CHUNK)):
            ds.id.write_direct_chunk((a,), ecf_encode(cd[a : a + CHUNK], modes[k % len(modes)]), filter_mask=0)
        idx = np.zeros(2, [("id", "<u8"), ("ts", "<i8")])
        f.create_dataset("CD/indexes", data=idx, maxshape=(None,), chunks=(CHUNK,))
        f.create_dataset("EXT_TRIGGER/events", shape=(3,), dtype=[("p", "<i2"), ("t", "<i8"), ("id", "<i2")])


def write_dsec(path, events: np.ndarray, compression=None) -> int:
    """DSEC's layout: events/{p,t,x,y}, t relative to t_offset (µs), ms_to_idx; returns t_offset."""
    offset = int(events["t"][0]) - 17
    t = (events["t"] - offset).astype(np.uint32)
    with h5py.File(path, "w") as f:
        opts = {"compression": compression} if compression is not None else {}
        for k, v in (("p", events["p"].astype(np.uint8)), ("t", t), ("x", events["x"].astype(np.uint16)),
                     ("y", events["y"].astype(np.uint16))):  # fmt: skip
            f.create_dataset(f"events/{k}", data=v, chunks=True, **opts)
        f.create_dataset("ms_to_idx", data=np.searchsorted(t, np.arange(int(t[-1]) // 1000 + 1) * 1000).astype(
            np.uint64))
        f.create_dataset("t_offset", data=np.int64(offset))
    return offset


# ------------------------------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def real(shared_data) -> np.ndarray:
    """The real EVT 3.0 sample's 219,596 events (1280 x 720), time-ordered."""
    return read_events(shared_data / "dvs/prophesee_evt3_sample.raw")


@pytest.mark.parametrize("modes", [("yxp",), ("xp",), ("masked",), ("yxp", "xp", "masked")],
                         ids=["packed-yxp", "packed-xp", "masked", "mixed"])
def test_prophesee_ecf(real, tmp_path, modes):
    path = tmp_path / "rec.hdf5"
    write_prophesee_hdf5(path, real, modes)
    events, info = read_events_with_info(path)
    assert info.format == "hdf5" and info.address_layout == "prophesee" and info.sensor_size == (1280, 720)
    assert np.array_equal(events, real) and info.skipped_by_type == {"ext_trigger": 3}


def test_ecf_against_evlib(real, tmp_path):
    evlib = pytest.importorskip("evlib", reason="evlib (test-only peer) not installed")
    path = tmp_path / "rec.hdf5"
    write_prophesee_hdf5(path, real[:50_000])
    theirs = evlib.load_events(str(path), sort=False).collect()
    ours = read_events(path)
    assert len(theirs) == len(ours) == 50_000
    assert np.array_equal(theirs["t"].dt.total_microseconds().to_numpy(), ours["t"])
    assert np.array_equal(theirs["x"].to_numpy(), ours["x"]) and np.array_equal(theirs["y"].to_numpy(), ours["y"])
    assert np.array_equal(theirs["polarity"].to_numpy() > 0, ours["p"] == 1)


def test_uncompressed_cd_events(real, tmp_path):
    path = tmp_path / "plain.hdf5"
    cd = np.zeros(1000, CD_DTYPE)
    for k in "txyp":
        cd[k] = real[k][:1000]
    with h5py.File(path, "w") as f:
        f.attrs["geometry"] = "1280x720"
        f.create_dataset("CD/events", data=cd, compression="gzip")
    assert np.array_equal(read_events(path), real[:1000])


@pytest.mark.parametrize("compression", ["none", "gzip", "blosc"])
def test_dsec(real, tmp_path, compression):
    if compression == "blosc":
        hdf5plugin = pytest.importorskip("hdf5plugin", reason="hdf5plugin (DSEC's Blosc) not installed")
        comp = hdf5plugin.Blosc(cname="zstd", clevel=5)
    else:
        comp = None if compression == "none" else "gzip"
    path = tmp_path / "events.h5"
    write_dsec(path, real, comp)
    events, info = read_events_with_info(path)
    assert info.address_layout == "dsec" and info.sensor_size is None
    assert np.array_equal(events, real)  # absolute times: t + t_offset


def test_dsec_index_must_agree(real, tmp_path):
    path = tmp_path / "events.h5"
    write_dsec(path, real)
    with h5py.File(path, "r+") as f:
        f["ms_to_idx"][2] += 1
    with pytest.raises(EventFileError, match=r"ms_to_idx\[2\] = .* the index and the time stamps disagree"):
        read_events(path)


def test_evlib_layout(real, tmp_path):
    evlib = pytest.importorskip("evlib", reason="evlib (test-only peer) not installed")
    path = tmp_path / "evlib.h5"
    part = real[:20_000]
    evlib.save_events_to_hdf5(part["x"].astype(np.int64), part["y"].astype(np.int64), part["t"] / 1e6,
                              np.where(part["p"] == 1, 1, -1).astype(np.int64), str(path))
    events, info = read_events_with_info(path)
    assert info.address_layout == "columns" and np.array_equal(events, part)


def test_damaged_ecf_chunk_and_foreign_hdf5(real, tmp_path):
    path = tmp_path / "rec.hdf5"
    write_prophesee_hdf5(path, real[:40_000], ("masked",))
    with h5py.File(path, "r") as f:
        infos = []
        f["CD/events"].id.chunk_iter(infos.append)
    second = sorted(infos, key=lambda c: c.chunk_offset)[1]
    data = bytearray(path.read_bytes())
    data[second.byte_offset + 40 : second.byte_offset + second.size] = bytes(second.size - 40)  # zeroed
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(bytes(data))
    with pytest.raises(EventFileError, match=r"ECF chunk 1 \(events 16384..32767\) is damaged: the chunk ends"):
        read_events(bad)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("spikes/times", data=np.arange(3))
    with pytest.raises(EventFileError, match=r"other\.h5: hdf5: no event layout found \(top-level names \['spikes'\]"):
        read_events(other)
