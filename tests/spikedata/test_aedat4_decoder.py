"""Our AEDAT 4 decoder (LZ4 via liblz4, zstd via zstandard, flatbuffers walked in numba) against independent
decoders: the `aedat` package on the real sample, faery-written LZ4 / zstd files of the real events, read back by
dv-processing where installed (test-only peers)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from spikedata.io.aedat4 import check_structure
from spikedata.io.event_types import EventFileError
from spikedata.io.events import read_events, read_events_with_info


def test_real_sample_against_aedat_package(shared_data):
    aedat = pytest.importorskip("aedat", reason="aedat (reference decoder) not installed")
    path = shared_data / "dvs/sample.aedat4"
    events, info = read_events_with_info(path)
    packets = list(aedat.Decoder(str(path)))
    ref = np.concatenate([p["events"] for p in packets if "events" in p])
    assert len(events) == len(ref) == 111_954
    for ours, theirs in (("t", "t"), ("x", "x"), ("y", "y"), ("p", "on")):
        assert np.array_equal(events[ours], ref[theirs].astype(events[ours].dtype)), ours
    assert info.skipped_by_type == {"imus": sum(len(p["imus"]) for p in packets if "imus" in p)} == {"imus": 475}


@pytest.fixture(scope="module")
def sample_events(shared_data):
    return read_events(shared_data / "dvs/sample.aedat4")


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_faery_written_files(sample_events, tmp_path, codec):
    faery = pytest.importorskip("faery", reason="faery (test-only writer) not installed")
    src = np.zeros(len(sample_events), faery.EVENTS_DTYPE)
    for ours, theirs in (("t", "t"), ("x", "x"), ("y", "y"), ("p", "on")):
        src[theirs] = sample_events[ours]
    path = tmp_path / f"{codec}.aedat4"
    faery.events_stream_from_array(src, (320, 240)).to_file(str(path), zero_t0=False, compression=(codec, 1))
    events, info = read_events_with_info(path)
    assert check_structure(path.read_bytes(), path).compression == codec
    assert np.array_equal(events, sample_events) and info.sensor_size == (320, 240)
    try:
        import dv_processing as dv
    except ImportError:
        return
    rec = dv.io.MonoCameraRecording(str(path))
    parts = []
    while (batch := rec.getNextEventBatch()) is not None:
        parts.append(batch.numpy())
    theirs = np.concatenate(parts)
    assert np.array_equal(theirs["timestamp"], events["t"]) and np.array_equal(theirs["x"], events["x"])
    assert np.array_equal(theirs["polarity"].astype(np.int8), events["p"])


def test_damaged_lz4_packet_names_its_offset(shared_data, tmp_path):
    data = bytearray((shared_data / "dvs/sample.aedat4").read_bytes())
    structure = check_structure(bytes(data), "x")
    stream, start, end = next(p for p in structure.packets if structure.streams[p[0]].type_id == "EVTS")
    # the first block's compressed bytes (after the 7-byte frame descriptor and the 4-byte block size): zeroed
    data[start + 11 : end - 8] = bytes(end - 8 - start - 11)
    path = tmp_path / "bad.aedat4"
    path.write_bytes(bytes(data))
    with pytest.raises(EventFileError, match=rf"aedat4: packet at byte {start - 8}: ") as err:
        read_events(path)
    assert err.value.offset == start - 8
    assert struct.unpack_from("<i", data, start - 8)[0] == stream


def test_corrupt_flatbuffer_is_an_error_not_a_crash(shared_data, tmp_path):
    """The `aedat` package this reader used before panicked on such input; our walk checks every offset: an event
    packet (a valid LZ4 frame of one stored block) whose flatbuffer's root offset points outside it."""
    data = bytearray((shared_data / "dvs/sample.aedat4").read_bytes())
    structure = check_structure(bytes(data), "x")
    _, start, end = next(p for p in structure.packets if structure.streams[p[0]].type_id == "EVTS")
    body = struct.pack("<II", end - start - 19, 0x7FFFFFF0) + bytes(end - start - 23)  # size prefix, root offset
    frame = bytes.fromhex("04224d18") + bytes([0x60, 0x70, 0x73]) + struct.pack("<I", 0x80000000 | len(body))
    data[start:end] = frame + body + bytes(4)
    path = tmp_path / "bad.aedat4"
    path.write_bytes(bytes(data))
    with pytest.raises(EventFileError, match=rf"packet at byte {start - 8}: corrupt flatbuffer"):
        read_events(path)
