"""Readers refuse what they cannot vouch for: the checks of `spikedata.io.validate`, exact magic lines, zero-filled
payloads, AEDAT 4 headers checked before the Rust decoder (no panic, no abort), and bounded IDX reading."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from spikedata.io.event_types import EventFileError, make_events
from spikedata.io.events import read_events_bytes, read_events_with_info
from spikedata.io.idx import IdxError, read_idx
from spikedata.io.validate import MAX_REPEATS, TIME_TOLERANCE_US, check_events, check_payload
from tests.writers import aedat2_bytes, aedat31_bytes, polarity_packet


def events(t, x=None, y=None, p=None):
    n = len(t)
    return make_events(t, x if x is not None else np.arange(n) % 5, y if y is not None else np.zeros(n, int),
                       p if p is not None else np.arange(n) % 2)


def test_check_events_rules():
    ev = events([0, 10, 20])
    out, repairs = check_events(ev, "f", "fmt", (5, 5))
    assert repairs == {} and np.array_equal(out, ev)
    with pytest.raises(EventFileError, match=r"f: fmt: event 1 at \(x 7, y 0\) lies outside the sensor \[0, 5\) x "
                                             r"\[0, 5\); 1 event\(s\) outside in all \(byte offset 13\)"):
        check_events(events([0, 1, 2], x=np.array([0, 7, 1])), "f", "fmt", (5, 5), offsets=np.array([5, 13, 21]))
    with pytest.raises(EventFileError, match="outside the sensor x, y >= 0"):
        check_events(events([0, 1], y=np.array([0, -3])), "f", "fmt")
    with pytest.raises(EventFileError, match="event 0: polarity 2"):
        check_events(events([0, 1], p=np.array([2, 0])), "f", "fmt")
    # a small backward step is repaired by a stable sort and reported; a large one is refused
    out, repairs = check_events(events([0, 500, 499, 600]), "f", "fmt")
    assert out["t"].tolist() == [0, 499, 500, 600] and repairs == {"time_reordered": 2}
    with pytest.raises(EventFileError, match=rf"time runs backwards at event 2 \(5000 -> 100 µs, more than the "
                                             rf"tolerated {TIME_TOLERANCE_US} µs\)"):
        check_events(events([0, 5000, 100]), "f", "fmt")
    # runs of identical events: a few are real (duplicates exist in recordings), MAX_REPEATS + 1 are refused
    same = make_events(np.zeros(MAX_REPEATS, int), np.zeros(MAX_REPEATS, int), np.zeros(MAX_REPEATS, int),
                       np.zeros(MAX_REPEATS, int))
    check_events(same, "f", "fmt")
    longer = np.concatenate([events([0]), same])
    with pytest.raises(EventFileError, match=f"{MAX_REPEATS + 1} identical events in a row from event 0"):
        check_events(longer, "f", "fmt")
    with pytest.raises(EventFileError, match="the payload is 40 zero bytes"):
        check_payload(b"#h\n" + bytes(40), 3, "f", "fmt")


def test_fast_clean_pass_never_hides_what_the_full_scan_reports():
    """`events_look_clean` (the branch-free common-case pass) may send a clean array to the full scan, never the
    reverse: on random arrays with planted defects, whatever `scan_events` would report makes it false."""
    from spikedata.io.validate import events_look_clean, scan_events

    rng = np.random.default_rng(11)
    cleared = 0
    for _ in range(400):
        n = int(rng.integers(1, 60))
        t = np.sort(rng.integers(0, 50, n))
        ev = make_events(t, rng.integers(0, 4, n), rng.integers(0, 3, n), rng.integers(0, 2, n))
        defect = rng.integers(6)
        k = int(rng.integers(n))
        if defect == 1:
            ev["p"][k] = rng.choice([-1, 2, 7])
        elif defect == 2:
            ev["x" if rng.random() < 0.5 else "y"][k] = rng.choice([-2, 4, 9])
        elif defect == 3 and n > 1:
            ev["t"][k] = int(rng.integers(0, 50))
        elif defect == 4:
            ev = np.concatenate([ev[:k], np.repeat(ev[k : k + 1], int(rng.integers(2, 20))), ev[k:]])
        w, h = (4, 3) if rng.random() < 0.7 else (-1, -1)
        for repeats in (2, 5, MAX_REPEATS):
            bad_p, outside, _, _, run_len, _, _, back = scan_events(ev, w, h)
            reported = bad_p >= 0 or outside >= 0 or run_len > repeats or back
            clean = events_look_clean(ev, w, h, repeats)
            assert not (clean and reported), (ev.tolist(), w, h, repeats)
            cleared += clean
    assert cleared > 100  # the fast pass does take the common case


def test_zero_filled_and_empty_payloads(tmp_path):
    with pytest.raises(EventFileError, match=r"zeros\.bin: atis40: the payload is 5000 zero bytes"):
        read_events_bytes(bytes(5000), "zeros.bin")
    head = b"#!AER-DAT2.0\r\n# AEChip: ch.unizh.ini.jaer.chip.retina.DVS128\r\n"
    with pytest.raises(EventFileError, match="aedat2: the payload is 800 zero bytes"):
        read_events_bytes(head + bytes(800), "z.aedat")
    with pytest.raises(EventFileError, match="corrupt packet header"):
        read_events_bytes(aedat31_bytes([]) + bytes(280), "z3.aedat")
    (tmp_path / "dir.bin").mkdir()
    with pytest.raises(EventFileError, match="is a directory"):
        read_events_with_info(tmp_path / "dir.bin")


def test_exact_magic_lines():
    data = aedat31_bytes([polarity_packet([(1, 2, 1, 10, 1)])])
    for bad in (b"#!AEQ-DAT3.1", b"#?AER-DAT3.1", b"#!AER-DAT3.2"):
        with pytest.raises(EventFileError, match="version|damaged"):
            read_events_bytes(bad + data[12:], "m.aedat")
    with pytest.raises(EventFileError, match="damaged version line"):
        read_events_bytes(b"#!AER-DAT3.1#junk\r\n" + data[14:], "m.aedat")


def test_aedat_coordinates_inside_the_named_sensor():
    # DVS128 header: 7-bit coordinates always fit; AEDAT 3.1 source 'DVS128' with x = 200 does not
    bad = aedat31_bytes([polarity_packet([(1, 2, 1, 10, 1), (200, 2, 1, 20, 1)])])
    with pytest.raises(EventFileError, match=r"aedat3: event 1 at \(x 200, y 2\) lies outside the sensor "
                                             r"\[0, 128\) x \[0, 128\)") as err:
        read_events_bytes(bad, "big.aedat")
    assert err.value.offset == bad.index(b"#!END-HEADER\r\n") + 14 + 28 + 8
    # a packet of an undeclared source
    with pytest.raises(EventFileError, match="packet of source 3, which the header does not declare"):
        read_events_bytes(aedat31_bytes([polarity_packet([(1, 2, 1, 10, 1)], source=3)]), "src.aedat")
    # AEDAT 2: time running backwards after unwrapping (not a false 2**32 wrap)
    recs = [((5 << 8) | (7 << 1), 10), ((5 << 8) | (6 << 1), 5_000_000), ((5 << 8) | (7 << 1), 4_000_000)]
    with pytest.raises(EventFileError, match=r"aedat2: time runs backwards at event 2 \(5000000 -> 4000000"):
        read_events_bytes(aedat2_bytes(recs, "DVS128"), "back.aedat")


def test_atis_sensor_size_from_the_caller(shared_data):
    data = (shared_data / "nmnist/tonic_sample_nmnist.bin").read_bytes()
    read_events_bytes(data, "n.bin", sensor_size=(34, 34))
    bad = bytearray(data)
    bad[5 * 100] = 40  # x of record 100
    with pytest.raises(EventFileError, match=r"event 100 at \(x 40, .*outside the sensor \[0, 34\) x \[0, 34\).*"
                                             r"byte offset 500"):
        read_events_bytes(bytes(bad), "n.bin", sensor_size=(34, 34))


def aedat4_header(data: bytes) -> tuple[int, int]:
    (hsize,) = struct.unpack_from("<i", data, 14)
    return 18, hsize


@pytest.mark.parametrize("edit, message", [
    (lambda b, s: b.__setitem__(s + 0, 0xF0), "root table offset|outside the"),       # root offset out of range
    (lambda b, s: b.__setitem__(s + 4, ord("X")), "file identifier"),                 # IOHE -> XOHE
    (lambda b, s: b.__setitem__(s + 28, 9), "unknown compression code 9"),
    (lambda b, s: b.__setitem__(s + 32, 0xFF), "outside the|does not fit"),           # infoNode offset
    (lambda b, s: b.__setitem__(b.index(b"sizeX") + 2, 0xC3), "not valid UTF-8"),     # split UTF-8 sequence
    (lambda b, s: b.__setitem__(b.index(b"<attr key=\"sizeX") + 1, ord("b")), "not well-formed XML"),
    (lambda b, s: b.__setitem__(s + struct.unpack_from("<i", b, 14)[0], 7), "packet of stream 7, which the header"),
    (lambda b, s: b.__setitem__(s + struct.unpack_from("<i", b, 14)[0] + 8, 0x11), "not an LZ4 frame"),
    (lambda b, s: b.__setitem__(s + struct.unpack_from("<i", b, 14)[0] + 12, 0x42), "corrupt LZ4 frame descriptor"),
    (lambda b, s: b.__setitem__(s + struct.unpack_from("<i", b, 14)[0] + 17, 0x7F), "LZ4 block of"),
])  # fmt: skip
def test_aedat4_damaged_header_never_reaches_the_decoder(shared_data, edit, message):
    """These edits made the `aedat` decoder panic (a BaseException) or abort the process; each is now refused by
    the structure check with the byte offset."""
    data = bytearray((shared_data / "dvs/sample.aedat4").read_bytes())
    start, _ = aedat4_header(bytes(data))
    edit(data, start)
    with pytest.raises(EventFileError, match=message) as err:
        read_events_bytes(bytes(data), "s.aedat4")
    assert "aedat4" in str(err.value)


def idx_gz(shape, payload: bytes) -> bytes:
    header = struct.pack(">HBB", 0, 8, len(shape)) + struct.pack(f">{len(shape)}I", *shape)
    return gzip.compress(header + payload, compresslevel=1)


def test_idx_bombs_and_impossible_sizes_fail_fast(tmp_path):
    bomb = tmp_path / "bomb.gz"
    bomb.write_bytes(idx_gz((2**31, 28, 28), bytes(2_000_000)))
    with pytest.raises(IdxError, match=r"bomb\.gz: header declares shape \[2147483648, 28, 28\] \(1\.7 TB\), but a "
                                       r"gzip file of .* expands to at most"):
        read_idx(bomb)
    over = tmp_path / "overflow"
    over.write_bytes(struct.pack(">HBB4I", 0, 8, 4, *([2**32 - 1] * 4)) + bytes(16))
    with pytest.raises(IdxError, match="truncated: header declares shape"):  # no int64 overflow, no numpy error
        read_idx(over)
    more = tmp_path / "more.gz"
    more.write_bytes(idx_gz((3,), bytes(10)))
    with pytest.raises(IdxError, match="more data than the 3 bytes"):
        read_idx(more)
    empty = tmp_path / "empty.gz"
    empty.write_bytes(idx_gz((0, 28, 28), b""))
    with pytest.raises(IdxError, match="no data"):
        read_idx(empty)
    two = tmp_path / "two-members.gz"
    raw = struct.pack(">HBBI", 0, 8, 1, 6) + bytes(range(6))
    two.write_bytes(gzip.compress(raw[:7]) + gzip.compress(raw[7:]))
    assert read_idx(two).tolist() == list(range(6))
    with pytest.raises(IdxError, match="is a directory"):
        read_idx(tmp_path)


def test_idx_memory_estimate(tmp_path, monkeypatch):
    monkeypatch.setattr("spikedata.resources.available_memory", lambda: 1000)
    p = tmp_path / "big"
    p.write_bytes(struct.pack(">HBBI", 0, 8, 1, 5000) + bytes(5000))
    with pytest.raises(IdxError, match=r"big: shape \[5000\] \(5\.0 kB of data\) would need 10\.0 kB of memory, "
                                       r"but only 1\.0 kB is available"):
        read_idx(p)
