"""DV AEDAT 4.0 files (LZ4 / zstd packets of flatbuffers), decoded here in one pass into the event array
(`spikedata.io.aedat4_packets`).

Layout: ``#!AER-DAT4.0\\r\\n``, int32 header size, an `IOHeader` flatbuffer (file identifier ``IOHE``; fields
compression (int32 enum), dataTablePosition (int64, -1 = none), infoNode (string: the stream description as
XML)), then packets ``int32 stream id, int32 size, size bytes`` (each a compressed flatbuffer), then (written when
the recording was closed) a data table at `dataTablePosition`.

Nothing is decoded before `check_structure` has verified the framing (the `aedat` package, which this module
used before, trusted its input: a damaged IOHeader or a description that is not UTF-8 made it panic or abort the
process):

* the magic line exactly; the header size; the IOHeader flatbuffer: root offset, file identifier, vtable and every
  field inside the buffer, the compression code known, the infoNode string inside the buffer and NUL-terminated;
* the description: strict UTF-8, well-formed XML (``<dv>`` / ``outInfo`` / one node per stream with an integer
  name and a ``typeIdentifier``; event streams with integer ``sizeX``/``sizeY`` that are a plausible sensor);
* every packet: a declared stream id, a size inside the file (up to the data table), and its compression framing
  (LZ4 frame or zstd frame headers and block headers walked without decompressing) from which the largest size it
  can decompress to follows.

The packets are then decoded with every offset checked (a damaged packet is an `EventFileError` naming its byte
offset), into an event array sized beforehand (its memory checked). Decoded events then go through
`spikedata.io.validate` (coordinates inside the stream's sizeX x sizeY, monotone time within 1 ms, no repeated
runs). Events of the lowest-numbered event stream are returned (as tonic does); IMU samples, triggers, frames and
events of other event streams are skipped and counted.
"""

from __future__ import annotations

import os
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from spikedata.io import aedat4_packets as P
from spikedata.io.event_types import EVENT_DTYPE, EventFileError, EventFileInfo, skipped_info
from spikedata.io.validate import check_events, check_magic, check_sensor_size
from spikedata.resources import ResourceError, require_memory

FORMAT = "aedat4"
MAGIC = b"#!AER-DAT4.0\r\n"
FILE_IDENTIFIER = b"IOHE"
#: IOHeader `compression` codes (dv-processing CompressionType).
COMPRESSION = {0: "none", 1: "lz4", 2: "lz4_high", 3: "zstd", 4: "zstd_high"}
#: Stream type identifiers of the DV formats.
TYPE_IDS = {"EVTS": "events", "FRME": "frame", "IMUS": "imus", "TRIG": "triggers", "BBOX": "boxes", "POSE": "pose"}

_LZ4_MAGIC = 0x184D2204
_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_BLOCK_MAX = 128 * 1024


@dataclass(frozen=True)
class Stream:
    """One stream of the description: id, type identifier (EVTS, IMUS, ...), sensor size of an event stream."""

    id: int
    type_id: str
    size: tuple[int, int] | None


@dataclass(frozen=True)
class Structure:
    """What `check_structure` established: compression, streams by id, data table position, and the largest
    number of bytes the packets can decompress to."""

    compression: str
    streams: dict[int, Stream]
    data_table: int
    max_decompressed: int
    #: (stream id, first byte, end) of every packet's compressed payload, in file order
    packets: tuple[tuple[int, int, int], ...] = ()
    #: the largest size one packet can decompress to
    max_packet: int = 0


# ---------------------------------------------------------------------------------------------- IOHeader


def _u(fmt: str, buf: bytes, pos: int, where: str, path, base: int) -> int:
    size = struct.calcsize(fmt)
    if pos < 0 or pos + size > len(buf):
        raise EventFileError(path, FORMAT, base + max(pos, 0), f"corrupt IOHeader flatbuffer: {where} at offset {pos} "
                             f"lies outside the {len(buf)}-byte header")
    return struct.unpack_from(fmt, buf, pos)[0]


def parse_io_header(buf: bytes, path: str | os.PathLike = "<bytes>", base: int = 0) -> tuple[int, int, str]:
    """(compression code, dataTablePosition, infoNode text) of an IOHeader flatbuffer, every offset checked.

    `base` is the header's offset in the file (for messages). Raises EventFileError on anything out of bounds.
    """
    root = _u("<I", buf, 0, "root table offset", path, base)
    if buf[4:8] != FILE_IDENTIFIER:
        raise EventFileError(path, FORMAT, base + 4, f"IOHeader file identifier {bytes(buf[4:8])!r}, expected "
                             f"{FILE_IDENTIFIER!r}")
    if root % 4 or root < 8:
        raise EventFileError(path, FORMAT, base, f"corrupt IOHeader flatbuffer: root table offset {root}")
    vtable = root - _u("<i", buf, root, "vtable offset", path, base)
    vt_size = _u("<H", buf, vtable, "vtable", path, base)
    table_size = _u("<H", buf, vtable + 2, "vtable", path, base)
    if vt_size < 4 or vt_size % 2 or vtable + vt_size > len(buf) or table_size < 4 or root + table_size > len(buf):
        raise EventFileError(path, FORMAT, base + vtable, f"corrupt IOHeader flatbuffer: vtable of {vt_size} bytes "
                             f"for a table of {table_size} bytes")

    def field(index: int, size: int) -> int | None:
        slot = 4 + 2 * index
        if slot + 2 > vt_size:
            return None
        off = _u("<H", buf, vtable + slot, "vtable slot", path, base)
        if off == 0:
            return None
        if off + size > table_size:
            raise EventFileError(path, FORMAT, base + root, f"corrupt IOHeader flatbuffer: field {index} at "
                                 f"{off} outside its {table_size}-byte table")
        return root + off

    pos = field(0, 4)
    compression = 0 if pos is None else _u("<i", buf, pos, "compression", path, base)
    if compression not in COMPRESSION:
        raise EventFileError(path, FORMAT, base + (pos or 0), f"unknown compression code {compression} (known: "
                             f"{sorted(COMPRESSION)})")
    pos = field(1, 8)
    table = -1 if pos is None else _u("<q", buf, pos, "dataTablePosition", path, base)
    pos = field(2, 4)
    if pos is None:
        raise EventFileError(path, FORMAT, base, "the IOHeader has no stream description (infoNode)")
    start = pos + _u("<I", buf, pos, "infoNode offset", path, base)
    length = _u("<I", buf, start, "infoNode length", path, base)
    if start + 4 + length + 1 > len(buf) or buf[start + 4 + length] != 0:
        raise EventFileError(path, FORMAT, base + start, f"corrupt IOHeader flatbuffer: the {length}-byte stream "
                             "description does not fit the header or lacks its terminating NUL")
    raw = bytes(buf[start + 4 : start + 4 + length])
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise EventFileError(path, FORMAT, base + start + 4 + exc.start, "the stream description is not valid UTF-8 "
                             "(damaged header)") from None
    if "\x00" in text:
        raise EventFileError(path, FORMAT, base + start + 4 + text.index("\x00"), "NUL byte inside the stream "
                             "description (damaged header)")
    return compression, table, text


def io_header_data_table_position(header: bytes) -> int:
    """`dataTablePosition` (field 1, int64, default -1) of the IOHeader flatbuffer `header`."""
    return parse_io_header(header)[1]


def parse_streams(text: str, path: str | os.PathLike = "<bytes>", offset: int | None = None) -> dict[int, Stream]:
    """Streams of the XML stream description, by id; EventFileError when it is not the DV layout."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise EventFileError(path, FORMAT, offset, f"the stream description is not well-formed XML ({exc})") from None
    if root.tag != "dv":
        raise EventFileError(path, FORMAT, offset, f"the stream description's root element is <{root.tag}>, not <dv>")
    out_info = [n for n in root.findall("node") if n.get("name") == "outInfo"]
    if len(out_info) != 1:
        raise EventFileError(path, FORMAT, offset, "the stream description has no (single) 'outInfo' node")
    streams: dict[int, Stream] = {}
    for node in out_info[0].findall("node"):
        name = node.get("name", "")
        if not name.isdigit() or int(name) > 0x7FFFFFFF:
            raise EventFileError(path, FORMAT, offset, f"stream node name {name!r} is not a stream id")
        attrs = {a.get("key"): (a.get("type"), a.text or "") for a in node.findall("attr")}
        type_id = attrs.get("typeIdentifier", (None, ""))[1]
        if not type_id:
            raise EventFileError(path, FORMAT, offset, f"stream {name} has no typeIdentifier")
        size = None
        if type_id == "EVTS":
            info = {a.get("key"): a.text or "" for n in node.findall("node") if n.get("name") == "info"
                    for a in n.findall("attr")}
            try:
                size = check_sensor_size((int(info["sizeX"]), int(info["sizeY"])), path, FORMAT, offset)
            except (KeyError, ValueError):
                raise EventFileError(path, FORMAT, offset, f"event stream {name} lacks integer sizeX / sizeY "
                                     "attributes") from None
        streams[int(name)] = Stream(int(name), type_id, size)
    if not streams:
        raise EventFileError(path, FORMAT, offset, "the stream description declares no stream")
    return streams


# ---------------------------------------------------------------------------------------------- packets


def _lz4_bound(data: bytes, pos: int, end: int, path, packet: int) -> int:
    """Largest decompressed size of the LZ4 frame(s) in data[pos:end] (frame and block headers walked)."""
    total = 0
    while pos < end:
        if end - pos < 7 or struct.unpack_from("<I", data, pos)[0] != _LZ4_MAGIC:
            raise EventFileError(path, FORMAT, pos, f"packet at byte {packet}: not an LZ4 frame")
        flg, bd = data[pos + 4], data[pos + 5]
        if flg >> 6 != 1 or flg & 0x02 or bd & 0x8F or not 4 <= (bd >> 4) & 7 <= 7:
            raise EventFileError(path, FORMAT, pos, f"packet at byte {packet}: corrupt LZ4 frame descriptor")
        block_max = 1 << (8 + 2 * ((bd >> 4) & 7))
        pos += 6 + (8 if flg & 0x08 else 0) + (4 if flg & 0x01 else 0) + 1
        block_checksum, content_checksum = bool(flg & 0x10), bool(flg & 0x04)
        while True:
            if pos + 4 > end:
                raise EventFileError(path, FORMAT, pos, f"packet at byte {packet}: LZ4 frame cut off")
            size = struct.unpack_from("<I", data, pos)[0]
            pos += 4
            if size == 0:
                break
            n = size & 0x7FFFFFFF
            if n > block_max or pos + n > end:
                raise EventFileError(path, FORMAT, pos - 4, f"packet at byte {packet}: LZ4 block of {n} bytes "
                                     f"(maximum {block_max}, {end - pos} left)")
            pos += n + (4 if block_checksum else 0)
            total += block_max
        pos += 4 if content_checksum else 0
    if pos != end:
        raise EventFileError(path, FORMAT, end, f"packet at byte {packet}: LZ4 frame runs past the packet")
    return total


def _zstd_bound(data: bytes, pos: int, end: int, path, packet: int) -> int:
    """Largest decompressed size of the zstd frame(s) in data[pos:end] (frame and block headers walked)."""
    total = 0
    while pos < end:
        if end - pos < 6 or struct.unpack_from("<I", data, pos)[0] != _ZSTD_MAGIC:
            raise EventFileError(path, FORMAT, pos, f"packet at byte {packet}: not a zstd frame")
        fhd = data[pos + 4]
        if fhd & 0x08:
            raise EventFileError(path, FORMAT, pos + 4, f"packet at byte {packet}: corrupt zstd frame header")
        single = bool(fhd & 0x20)
        fcs_size = {0: 1 if single else 0, 1: 2, 2: 4, 3: 8}[fhd >> 6]
        pos += 5 + (0 if single else 1) + {0: 0, 1: 1, 2: 2, 3: 4}[fhd & 3] + fcs_size
        while True:
            if pos + 3 > end:
                raise EventFileError(path, FORMAT, pos, f"packet at byte {packet}: zstd frame cut off")
            head = int.from_bytes(data[pos : pos + 3], "little")
            pos += 3
            last, kind, size = head & 1, (head >> 1) & 3, head >> 3
            if kind == 3 or size > _ZSTD_BLOCK_MAX:
                raise EventFileError(path, FORMAT, pos - 3, f"packet at byte {packet}: corrupt zstd block header")
            stored = 1 if kind == 1 else size
            if pos + stored > end:
                raise EventFileError(path, FORMAT, pos, f"packet at byte {packet}: zstd block cut off")
            pos += stored
            total += size if kind in (0, 1) else _ZSTD_BLOCK_MAX
            if last:
                break
        pos += 4 if fhd & 0x04 else 0
    if pos != end:
        raise EventFileError(path, FORMAT, end, f"packet at byte {packet}: zstd frame runs past the packet")
    return total


def check_structure(data: bytes, path: str | os.PathLike) -> Structure:
    """Verify everything the decoder trusts (see the module docstring); EventFileError with the byte offset."""
    n = len(data)
    check_magic(data, MAGIC, path, FORMAT)
    if n < len(MAGIC) + 4:
        raise EventFileError(path, FORMAT, len(MAGIC), "truncated: no header size")
    (hsize,) = struct.unpack_from("<i", data, len(MAGIC))
    start = len(MAGIC) + 4
    if hsize <= 0 or start + hsize > n:
        raise EventFileError(path, FORMAT, start, f"truncated or corrupt header: {hsize} bytes declared, "
                             f"{n - start} present")  # fmt: skip
    code, table, text = parse_io_header(data[start : start + hsize], path, start)
    streams = parse_streams(text, path, start)
    body = start + hsize
    if table >= 0 and table < body:
        raise EventFileError(path, FORMAT, start, f"corrupt header: data table position {table} lies inside the "
                             "header")
    end = n if table < 0 else min(table, n)
    pos = body
    bound = biggest = 0
    packets: list[tuple[int, int, int]] = []
    compression = COMPRESSION[code]
    while pos < end:
        if end - pos < 8:
            raise EventFileError(path, FORMAT, pos, f"truncated: {end - pos} byte(s) where a packet header should be")
        stream_id, size = struct.unpack_from("<ii", data, pos)
        if size < 0 or pos + 8 + size > end:
            raise EventFileError(
                path, FORMAT, pos, f"truncated: packet declares {size} bytes but only {end - pos - 8} remain"
            )
        if stream_id not in streams:
            raise EventFileError(path, FORMAT, pos, f"packet of stream {stream_id}, which the header does not "
                                 f"declare (streams: {sorted(streams)})")
        if compression.startswith("lz4"):
            one = _lz4_bound(data, pos + 8, pos + 8 + size, path, pos)
        elif compression.startswith("zstd"):
            one = _zstd_bound(data, pos + 8, pos + 8 + size, path, pos)
        else:
            one = size
        bound += one
        biggest = max(biggest, one)
        packets.append((stream_id, pos + 8, pos + 8 + size))
        pos += 8 + size
    if table >= n:
        raise EventFileError(
            path, FORMAT, n, f"truncated: the file ends before its data table (which the header puts at byte {table})"
        )
    return Structure(compression, streams, table, bound, tuple(packets), biggest)


def read_aedat4(data: bytes, path: str | os.PathLike = "<bytes>",
                sensor_size: tuple[int, int] | None = None) -> tuple[np.ndarray, EventFileInfo]:
    """Polarity events of an AEDAT 4.0 file's bytes (lowest event stream) and its info. The stream's sizeX x
    sizeY bounds the coordinates (`sensor_size` is accepted for a uniform reader interface and not needed)."""
    structure = check_structure(data, path)
    ids = np.array([p[0] for p in structure.packets], np.int64)
    starts = np.array([p[1] for p in structure.packets], np.int64)
    ends = np.array([p[2] for p in structure.packets], np.int64)
    src = np.frombuffer(data, np.uint8)
    scratch = np.empty(max(structure.max_packet, P.HEAD_BYTES), np.uint8)
    event_ids = sorted(i for i, s in structure.streams.items() if s.type_id == "EVTS")
    target = event_ids[0] if event_ids else None
    mine = ids == target
    counts = np.zeros(len(ids), np.int64)
    counts[~mine] = _counts(src, starts[~mine], ends[~mine], scratch, structure.compression, path)
    upper = _zstd_upper(data, starts[mine], ends[mine]) if structure.compression.startswith("zstd") else None
    if upper is None:
        counts[mine] = _counts(src, starts[mine], ends[mine], scratch, structure.compression, path)
    n = int(counts[mine].sum()) if upper is None else upper
    try:
        require_memory(n * EVENT_DTYPE.itemsize + scratch.nbytes, f"{path}: {n} events")
    except ResourceError as exc:
        raise EventFileError(path, FORMAT, None, str(exc)) from None
    events = np.empty(n, dtype=EVENT_DTYPE)
    got = _events(src, starts[mine], ends[mine], scratch, structure.compression, events, path)
    if got != n and upper is None:
        raise EventFileError(path, FORMAT, None, f"the event packets hold {got} events, their first bytes "
                             f"declared {n} (damaged packets)")
    n = got
    events = events[:n] if 4 * n >= 3 * len(events) else events[:n].copy()
    skipped: dict[str, int] = {}
    for sid, stream in structure.streams.items():
        if sid == target:
            continue
        kind = TYPE_IDS.get(stream.type_id, stream.type_id.lower())
        if kind == "events":
            kind = f"events_stream_{sid}"
        total = int(np.count_nonzero(ids == sid)) if kind == "frame" else int(counts[ids == sid].sum())
        if total:
            skipped[kind] = total
    size = structure.streams[target].size if target is not None else None
    events, repairs = check_events(events, path, FORMAT, size)
    total, by_type = skipped_info(skipped)
    header = {f"stream {i}": TYPE_IDS.get(s.type_id, s.type_id) for i, s in structure.streams.items()}
    return events, EventFileInfo(str(path), FORMAT, n, size, total, by_type, None, None, header, repairs)


def _fail(path, starts, packet: int, err: int):
    raise EventFileError(path, FORMAT, int(starts[packet]) - 8, f"packet at byte {int(starts[packet]) - 8}: "
                         f"{P.ERRORS.get(int(err), 'corrupt packet')}")


def _zstd_packets(src, starts, ends, limit: int | None):
    """Decompressed packets (zstd: one at a time, `limit` bytes each when given) as uint8 arrays."""
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    for a, b in zip(starts, ends, strict=True):
        try:
            if limit is None:
                out = dctx.decompressobj().decompress(memoryview(src[a:b]))
            else:
                out = dctx.stream_reader(memoryview(src[a:b])).read(limit)
        except zstandard.ZstdError as exc:
            yield None, str(exc)
            continue
        yield np.frombuffer(out, np.uint8), None


def _counts(src, starts, ends, scratch, compression: str, path) -> np.ndarray:
    """Element count of every packet (from its first decompressed bytes)."""
    if compression.startswith("lz4"):
        counts, bad, err = P.count_lz4(src, starts, ends, scratch)
        if bad >= 0:
            _fail(path, starts, bad, err)
        return counts
    counts = np.zeros(len(starts), np.int64)
    packets = _zstd_packets(src, starts, ends, P.HEAD_BYTES) if compression.startswith("zstd") else \
        ((src[a:b], None) for a, b in zip(starts, ends, strict=True))
    for k, (buf, problem) in enumerate(packets):
        if problem is not None:
            raise EventFileError(path, FORMAT, int(starts[k]) - 8, f"packet at byte {int(starts[k]) - 8}: {problem}")
        first, c = P.element_vector(buf, len(buf))
        if first < 0 and c:
            _fail(path, starts, k, c)
        counts[k] = c if first >= 0 else 0
    return counts


def _events(src, starts, ends, scratch, compression: str, events, path) -> int:
    """Copy the events of every event packet into `events` (sized by `_counts` or `_zstd_upper`); how many."""
    if compression.startswith("lz4"):
        got, bad, err = P.decode_lz4(src, starts, ends, scratch, events)
        if bad >= 0:
            _fail(path, starts, bad, err)
    else:
        got = 0
        packets = _zstd_packets(src, starts, ends, None) if compression.startswith("zstd") else \
            ((src[a:b], None) for a, b in zip(starts, ends, strict=True))
        for k, (buf, problem) in enumerate(packets):
            if problem is not None:
                raise EventFileError(path, FORMAT, int(starts[k]) - 8, f"packet at byte {int(starts[k]) - 8}: "
                                     f"{problem}")
            first, c = P.element_vector(buf, len(buf))
            if first < 0:
                if c:
                    _fail(path, starts, k, c)
                continue
            err = P.copy_events(buf, len(buf), first, c, events, got)
            if err:
                _fail(path, starts, k, err)
            got += c
    return got


def _zstd_upper(data, starts, ends) -> int | None:
    """At most how many events the zstd packets hold, from the content size their frame headers state (16 bytes
    an event; the flatbuffer's few bytes around them make it an upper bound by one or two events a packet), so
    zstd packets are decompressed once; None when a frame states no size."""
    import zstandard

    total = 0
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        try:
            size = zstandard.frame_content_size(data[a : min(b, a + 18)])
        except zstandard.ZstdError:
            return None
        if size < 0:
            return None
        total += size // 16
    return total
