"""Reader defects found by seeded mutants, each through the public entry points (`read_events` / `read_idx` and the
`spikedata encode` command a user would meet it in): a flipped dimension byte of a gzipped IDX file, a negative
AEDAT 3.1 time stamp, an AEDAT 2.0 body that decodes to no event."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from typer.testing import CliRunner

from spikedata.cli import app as spikedata_app
from spikedata.io.event_types import EventFileError
from spikedata.io.events import read_events
from spikedata.io.idx import IdxError, read_idx
from spikedata.resources import format_bytes

runner = CliRunner()


def aedat2_file(records: list[tuple[int, int]], chip: str) -> bytes:
    """AEDAT 2.0: header lines, then big-endian (uint32 address, uint32 µs) records."""
    head = f"#!AER-DAT2.0\r\n# AEChip: ch.unizh.ini.jaer.chip.retina.{chip}\r\n".encode()
    return head + b"".join(struct.pack(">II", a, t) for a, t in records)


def aedat31_file(packets: list[list[tuple[int, int, int, int, int]]]) -> bytes:
    """AEDAT 3.1 of polarity packets (source 1, a DVS128): events (x, y, p, t, valid), 8 bytes each."""
    out = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n"
    for events in packets:
        n = len(events)
        out += struct.pack("<hhiiiiii", 1, 1, 8, 4, 0, n, n, n)
        out += b"".join(struct.pack("<Ii", x << 17 | y << 2 | p << 1 | v, t) for x, y, p, t, v in events)
    return out


def _one_line(result, *needles: str) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if not line.startswith("note:")]  # first-run numba note
    text = "\n".join(lines).strip()
    assert text.startswith("error:") and "Traceback" not in text and len(text.splitlines()) <= 3, text
    for needle in needles:
        assert needle in " ".join(text.split()), (needle, text)
    return text


# ------------------------------------------------------------------------------------------------ IDX


def _idx_with_flipped_ndim(n: int = 50) -> bytes:
    images = (np.arange(n * 28 * 28) % 251).astype(np.uint8)
    raw = bytearray(struct.pack(">HBBIII", 0, 8, 3, n, 28, 28) + images.tobytes())
    raw[3] ^= 0x80  # 3 -> 131 dimensions: the image bytes become dimension sizes, a product of ~10^500
    return gzip.compress(bytes(raw))


def test_format_bytes_of_a_corrupt_product_does_not_overflow():
    assert format_bytes(1500) == "1.5 kB" and format_bytes(2 * 10**15) == "2.0 PB"
    assert format_bytes(10**400 * 7) == "about 10^400 bytes"


def test_idx_flipped_dimension_byte_is_a_clean_error(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(_idx_with_flipped_ndim())
    shape = r"\[50, 28, 28, 66051, \.\.\. \(131 dimensions\)\]"
    size = r"\(about 10\^\d+ bytes\)"
    with pytest.raises(IdxError, match=rf"t10k-images-idx3-ubyte\.gz: header declares shape {shape} {size}"):
        read_idx(path)


def test_idx_flipped_dimension_byte_through_the_cli(shared_data, tmp_path):
    src = tmp_path / "mnist"
    src.mkdir()
    (src / "t10k-images-idx3-ubyte.gz").write_bytes(_idx_with_flipped_ndim())
    (src / "t10k-labels-idx1-ubyte.gz").write_bytes((shared_data / "mnist/t10k-labels-idx1-ubyte.gz").read_bytes())
    args = ["encode", "mnist", "--source", str(src), "--out", str(tmp_path / "m.zarr"), "--split", "test",
            "--quiet", "--no-verify"]  # fmt: skip
    _one_line(runner.invoke(spikedata_app, args), "t10k-images-idx3-ubyte.gz", "header declares shape")
    assert not (tmp_path / "m.zarr").exists()


# ------------------------------------------------------------------------------------------------ AEDAT 3.1


def _aedat31_negative_time() -> tuple[bytes, int]:
    good = [(5, 6, 1, 100 + i, 1) for i in range(10)]
    bad = [(5, 6, 1, 200, 1), (7, 8, 0, -5, 1)]
    data = aedat31_file([good, bad])
    second = data.index(b"#!END-HEADER\r\n") + 14 + 28 + 10 * 8
    return data, second + 28 + 8  # the second event of the second packet


def test_aedat31_negative_time_stamp_is_refused(tmp_path):
    data, where = _aedat31_negative_time()
    path = tmp_path / "neg.aedat"
    path.write_bytes(data)
    with pytest.raises(EventFileError, match=r"negative time stamp -5 µs") as err:
        read_events(path)
    assert err.value.offset == where and err.value.format == "aedat3" and str(path) in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_aedat31_invalid_event_with_negative_time_is_only_skipped():
    """An event whose valid bit is clear is skipped (and counted) whatever its time stamp holds."""
    data = aedat31_file([[(1, 2, 1, 10, 1), (3, 4, 0, -1, 0), (5, 6, 0, 20, 1)]])
    from spikedata.io.events import read_events_bytes

    events, info = read_events_bytes(data, "ok.aedat")
    assert events["t"].tolist() == [10, 20] and info.skipped_by_type == {"invalid": 1}


# ------------------------------------------------------------------------------------------------ AEDAT 2.0


def test_aedat2_body_of_ff_bytes_is_refused(tmp_path):
    head = aedat2_file([], "Davis346red")
    path = tmp_path / "ff.aedat"
    path.write_bytes(head + b"\xff" * 8 * 500)
    with pytest.raises(EventFileError, match=r"none of its 500 records is a polarity event \(imu 500; davis") as e:
        read_events(path)
    assert e.value.offset == len(head) and e.value.format == "aedat2"


def test_aedat2_only_special_records_is_refused_and_header_only_is_empty(tmp_path):
    data = aedat2_file([(0x8000, 10 + i) for i in range(20)], "DVS128")
    path = tmp_path / "sync.aedat"
    path.write_bytes(data)
    with pytest.raises(EventFileError, match=r"none of its 20 records is a polarity event \(special 20; dvs128"):
        read_events(path)
    path.write_bytes(aedat2_file([], "DVS128"))
    assert len(read_events(path)) == 0  # no records at all: an empty recording, as before


def test_aedat_defects_through_the_cli(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    good = aedat2_file([((5 << 8) | (7 << 1), 1000 + 10 * i) for i in range(50)], "DVS128")
    (src / "a" / "ok.aedat").write_bytes(good)
    (src / "b" / "ff.aedat").write_bytes(aedat2_file([], "DVS128") + b"\xff" * 800)
    out = tmp_path / "s.zarr"
    args = ["encode", "events", "--source", str(src), "--out", str(out), "--quiet", "--steps", "10"]
    _one_line(runner.invoke(spikedata_app, args), "ff.aedat", "aedat2", "none of its 100 records is a polarity event")
    assert not out.exists()
    (src / "b" / "ff.aedat").write_bytes(_aedat31_negative_time()[0])
    _one_line(runner.invoke(spikedata_app, args), "ff.aedat", "aedat3", "negative time stamp -5")
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ SHD (.h5.gz)


def test_gzip_without_hdf5_names_the_given_file(tmp_path):
    """Found by the fuzz suite's foreign-file mutants: a gzipped IDX file in place of shd_train.h5.gz was reported
    under the name of the hidden temporary copy it was decompressed into."""
    from spikedata.datasets.shared.heidelberg import probe_heidelberg
    from spikedata.errors import SpikedataError

    path = tmp_path / "shd_train.h5.gz"
    path.write_bytes(_idx_with_flipped_ndim())
    with pytest.raises(SpikedataError, match=r"shd_train\.h5\.gz: the gzip does not hold an HDF5 file") as err:
        probe_heidelberg(path)
    assert ".unpacked-" not in str(err.value)
