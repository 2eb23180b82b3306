"""Text and CSV event files: the layouts evlib and faery write (written by them where installed, test-only peers)
and the ones written here (header in any column order, no header, units), read back against the real EVT 2.0
sample's events; errors name the file, the line and its byte offset."""

from __future__ import annotations

import numpy as np
import pytest

from spikedata.io.event_types import EventFileError
from spikedata.io.events import detect_format, read_events, read_events_bytes, read_events_with_info


@pytest.fixture(scope="module")
def real(shared_data) -> np.ndarray:
    """The first 20,000 events of the real EVT 2.0 sample, time from 0 (µs)."""
    ev = read_events(shared_data / "dvs/prophesee_evt2_sample.raw")[:20_000].copy()
    ev["t"] -= ev["t"][0]
    return ev


def _text(rows, fmt: str, header: str = "", sep: str = " ") -> bytes:
    lines = [header] if header else []
    lines += [sep.join(f % v for f, v in zip(fmt.split(), row, strict=True)) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def test_evlib_text_file(real, tmp_path):
    evlib = pytest.importorskip("evlib", reason="evlib (test-only peer) not installed")
    path = tmp_path / "events.txt"
    pol = np.where(real["p"] == 1, 1, -1)
    evlib.save_events_to_text(real["x"].astype(np.int64), real["y"].astype(np.int64), real["t"] / 1e6, pol, str(path))
    assert path.read_bytes().startswith(b"# timestamp x y polarity\n")
    events, info = read_events_with_info(path)
    assert info.format == "text" and info.header["time_unit"] == "s" and np.array_equal(events, real)
    theirs = evlib.load_events(str(path), sort=False).collect()
    t = theirs["t"].dt.total_microseconds().to_numpy()
    # evlib truncates seconds x 1e6 in floating point (0.000249 s -> 248 µs); ours converts the decimal digits
    assert np.all((events["t"] - t >= 0) & (events["t"] - t <= 1)) and np.any(events["t"] != t)
    assert np.array_equal(theirs["x"].to_numpy(), events["x"]) and np.array_equal(theirs["y"].to_numpy(), events["y"])


def test_faery_csv_file(real, tmp_path):
    faery = pytest.importorskip("faery", reason="faery (test-only peer) not installed")
    src = np.zeros(len(real), faery.EVENTS_DTYPE)
    src["t"], src["x"], src["y"], src["on"] = real["t"], real["x"], real["y"], real["p"]
    path = tmp_path / "events.csv"
    faery.events_stream_from_array(src, (640, 480)).to_file(str(path), zero_t0=False)
    assert path.read_bytes().startswith(b"t,x@640,y@480,on\r\n")  # faery ends lines with CR LF
    events, info = read_events_with_info(path)
    assert info.sensor_size == (640, 480) and info.header["time_unit"] == "µs" and np.array_equal(events, real)
    theirs = faery.events_stream_from_file(str(path)).to_array()
    assert np.array_equal(theirs["t"].astype(np.int64), events["t"]) and np.array_equal(theirs["x"], events["x"])


@pytest.mark.parametrize("header,order,sep", [
    ("x,y,p,t", "xypt", ","), ("", "txyp", ","), ("t x y p", "txyp", " "), ("", "txyp", "\t"),
    ("timestamp,x,y,polarity,extra", "txyp_", ","), ("% y x t_us pol", "yxtp", " "),
])  # fmt: skip
def test_written_layouts(real, header, order, sep):
    rows = [tuple({"t": e["t"], "x": e["x"], "y": e["y"], "p": e["p"], "_": 7}[k] for k in order) for e in real[:3000]]
    data = _text(rows, " ".join("%d" for _ in order), header, sep)
    assert detect_format(data) == "text"
    events, info = read_events_bytes(data, "mem.csv")
    assert np.array_equal(events, real[:3000]) and info.header["time_unit"] == "µs"


def test_seconds_units_and_crlf():
    data = b"t,x,y,p\r\n0,1,2,1\r\n0.000001,3,4,0\r\n1.5e-3,5,6,-1\r\n\r\n# a comment\r\n2.0000005,7,8,1\r\n"
    events, info = read_events_bytes(data, "s.csv")
    assert info.header["time_unit"] == "s"
    assert events["t"].tolist() == [0, 1, 1500, 2000001] and events["p"].tolist() == [1, 0, 0, 1]  # half rounds up
    ms, info = read_events_bytes(b"t [ms],x,y,p\n1.25,0,0,1\n3,1,1,0\n", "ms.csv")
    assert ms["t"].tolist() == [1250, 3000] and info.header["time_unit"] == "ms"


def test_text_is_not_aedat_1_and_foreign_text_is_refused(tmp_path):
    assert detect_format(b"# timestamp x y polarity\n0.1 1 2 1\n") == "text"
    assert detect_format(b"# a jAER 1.0 header\n" + bytes(range(128, 160))) == "aedat2"
    path = tmp_path / "notes.bin"
    path.write_bytes(b"time,x,y,p\n" * 50)  # a header and no data: neither text events nor ATIS
    with pytest.raises(EventFileError, match="atis40: not a recognised event file"):
        read_events(path)


@pytest.mark.parametrize("body,message,line", [
    (b"0,1,2,1\n5,1,2\n", "too few columns", 3),
    (b"0,1,2,1\n5,1,x,1\n", "expected a number", 3),
    (b"0,1,2,1\n5,1,2,2\n", "polarity other than 1, 0 or -1", 3),
    (b"0,1,2,1\n5,1.5,2,1\n", "not an integer", 3),
    (b"0,1,2,1\n" * 1001 + b"5.5,1,2,1\n", "decimal time stamp in a file whose time stamps are integer", 1003),
    (b"0,1,2,1\n5,1,2,1,9\n", "more columns", 3),
    (b"0,1,2,1\n5,1,99999,1\n", "out of range", 3),
])  # fmt: skip
def test_errors_name_line_and_offset(tmp_path, body, message, line):
    path = tmp_path / "bad.csv"
    data = b"t,x,y,p\n" + body
    path.write_bytes(data)
    with pytest.raises(EventFileError, match=rf"text: line {line}: .*{message}") as err:
        read_events(path)
    assert err.value.offset == data.index(b"\n5") + 1 and str(path) in str(err.value)


def test_checks_apply(tmp_path):
    with pytest.raises(EventFileError, match="time runs backwards"):
        read_events_bytes(b"t,x,y,p\n5000,1,1,1\n1,1,1,1\n", "b.csv")
    with pytest.raises(EventFileError, match=r"outside the sensor \[0, 4\) x \[0, 4\)"):
        read_events_bytes(b"t,x@4,y@4,on\n1,4,1,1\n", "c.csv")
    with pytest.raises(EventFileError, match="names no p column"):
        read_events_bytes(b"t,x,y,q\n1,2,3,1\n", "d.csv")
