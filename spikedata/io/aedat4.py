"""DV AEDAT 4.0 files, decoded by the `aedat` package (Rust; LZ4 / zstd packets, flatbuffers).

Layout: ``#!AER-DAT4.0\\r\\n``, int32 header size, an `IOHeader` flatbuffer (compression, dataTablePosition,
the stream description as XML), then packets ``int32 stream id, int32 size, size bytes``, then (written when the
recording was closed) a data table at `dataTablePosition`. Before decoding, this module walks the packet
headers itself so that a truncated file is reported with the byte offset of the packet that is cut off (the
`aedat` package itself reports only 'failed to fill whole buffer').

Events of the lowest-numbered event stream are returned (as tonic does); its width and height give the sensor
size. IMU samples, triggers, frames and events of other event streams are skipped and counted.
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import numpy as np

from spikedata.io.events import EVENT_DTYPE, EventFileError, EventFileInfo, skipped_info

FORMAT = "aedat4"
MAGIC = b"#!AER-DAT4.0\r\n"


def io_header_data_table_position(header: bytes) -> int:
    """`dataTablePosition` (field 1, int64, default -1) of the IOHeader flatbuffer `header`."""
    (root,) = struct.unpack_from("<I", header, 0)
    (vt_back,) = struct.unpack_from("<i", header, root)
    vtable = root - vt_back
    (vt_size,) = struct.unpack_from("<H", header, vtable)
    slot = 4 + 2 * 1
    if slot + 2 > vt_size:
        return -1
    (off,) = struct.unpack_from("<H", header, vtable + slot)
    if off == 0:
        return -1
    return struct.unpack_from("<q", header, root + off)[0]


def check_structure(data: bytes, path: str | os.PathLike) -> None:
    """Raise EventFileError (with the byte offset) when the file's header or packet framing is cut off."""
    n = len(data)
    if not data.startswith(MAGIC):
        raise EventFileError(path, FORMAT, 0, "missing '#!AER-DAT4.0' line")
    if n < len(MAGIC) + 4:
        raise EventFileError(path, FORMAT, len(MAGIC), "truncated: no header size")
    (hsize,) = struct.unpack_from("<i", data, len(MAGIC))
    start = len(MAGIC) + 4
    if hsize <= 0 or start + hsize > n:
        raise EventFileError(path, FORMAT, start, f"truncated or corrupt header: {hsize} bytes declared, "
                             f"{n - start} present")  # fmt: skip
    try:
        table = io_header_data_table_position(data[start : start + hsize])
    except struct.error:
        raise EventFileError(path, FORMAT, start, "corrupt IOHeader flatbuffer") from None
    end = n if table < 0 else min(table, n)
    pos = start + hsize
    while pos < end:
        if end - pos < 8:
            raise EventFileError(path, FORMAT, pos, f"truncated: {end - pos} byte(s) where a packet header should be")
        _, size = struct.unpack_from("<ii", data, pos)
        if size < 0 or pos + 8 + size > end:
            raise EventFileError(
                path, FORMAT, pos, f"truncated: packet declares {size} bytes but only {end - pos - 8} remain"
            )
        pos += 8 + size
    if table >= n:
        raise EventFileError(
            path, FORMAT, n, f"truncated: the file ends before its data table (which the header puts at byte {table})"
        )


def read_aedat4(data: bytes, path: str | os.PathLike = "<bytes>") -> tuple[np.ndarray, EventFileInfo]:
    """Polarity events of an AEDAT 4.0 file's bytes (lowest event stream) and its info."""
    import aedat

    check_structure(data, path)
    p = Path(str(path))
    if p.is_file() and p.stat().st_size == len(data):
        return _decode(aedat, str(p), path)
    # the decoder reads only from a path: hand it the bytes through a temporary file
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / "events.aedat4"
        tmp_path.write_bytes(data)
        return _decode(aedat, str(tmp_path), path)


def _decode(aedat, file: str, path: str | os.PathLike) -> tuple[np.ndarray, EventFileInfo]:
    try:
        decoder = aedat.Decoder(file)
        streams = decoder.id_to_stream()
        event_ids = sorted(i for i, s in streams.items() if s.get("type") == "events")
        target = event_ids[0] if event_ids else None
        chunks = []
        skipped: dict[str, int] = {}
        for packet in decoder:
            for key, value in packet.items():
                if key == "stream_id":
                    continue
                if key == "events" and packet["stream_id"] == target:
                    chunks.append(value)
                else:
                    name = key if key != "events" else f"events_stream_{packet['stream_id']}"
                    skipped[name] = skipped.get(name, 0) + (len(value) if key != "frame" else 1)
    except (RuntimeError, OSError, ValueError) as exc:
        raise EventFileError(path, FORMAT, None, f"the aedat decoder failed: {exc}") from exc
    raw = np.concatenate(chunks) if chunks else None
    n = 0 if raw is None else raw.shape[0]
    events = np.empty(n, dtype=EVENT_DTYPE)
    if raw is not None:
        events["t"] = raw["t"].astype(np.int64)
        events["x"] = raw["x"]
        events["y"] = raw["y"]
        events["p"] = raw["on"]
    size = None
    if target is not None and "width" in streams[target]:
        size = (int(streams[target]["width"]), int(streams[target]["height"]))
    total, by_type = skipped_info(skipped)
    header = {f"stream {i}": str(s.get("type")) for i, s in streams.items()}
    info = EventFileInfo(str(path), FORMAT, n, size, total, by_type, None, None, header)
    return events, info
