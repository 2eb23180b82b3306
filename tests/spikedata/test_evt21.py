"""Prophesee EVT 2.1: files written here to the published word layout (both byte orders), from the real EVT 3.0
sample's events and from hand-made words; a plain word-by-word decoder and evlib (a test-only peer) as references."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from spikedata.io.event_types import EVENT_DTYPE, EventFileError
from spikedata.io.events import detect_format, read_events, read_events_with_info

HEADER = "% evt 2.1\n% format EVT21;height=720;width=1280\n% end\n"
LEGACY_HEADER = "% evt 2.1\n% format EVT21;height=720;width=1280;endianness=legacy\n% end\n"


def cd_word(p: int, t: int, x: int, y: int, mask: int) -> int:
    """EVT_NEG / EVT_POS word: 6 low time bits, x aligned on 32, y, validity mask."""
    return (p << 60) | ((t & 0x3F) << 54) | (x << 43) | (y << 32) | mask


def time_high(t: int) -> int:
    return (0x8 << 60) | ((t >> 6) << 32)


def evt21_words(events: np.ndarray) -> np.ndarray:
    """Words (uint64) of events ordered by (t, y, p, x): a TIME_HIGH whenever t >> 6 changes, one vector word per
    run of events with the same (t, y, p, x // 32) and distinct x (vectorised: the benchmarks write 50 M events)."""
    t, x, y, p = (events[k].astype(np.int64) for k in "txyp")
    n = len(t)
    if not n:
        return np.zeros(0, np.uint64)
    base = x & ~31
    new = np.ones(n, bool)
    new[1:] = (t[1:] != t[:-1]) | (y[1:] != y[:-1]) | (p[1:] != p[:-1]) | (base[1:] != base[:-1]) | (x[1:] == x[:-1])
    starts = np.flatnonzero(new)
    masks = np.bitwise_or.reduceat(np.left_shift(1, x - base).astype(np.uint64), starts)
    s = starts
    cd = ((p[s].astype(np.uint64) << np.uint64(60)) | ((t[s] & 0x3F).astype(np.uint64) << np.uint64(54))
          | (base[s].astype(np.uint64) << np.uint64(43)) | (y[s].astype(np.uint64) << np.uint64(32)) | masks)
    high = t[s] >> 6
    th_at = np.flatnonzero(np.concatenate([[True], high[1:] != high[:-1]]))
    th = (np.uint64(0x8) << np.uint64(60)) | (high[th_at].astype(np.uint64) << np.uint64(32))
    out = np.empty(len(cd) + len(th), np.uint64)
    pos_th = th_at + np.arange(len(th_at))  # each TIME_HIGH goes before its first vector word
    is_th = np.zeros(len(out), bool)
    is_th[pos_th] = True
    out[is_th] = th
    out[~is_th] = cd
    return out


def evt21_file(words, header: str = HEADER, legacy: bool = False) -> bytes:
    arr = np.asarray(words, dtype=np.uint64)
    if legacy:  # IMX636: each word as its two 32-bit halves, the high half first
        arr = (arr >> np.uint64(32)) | (arr << np.uint64(32))
    return header.encode() + arr.astype("<u8").tobytes()


def plain_evt21(data: bytes, legacy: bool = False) -> list[tuple[int, int, int, int]]:
    """Word-by-word decoder in plain Python (no code shared with the reader)."""
    body = data[data.index(b"% end\n") + 6 :]
    out, high = [], None
    for (w,) in struct.iter_unpack("<Q", body):
        if legacy:
            w = ((w & 0xFFFFFFFF) << 32) | (w >> 32)
        kind = w >> 60
        if kind == 0x8:
            high = ((w >> 32) & 0xFFFFFFF) << 6
        elif kind in (0, 1) and high is not None:
            t, x, y = high + (w >> 54 & 0x3F), w >> 43 & 0x7FF, w >> 32 & 0x7FF
            out.extend((t, x + b, y, kind) for b in range(32) if w >> b & 1)
    return out


def _tuples(events: np.ndarray) -> list[tuple[int, int, int, int]]:
    return list(zip(*(events[k].tolist() for k in "txyp"), strict=True))


@pytest.fixture(scope="module")
def evt3_events(shared_data) -> np.ndarray:
    """The real EVT 3.0 sample's 219,596 events ordered by (t, y, p, x), as a vectorising sensor reads them out."""
    ev = read_events(shared_data / "dvs/prophesee_evt3_sample.raw")
    return ev[np.lexsort((ev["x"], ev["p"], ev["y"], ev["t"]))]


@pytest.mark.parametrize("legacy", [False, True], ids=["little-endian", "legacy"])
def test_real_events_written_as_evt21(tmp_path, evt3_events, legacy):
    words = evt21_words(evt3_events)
    assert len(words) < len(evt3_events)  # some real events share a vector word
    path = tmp_path / "rec.raw"
    path.write_bytes(evt21_file(words, LEGACY_HEADER if legacy else HEADER, legacy))
    events, info = read_events_with_info(path)
    assert info.format == "evt21" and info.sensor_size == (1280, 720) and events.dtype == EVENT_DTYPE
    assert _tuples(events) == plain_evt21(path.read_bytes(), legacy)
    assert np.array_equal(events, evt3_events)
    assert info.skipped_records == 0 and info.header["byte_order"].startswith("legacy" if legacy else "little")


def test_against_evlib(tmp_path, evt3_events):
    evlib = pytest.importorskip("evlib", reason="evlib (test-only peer) not installed")
    path = tmp_path / "rec.raw"
    path.write_bytes(evt21_file(evt21_words(evt3_events)))
    ours = read_events(path)
    theirs = evlib.load_events(str(path), sort=False).collect()
    assert len(theirs) == len(ours)
    t = theirs["t"].dt.total_microseconds().to_numpy()
    assert np.array_equal(t, ours["t"])
    assert np.array_equal(theirs["x"].to_numpy(), ours["x"]) and np.array_equal(theirs["y"].to_numpy(), ours["y"])
    assert np.array_equal(theirs["polarity"].to_numpy() > 0, ours["p"] == 1)


def test_words_from_the_spec():
    th = 1000 << 6
    words = [
        cd_word(1, 5, 0, 1, 0b1),  # before the first TIME_HIGH: skipped, counted
        time_high(th), cd_word(1, 3, 32, 7, 0b1011), (0xA << 60) | (3 << 54) | (1 << 40) | (1 << 32),
        cd_word(0, 63, 1248, 719, 1 << 31), (0xE << 60), time_high(th + 64), cd_word(0, 0, 0, 0, 0xFFFFFFFF),
    ]
    data = evt21_file(words)
    assert detect_format(data) == "evt21"
    from spikedata.io.events import read_events_bytes

    events, info = read_events_bytes(data, "x.raw")
    assert _tuples(events[:4]) == [(th + 3, 32, 7, 1), (th + 3, 33, 7, 1), (th + 3, 35, 7, 1), (th + 63, 1279, 719, 0)]
    assert _tuples(events[4:]) == [(th + 64, x, 0, 0) for x in range(32)]
    assert info.skipped_by_type == {"before_first_time_high": 1, "ext_trigger": 1, "others": 1}
    legacy, _ = read_events_bytes(evt21_file(words, LEGACY_HEADER, legacy=True), "l.raw")
    assert np.array_equal(legacy, events)


def test_time_high_loop_and_errors(tmp_path):
    top = ((1 << 28) - 1) << 6
    events, _ = read_events_with_info_bytes([time_high(top), cd_word(1, 63, 0, 0, 1), time_high(0),
                                             cd_word(0, 1, 0, 0, 1)])
    assert events["t"].tolist() == [top + 63, (1 << 34) + 1]
    start = len(HEADER)
    cases = [
        (evt21_file([time_high(64), cd_word(1, 0, 0, 0, 1)]) + b"\x00" * 3, "truncated", start + 16),
        (evt21_file([time_high(64), 0x3 << 60]), "type 0x3", start + 8),
        (evt21_file([time_high(64), cd_word(1, 0, 1248, 720, 1)]), r"outside the sensor \[0, 1280\) x \[0, 720\)",
         start + 8),
        (evt21_file([time_high(64_000), cd_word(1, 0, 0, 0, 1), time_high(64), cd_word(1, 0, 0, 0, 1)]),
         "time runs backwards", start + 24),
    ]
    for k, (data, message, offset) in enumerate(cases):
        path = tmp_path / f"bad{k}.raw"
        path.write_bytes(data)
        with pytest.raises(EventFileError, match=message) as err:
            read_events(path)
        assert err.value.path == str(path) and err.value.offset == offset and err.value.format == "evt21", k


def read_events_with_info_bytes(words):
    from spikedata.io.events import read_events_bytes

    return read_events_bytes(evt21_file(words), "m.raw")
