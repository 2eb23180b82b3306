"""Event-file readers on the real sample files (SPIKEDATA_SAMPLE_DATA) and on AEDAT files written here from the spec."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from spikedata.io.event_types import EVENT_DTYPE, EventFileError
from spikedata.io.events import detect_format, read_events, read_events_bytes, read_events_with_info
from tests.writers import aedat2_bytes, aedat31_bytes, aedat31_packet, aedat31_sample

# path, format, events, (x min, max), (y min, max), (t min, max) µs, (OFF, ON) -- known properties of the samples
REAL = [
    ("nmnist/tonic_sample_nmnist.bin", "atis40", 4325, (0, 33), (0, 33), (654, 311175), (2180, 2145)),
    ("nmnist/slayer_NMNIST_1.bs2", "atis40", 4681, (0, 33), (0, 33), (893, 305924), (2353, 2328)),
    ("dvs/gesture_1.bs2", "atis40", 63471, (0, 127), (0, 127), (28, 1449996), (31307, 32164)),
    (
        "dvs/sample.aedat4", "aedat4", 111954, (0, 319), (0, 239), (1605537493718345, 1605537494308262),
        (56931, 55023),
    ),
    ("dvs/TranslatingBarY_synthesized.aedat", "aedat2", 10000, (51, 150), (79, 178), (100000, 10000000), (0, 10000)),
]  # fmt: skip


@pytest.mark.parametrize("rel,fmt,n,xr,yr,tr,pol", REAL, ids=[r[0] for r in REAL])
def test_real_files(shared_data, rel, fmt, n, xr, yr, tr, pol):
    events, info = read_events_with_info(shared_data / rel)
    assert events.dtype == EVENT_DTYPE
    assert info.format == fmt and info.n_events == n == len(events)
    assert (events["x"].min(), events["x"].max()) == xr
    assert (events["y"].min(), events["y"].max()) == yr
    assert (events["t"].min(), events["t"].max()) == tr
    assert tuple(np.bincount(events["p"], minlength=2)) == pol
    assert np.all(np.diff(events["t"]) >= 0), "time must be monotone in these recordings"


def test_atis_matches_bytes(shared_data):
    """First record of the N-MNIST sample decoded by hand from its 5 bytes."""
    raw = (shared_data / "nmnist/tonic_sample_nmnist.bin").read_bytes()[:5]
    e = read_events(shared_data / "nmnist/tonic_sample_nmnist.bin")[0]
    assert (e["x"], e["y"], e["p"]) == (raw[0], raw[1], raw[2] >> 7)
    assert e["t"] == ((raw[2] & 0x7F) << 16) | (raw[3] << 8) | raw[4]


def test_aedat4_sample_details(shared_data):
    """111,954 polarity events (+475 IMU samples skipped). tonic's test figure 118,651 is what its AEDAT-2
    parser reads when applied to this AEDAT-4 file (8-byte records from offset 14), not a count of events."""
    events, info = read_events_with_info(shared_data / "dvs/sample.aedat4")
    assert info.sensor_size == (320, 240)
    assert info.skipped_by_type == {"imus": 475} and info.skipped_records == 475
    size = (shared_data / "dvs/sample.aedat4").stat().st_size
    assert (size - 14) // 8 != len(events)


def test_aedat2_header_only(shared_data):
    events, info = read_events_with_info(shared_data / "dvs/sample_aedat_header.aedat")
    assert len(events) == 0 and events.dtype == EVENT_DTYPE
    assert info.format == "aedat2" and info.chip == "Davis346red" and info.address_layout == "davis"
    assert info.sensor_size == (346, 260)


def test_aedat2_translating_bar(shared_data):
    """saveaerdat.m file without an AEChip line: DAVIS layout inferred; one bar row per time stamp, moving in y."""
    events, info = read_events_with_info(shared_data / "dvs/TranslatingBarY_synthesized.aedat")
    assert info.address_layout == "davis" and info.sensor_size is None and info.skipped_records == 0
    stamps = np.unique(events["t"])
    assert len(stamps) == 100
    for k, t in enumerate(stamps[:5]):
        rows = events[events["t"] == t]
        assert set(rows["y"].tolist()) == {178 - k}
        assert sorted(rows["x"].tolist()) == list(range(51, 151))


TRUNCATE = [
    ("nmnist/tonic_sample_nmnist.bin", "atis40", 21625 - 3, 21620),
    ("dvs/gesture_1.bs2", "atis40", 1002, 1000),
    ("dvs/TranslatingBarY_synthesized.aedat", "aedat2", 185 + 8 * 100 + 5, 185 + 8 * 100),
    ("dvs/TranslatingBarY_synthesized.aedat", "aedat2", 100, 68),
    ("dvs/sample_aedat_header.aedat", "aedat2", 300, None),
    ("dvs/sample.aedat4", "aedat4", 500000, None),
    ("dvs/sample.aedat4", "aedat4", 945243, 945243),
    ("dvs/sample.aedat4", "aedat4", 1000, 18),
]


@pytest.mark.parametrize("rel,fmt,cut,offset", TRUNCATE, ids=[f"{r[0]}@{r[2]}" for r in TRUNCATE])
def test_truncated_copies_fail_clearly(shared_data, tmp_path, rel, fmt, cut, offset):
    path = tmp_path / ("cut_" + rel.replace("/", "_"))
    path.write_bytes((shared_data / rel).read_bytes()[:cut])
    with pytest.raises(EventFileError, match="truncated") as err:
        read_events(path)
    assert err.value.path == str(path) and str(path) in str(err.value)
    assert err.value.format == fmt and fmt in str(err.value)
    assert err.value.offset is not None and "byte offset" in str(err.value)
    if offset is not None:
        assert err.value.offset == offset
    assert err.value.offset <= cut


def test_empty_and_foreign_files(tmp_path, shared_data):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(EventFileError, match=r"empty\.bin: unknown: empty file.*byte offset 0"):
        read_events(empty)
    gz = tmp_path / "x.bin"
    gz.write_bytes(gzip.compress(b"hello" * 100))
    with pytest.raises(EventFileError, match="looks like gzip"):
        read_events(gz)
    text = tmp_path / "notes.bin"
    text.write_bytes(b"time,x,y,p\n" * 50)
    with pytest.raises(EventFileError, match=r"atis40: not a recognised event file.*byte offset \d+") as err:
        read_events(text)
    assert err.value.offset % 5 == 0
    with pytest.raises(FileNotFoundError):
        read_events(tmp_path / "missing.bin")
    assert detect_format(b"#!AER-DAT4.0\r\n") == "aedat4"
    assert detect_format(b"# a jAER 1.0 header\n") == "aedat2"


def test_atis_overflow_marker():
    """A y == 240 record adds 2**13 µs to itself and every later record and is skipped."""
    def rec(x, y, p, t):
        return bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF])

    data = rec(1, 2, 1, 8000) + rec(0, 240, 0, 0) + rec(3, 4, 0, 10)
    events, info = read_events_bytes(data, "mem.bin")
    assert events["t"].tolist() == [8000, 10 + 8192] and events["p"].tolist() == [1, 0]
    assert info.skipped_by_type == {"overflow_marker": 1}


# ---------------------------------------------------------------------------------------- AEDAT 2.0 writers




def test_aedat2_dvs128_layout():
    # raw polarity bit 0 = ON in jAER's DVS128 extractor; bit 15 = sync event
    recs = [((5 << 8) | (7 << 1) | 0, 10), ((127 << 8) | (0 << 1) | 1, 20), (0x8000, 25), ((1 << 8) | (127 << 1), 30)]
    events, info = read_events_bytes(aedat2_bytes(recs, "DVS128"), "dvs.aedat")
    assert info.address_layout == "dvs128" and info.sensor_size == (128, 128)
    assert events["x"].tolist() == [7, 0, 127] and events["y"].tolist() == [5, 127, 1]
    assert events["p"].tolist() == [1, 0, 1] and events["t"].tolist() == [10, 20, 30]
    assert info.skipped_by_type == {"special": 1}


def test_aedat2_davis_skips_aps_imu_special_and_unwraps_time():
    def dvs(x, y, p):
        return (y << 22) | (x << 12) | (p << 11)

    recs = [
        (dvs(345, 259, 1), 0xFFFFFF00),
        (0x80000000 | (3 << 22) | (4 << 12) | 0x3FF, 0xFFFFFF10),  # APS sample (reset read)
        (0x80000C00 | (1 << 12), 0xFFFFFF20),  # IMU sample
        (0x400, 0xFFFFFF30),  # external input (special)
        (dvs(0, 0, 0), 0x00000010),  # after the 32-bit counter wrapped
    ]
    events, info = read_events_bytes(aedat2_bytes(recs, "Davis346red"), "davis.aedat")
    assert info.address_layout == "davis" and info.sensor_size == (346, 260)
    assert events["x"].tolist() == [345, 0] and events["y"].tolist() == [259, 0] and events["p"].tolist() == [1, 0]
    assert events["t"].tolist() == [0xFFFFFF00, (1 << 32) + 0x10]
    assert info.skipped_by_type == {"aps": 1, "imu": 1, "special": 1} and info.skipped_records == 3


# ---------------------------------------------------------------------------------------- AEDAT 3.1 writer












def test_aedat31_written_from_spec(tmp_path):
    data, expect = aedat31_sample()
    path = tmp_path / "rec.aedat"
    path.write_bytes(data)
    events, info = read_events_with_info(path)
    assert info.format == "aedat3" and info.sensor_size == (128, 128) and info.chip == "DVS128"
    got = list(zip(events["x"].tolist(), events["y"].tolist(), events["p"].tolist(), events["t"].tolist(), strict=True))
    assert got == expect
    assert info.skipped_by_type == {"invalid": 1, "imu6": 4, "special": 2} and info.skipped_records == 7


def test_aedat31_truncated_and_bad(tmp_path):
    data, _ = aedat31_sample()
    start = data.index(b"#!END-HEADER\r\n") + 14
    second_packet = start + 28 + 50 * 8
    for cut, offset in [(start + 10, start), (start + 28 + 17, start), (second_packet + 30, second_packet)]:
        path = tmp_path / f"cut{cut}.aedat"
        path.write_bytes(data[:cut])
        with pytest.raises(EventFileError, match="aedat3: truncated") as err:
            read_events(path)
        assert err.value.offset == offset and str(path) in str(err.value)
    path = tmp_path / "nohdr.aedat"
    path.write_bytes(data[: start - 14])
    with pytest.raises(EventFileError, match="END-HEADER"):
        read_events(path)
    compressed = aedat31_bytes([aedat31_packet(-32767, 1, 8, 4, 0, b"", 0)])
    with pytest.raises(EventFileError, match="compressed"):
        read_events_bytes(compressed, "c.aedat")
    only_header = aedat31_bytes([])
    events, info = read_events_bytes(only_header, "h.aedat")
    assert len(events) == 0 and info.sensor_size == (128, 128)
