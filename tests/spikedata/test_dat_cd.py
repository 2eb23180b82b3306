"""Prophesee DAT files with CD events (event type 12) beside the Event2D (type 0) files: written here to the layout
from the real N-CARS sample, written by faery (an independent writer), and read back by expelliarmus (test-only
peers, skipped when absent)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from spikedata.io.event_types import EventFileError
from spikedata.io.events import read_events, read_events_bytes, read_events_with_info

CD_HEADER = b"% Data file containing CD events.\n% Version 2\n% Date 2024-01-01 00:00:00\n% Height 100\n% Width 120\n"


def dat_cd_file(events: np.ndarray, header: bytes = CD_HEADER, ev_type: int = 12) -> bytes:
    """A DAT file of `events` (`EVENT_DTYPE`): type / size bytes, then uint32 t and uint32 x | y << 14 | p << 28."""
    body = np.empty((len(events), 2), "<u4")
    body[:, 0] = events["t"] & 0xFFFFFFFF
    x, y, p = (events[k].astype(np.uint32) for k in "xyp")
    body[:, 1] = x | y << 14 | p << 28
    return header + bytes([ev_type, 8]) + body.tobytes()


def test_real_events_as_cd_dat(shared_data, tmp_path):
    ev, info0 = read_events_with_info(shared_data / "dvs/ncars_sample.dat")
    assert info0.header["event_type"] == "0 (Event2D)"
    path = tmp_path / "cd.dat"
    path.write_bytes(dat_cd_file(ev))
    events, info = read_events_with_info(path)
    assert info.format == "dat" and info.sensor_size == (120, 100) and info.header["event_type"] == "12 (EventCD)"
    assert np.array_equal(events, ev) and len(events) == 2009


def test_cd_dat_against_expelliarmus(shared_data, tmp_path):
    expelliarmus = pytest.importorskip("expelliarmus", reason="expelliarmus (test-only peer) not installed")
    ev = read_events(shared_data / "dvs/ncars_sample.dat")
    path = tmp_path / "cd.dat"
    path.write_bytes(dat_cd_file(ev))
    theirs = expelliarmus.Wizard(encoding="dat").read(str(path))
    ours = read_events(path)
    for k in "txyp":
        assert np.array_equal(theirs[k].astype(np.int64), ours[k].astype(np.int64)), k


def test_dat_written_by_faery(tmp_path):
    faery = pytest.importorskip("faery", reason="faery (test-only peer) not installed")
    rng = np.random.default_rng(3)
    n = 5000
    src = np.zeros(n, faery.EVENTS_DTYPE)
    src["t"] = np.sort(rng.integers(0, 2_000_000, n))
    src["x"], src["y"], src["on"] = rng.integers(0, 304, n), rng.integers(0, 240, n), rng.integers(0, 2, n)
    path = tmp_path / "faery.dat"
    faery.events_stream_from_array(src, (304, 240)).to_file(str(path), version="dat2", zero_t0=False)
    assert path.read_bytes().split(b"% Height 240\n")[1][:2] == b"\x0c\x08"  # faery writes type 12 (CD)
    events, info = read_events_with_info(path)
    assert info.sensor_size == (304, 240) and len(events) == n
    assert np.array_equal(events["t"], src["t"].astype(np.int64)) and np.array_equal(events["x"], src["x"])
    assert np.array_equal(events["y"], src["y"]) and np.array_equal(events["p"], src["on"].astype(np.int8))


def test_cd_polarity_bits_and_unknown_types():
    ev = np.zeros(2, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])
    ev["t"], ev["x"], ev["p"] = [5, 6], [1, 2], [1, 0]
    data = bytearray(dat_cd_file(ev))
    data[-1] |= 0x20  # polarity field (bits 31-28) of the last event becomes 2
    with pytest.raises(EventFileError, match=r"dat: event 1: polarity 2") as err:
        read_events_bytes(bytes(data), "p.dat")
    assert err.value.offset == len(CD_HEADER) + 2 + 8
    with pytest.raises(EventFileError, match=r"event type 5 of size 8: only 2-D / CD events \(type 0 or 12"):
        read_events_bytes(dat_cd_file(ev, ev_type=5), "t.dat")
    assert struct.unpack("<I", dat_cd_file(ev)[-4:])[0] >> 28 == 0
