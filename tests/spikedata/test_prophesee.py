"""Prophesee EVT 2.0 / EVT 3.0 / DAT readers: the real sample files against a plain second decoder written here,
and files written here from the format descriptions (time-high loops, vectors, truncation, corrupt words)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from spikedata.io.event_types import EVENT_DTYPE, EventFileError
from spikedata.io.events import detect_format, read_events_bytes, read_events_with_info
from spikedata.io.prophesee import header_sensor_size, parse_header
from spikedata.io.validate import check_events


def _body(data: bytes) -> bytes:
    pos = 0
    while data[pos : pos + 1] == b"%":
        pos = data.index(b"\n", pos) + 1
    return data[pos:]


def plain_evt3(data: bytes) -> list[tuple[int, int, int, int]]:
    """A word-by-word EVT 3.0 decoder in plain Python (no shared code with the reader)."""
    words = struct.unpack(f"<{len(_body(data)) // 2}H", _body(data))
    out, y, base_x, pol, base, t, have, loops, last_high = [], 0, 0, 0, 0, 0, False, 0, None
    for w in words:
        kind, v = w >> 12, w & 0xFFF
        if kind == 0x0:
            y = v & 0x7FF
        elif kind == 0x2 and have:
            out.append((t, v & 0x7FF, y, v >> 11))
        elif kind == 0x3:
            base_x, pol = v & 0x7FF, v >> 11
        elif kind in (0x4, 0x5):
            n = 12 if kind == 0x4 else 8
            if have:
                out.extend((t, base_x + b, y, pol) for b in range(n) if v >> b & 1)
            base_x += n
        elif kind == 0x6:
            t = base + v
        elif kind == 0x8:
            if last_high is not None and last_high - v > 4000:
                loops += 1
            last_high = v
            base = (loops << 24) + (v << 12)
            t, have = base, True
    return out


def plain_evt2(data: bytes) -> list[tuple[int, int, int, int]]:
    words = struct.unpack(f"<{len(_body(data)) // 4}I", _body(data))
    out, high = [], None
    for w in words:
        kind = w >> 28
        if kind == 0x8:
            high = (w & 0x0FFFFFFF) << 6
        elif kind in (0, 1) and high is not None:
            out.append((high + (w >> 22 & 0x3F), w >> 11 & 0x7FF, w & 0x7FF, kind))
    return out


def _tuples(events: np.ndarray) -> list[tuple[int, int, int, int]]:
    return list(zip(*(events[k].tolist() for k in "txyp"), strict=True))


REAL = [
    ("dvs/prophesee_evt2_sample.raw", "evt2", 539481, (640, 480), plain_evt2),
    ("dvs/prophesee_evt3_sample.raw", "evt3", 219596, (1280, 720), plain_evt3),
]


@pytest.mark.parametrize("rel,fmt,n,size,plain", REAL, ids=[r[1] for r in REAL])
def test_real_raw_files(shared_data, rel, fmt, n, size, plain):
    path = shared_data / rel
    events, info = read_events_with_info(path)
    assert events.dtype == EVENT_DTYPE and info.format == fmt and len(events) == n == info.n_events
    assert info.sensor_size == size
    assert events["x"].max() < size[0] and events["y"].max() < size[1]
    assert np.all(np.diff(events["t"]) >= 0), "time must be monotone in this recording"
    assert set(np.unique(events["p"]).tolist()) == {0, 1}
    assert _tuples(events) == plain(path.read_bytes())


def test_evt3_sample_spans_under_12_3_ms(shared_data):
    """Its TIME_HIGH words take 3 values: the recording spans < 3 x 4096 µs; advancing the time base on a TIME_LOW
    decrease (instead of on TIME_HIGH) would report ~54 ms."""
    data = (shared_data / "dvs/prophesee_evt3_sample.raw").read_bytes()
    words = np.frombuffer(_body(data), dtype="<u2")
    highs = np.unique(words[words >> 12 == 0x8] & 0xFFF)
    assert highs.tolist() == [2861, 2862, 2863]
    events = read_events_with_info(shared_data / "dvs/prophesee_evt3_sample.raw")[0]
    assert events["t"].min() >= 2861 << 12 and events["t"].max() < 2864 << 12
    assert events["t"].max() - events["t"].min() < 12_300


def test_real_dat_file(shared_data):
    path = shared_data / "dvs/ncars_sample.dat"
    events, info = read_events_with_info(path)
    assert info.format == "dat" and info.sensor_size is None and len(events) == 2009
    data = path.read_bytes()
    body = _body(data)
    assert body[:2] == b"\x00\x08"  # event type 0 (2-D), 8 bytes
    ts, packed = np.frombuffer(body[2:], dtype="<u4").reshape(-1, 2).T
    assert events["t"].tolist() == ts.tolist()
    assert events["x"].tolist() == (packed & 0x3FFF).tolist()
    assert events["y"].tolist() == (packed >> 14 & 0x3FFF).tolist()
    assert events["p"].tolist() == (packed >> 28 & 1).tolist()
    assert np.all(np.diff(events["t"]) >= 0) and events["t"].max() < 100_000  # one 100 ms N-CARS sample
    assert events["x"].max() < 120 and events["y"].max() < 100  # inside the 120 x 100 N-CARS crop


# ----------------------------------------------------------------------------------------------- writers


def evt3_file(words: list[int], header: str = "% evt 3.0\n% format EVT3;height=720;width=1280\n% end\n") -> bytes:
    return header.encode() + struct.pack(f"<{len(words)}H", *words)


EVT2_HEADER = "% evt 2.0\n% geometry 640x480\n"


def evt2_file(words: list[int], header: str = EVT2_HEADER) -> bytes:
    return header.encode() + struct.pack(f"<{len(words)}I", *words)


def TH(v):  # noqa: N802 - the format's word names
    return 0x8000 | v


def TL(v):  # noqa: N802
    return 0x6000 | v


def Y(v):  # noqa: N802
    return 0x0000 | v


def X(v, p):  # noqa: N802
    return 0x2000 | (p << 11) | v


def BASE(v, p):  # noqa: N802
    return 0x3000 | (p << 11) | v


def test_evt3_written_from_spec():
    words = [
        Y(5), X(7, 1),  # before the first TIME_HIGH: skipped
        TH(4095), TL(10), Y(3), X(100, 1), BASE(200, 0), 0x4000 | 0b100000000101, 0x5000 | 0b10000001,
        0xA000 | 0x101,  # external trigger
        TH(0), TL(5), Y(719), X(1279, 0),  # TIME_HIGH falls back by ~the whole range: next 24-bit loop
        0xE000, 0x7000, 0xF000,
    ]
    events, info = read_events_bytes(evt3_file(words), "x.raw")
    assert detect_format(evt3_file(words)) == "evt3" and info.sensor_size == (1280, 720)
    t0 = (4095 << 12) + 10
    t1 = (1 << 24) + 5
    assert _tuples(events) == [
        (t0, 100, 3, 1), (t0, 200, 3, 0), (t0, 202, 3, 0), (t0, 211, 3, 0), (t0, 212, 3, 0), (t0, 219, 3, 0),
        (t1, 1279, 719, 0),
    ]  # fmt: skip
    assert info.skipped_by_type == {"before_first_time_high": 1, "ext_trigger": 1, "others": 1, "continued": 2}
    assert _tuples(events) == plain_evt3(evt3_file(words))


def test_evt2_written_from_spec():
    def cd(p, ts, x, y):
        return (p << 28) | (ts << 22) | (x << 11) | y

    words = [cd(1, 3, 1, 1), 0x80000000 | 1000, cd(1, 63, 639, 479), 0xA0000000, cd(0, 0, 0, 0),
             0x80000000 | 1001, cd(0, 2, 5, 6), 0xE0000000]  # fmt: skip
    events, info = read_events_bytes(evt2_file(words), "x.raw")
    assert info.sensor_size == (640, 480)
    # the event 63 µs into TIME_HIGH 1000 precedes one at its start in the file: a small step back, sorted (and said)
    assert _tuples(events) == [(1000 << 6, 0, 0, 0), ((1000 << 6) + 63, 639, 479, 1), ((1001 << 6) + 2, 5, 6, 0)]
    assert info.repairs == {"time_reordered": 2}
    assert info.skipped_by_type == {"before_first_time_high": 1, "ext_trigger": 1, "others": 1}


def test_geometry_from_header_lines():
    def size(text):
        return header_sensor_size(parse_header(text.encode())[1])

    assert size("% geometry 1280x720\n") == (1280, 720)
    assert size("% format EVT3;height=320;width=320\n") == (320, 320)
    assert size("% plugin_name hal_plugin_gen31_fx3\n% evt 2.0\n") == (640, 480)
    assert size("% plugin_name hal_plugin_imx636_evk4\n% evt 3.0\n") == (1280, 720)
    assert size("% Width 304\n% Height 240\n% Version 2\n") == (304, 240)
    assert size("% evt 3.0\n") is None


def test_errors_name_file_format_and_offset(tmp_path):
    header = "% evt 3.0\n% geometry 1280x720\n"
    start = len(header)
    cases = [
        (evt3_file([TH(1), TL(1), Y(1)], header) + b"\x01", "truncated", start + 6),
        (evt3_file([TH(1), TL(1), 0x9000], header), "type 0x9", start + 4),  # undefined word type
        (evt3_file([TH(1), TL(1), Y(1), X(5, 0), Y(720), X(5, 1)], header), r"sensor \[0, 1280\) x \[0, 720\)",
         start + 10),
        (evt3_file([TH(3), TL(100), Y(1), X(5, 0), TH(1), X(6, 0)], header), "time runs backwards", start + 10),
        (evt2_file([0x80000001, (1 << 28) | (640 << 11)]), r"sensor \[0, 640\) x \[0, 480\)",
         len(EVT2_HEADER) + 4),
    ]
    for k, (data, message, offset) in enumerate(cases):
        path = tmp_path / f"bad{k}.raw"
        path.write_bytes(data)
        with pytest.raises(EventFileError, match=message) as err:
            read_events_with_info(path)
        assert err.value.path == str(path) and err.value.offset == offset, (k, err.value)
        assert err.value.format in ("evt2", "evt3")


def test_dat_written_and_broken(tmp_path):
    head = b"% Data file containing Event2D events.\n% Version 2\n% Width 304\n% Height 240\n"
    rows = [(0, 3, 4, 1), (10, 303, 239, 0), (2**32 - 5, 1, 1, 1), (7, 2, 2, 0)]  # 32-bit time wrap
    body = b"".join(struct.pack("<II", t, x | y << 14 | p << 28) for t, x, y, p in rows)
    events, info = read_events_bytes(head + b"\x00\x08" + body, "a.dat")
    assert info.sensor_size == (304, 240) and events["t"].tolist() == [0, 10, 2**32 - 5, 2**32 + 7]
    with pytest.raises(EventFileError, match=r"dat: truncated"):
        read_events_bytes(head + b"\x00\x08" + body[:-4], "b.dat")
    with pytest.raises(EventFileError, match="type 12 of size 4"):
        read_events_bytes(head + b"\x0c\x04" + body, "c.dat")
    outside = head + b"\x00\x08" + struct.pack("<II", 5, 304)
    with pytest.raises(EventFileError, match=r"outside the sensor \[0, 304\) x \[0, 240\)") as err:
        read_events_bytes(outside, "d.dat")
    assert err.value.offset == len(head) + 2


def test_check_names_the_byte_offset_of_the_offending_word():
    ev = np.zeros(3, EVENT_DTYPE)
    ev["p"] = [0, 1, 2]
    ev["t"] = [0, 1, 2]
    with pytest.raises(EventFileError, match="polarity 2") as err:
        check_events(ev, "m.raw", "evt3", (10, 10), offsets=lambda k: 100 + k)
    assert err.value.offset == 102


def test_percent_binary_is_not_a_prophesee_header():
    """An ATIS record may start with the byte of '%' (x = 37): without a text header it is still ATIS."""
    rec = bytes([37, 2, 0x80, 0, 5]) + bytes([1, 2, 0x80, 0, 9])
    events, info = read_events_bytes(rec, "x.bin")
    assert info.format == "atis40" and events["x"].tolist() == [37, 1]
    with pytest.raises(EventFileError, match="EVT 4.0 is not supported"):
        read_events_bytes(b"% evt 4.0\n" + b"\0" * 8, "y.raw")
    with pytest.raises(EventFileError, match="evt21: the payload is 8 zero bytes"):
        read_events_bytes(b"% evt 2.1\n" + b"\0" * 8, "y.raw")
