"""cAER AEDAT 3.1 files: a text header, then packets of typed events (all integers little-endian).

Header: lines ``#...\\r\\n`` from ``#!AER-DAT3.1`` to ``#!END-HEADER``; ``#Source <id>: <name>`` names the device
of each source id (the sensor size is taken from it), ``#Format: RAW`` says packets are not compressed.

Packet = 28-byte header + `eventNumber` * `eventSize` bytes of events::

    int16 eventType   (0 special, 1 polarity, 2 frame, 3 IMU6, 4 IMU9, 5 sample, 6 ear, 7 config, 8-10 points,
                       11 spike; the top bit set means a compressed packet, which this reader does not support)
    int16 eventSource, int32 eventSize, int32 eventTSOffset, int32 eventTSOverflow,
    int32 eventCapacity, int32 eventNumber, int32 eventValid

Polarity event (8 bytes): uint32 data (bit 0 valid, bit 1 polarity 1 = ON, bits 2-16 y, bits 17-31 x) and int32
timestamp; the full timestamp is ``timestamp + eventTSOverflow * 2**31`` µs. Invalid polarity events and events of
every other type are skipped and counted.

Checks besides the framing: the first line must be exactly ``#!AER-DAT3.1``, every header line must be a ``#``
line, ``#Format`` (when present) must be RAW, every packet's source must be declared by a ``#Source`` line, its
eventValid <= eventNumber <= eventCapacity and eventTSOverflow >= 0, every valid polarity event's time stamp
>= 0 (libcaer's are positive 32-bit µs); then the events go through
`spikedata.io.validate` (coordinates inside the source's sensor, monotone time within 1 ms, no zero-filled runs).
"""

from __future__ import annotations

import os
import re

import numpy as np

from spikedata.io.chips import chip_sensor_size
from spikedata.io.event_types import EVENT_DTYPE, EventFileError, EventFileInfo, skipped_info
from spikedata.io.validate import check_events, check_magic, check_sensor_size

FORMAT = "aedat3"
PACKET_HEADER = np.dtype(
    [
        ("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"), ("ts_overflow", "<i4"),
        ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4"),
    ]
)  # fmt: skip
POLARITY_EVENT = np.dtype([("data", "<u4"), ("t", "<i4")])
TYPE_NAMES = {
    0: "special", 1: "polarity", 2: "frame", 3: "imu6", 4: "imu9", 5: "sample", 6: "ear", 7: "config",
    8: "point1d", 9: "point2d", 10: "point3d", 11: "spike",
}  # fmt: skip
END_HEADER = b"#!END-HEADER\r\n"
MAGIC = b"#!AER-DAT3.1\r\n"
_SOURCE = re.compile(r"^#-?Source (\d+): *(.+)$")


def parse_header(data: bytes, path: str | os.PathLike) -> tuple[int, list[str]]:
    """(offset of the first packet, header lines) of an AEDAT 3.x file."""
    check_magic(data, MAGIC, path, FORMAT)
    end = data.find(END_HEADER)
    if end < 0:
        raise EventFileError(path, FORMAT, len(data), "truncated header: no '#!END-HEADER' line")
    text = data[:end].decode("utf-8", errors="replace")
    lines = []
    pos = 0
    for line in text.split("\r\n"):
        if line and not line.startswith("#"):
            raise EventFileError(path, FORMAT, pos, f"damaged header: line {line[:40]!r} does not start with '#'")
        if line:
            lines.append(line)
        pos += len(line.encode("utf-8", errors="replace")) + 2
    for line in lines:
        if line.lower().startswith("#format:") and line.split(":", 1)[1].strip().upper() != "RAW":
            raise EventFileError(path, FORMAT, 0, f"{line!r}: only uncompressed (RAW) AEDAT 3.1 files are read")
    return end + len(END_HEADER), lines


def read_aedat3(data: bytes, path: str | os.PathLike = "<bytes>",
                sensor_size: tuple[int, int] | None = None) -> tuple[np.ndarray, EventFileInfo]:
    """Polarity events of an AEDAT 3.1 file's bytes (all sources, file order) and its info; `sensor_size` bounds
    the coordinates when the source names no known chip."""
    pos, lines = parse_header(data, path)
    sources = {}
    for line in lines:
        m = _SOURCE.match(line)
        if m:
            sources[int(m.group(1))] = m.group(2).strip()
    chunks: list[np.ndarray] = []
    offsets: list[np.ndarray] = []
    skipped: dict[str, int] = {}
    polarity_sources: set[int] = set()
    n = len(data)
    while pos < n:
        if n - pos < PACKET_HEADER.itemsize:
            raise EventFileError(
                path, FORMAT, pos, f"truncated: {n - pos} byte(s) where a 28-byte packet header should be"
            )
        h = np.frombuffer(data, dtype=PACKET_HEADER, count=1, offset=pos)[0]
        etype, size, number = int(h["type"]), int(h["size"]), int(h["number"])
        if etype < 0 or etype & 0x8000:
            raise EventFileError(path, FORMAT, pos, "compressed packet (type has the top bit set): not supported")
        if size <= 0 or number < 0 or not 0 <= int(h["ts_offset"]) <= size - 4:
            raise EventFileError(
                path, FORMAT, pos, f"corrupt packet header (eventSize {size}, eventNumber {number}, "
                f"eventTSOffset {int(h['ts_offset'])})",
            )
        source, capacity, valid_n = int(h["source"]), int(h["capacity"]), int(h["valid"])
        if not 0 <= valid_n <= number <= capacity or int(h["ts_overflow"]) < 0:
            raise EventFileError(
                path, FORMAT, pos, f"corrupt packet header (eventNumber {number}, eventValid {valid_n}, "
                f"eventCapacity {capacity}, eventTSOverflow {int(h['ts_overflow'])})",
            )
        if source not in sources:
            raise EventFileError(path, FORMAT, pos, f"packet of source {source}, which the header does not declare "
                                 f"(declared: {sorted(sources)})")
        body = pos + PACKET_HEADER.itemsize
        nbytes = size * number
        if body + nbytes > n:
            raise EventFileError(
                path, FORMAT, pos, f"truncated: packet declares {number} events of {size} bytes "
                f"({nbytes} bytes) but only {n - body} remain",
            )
        if etype == 1:
            if size != POLARITY_EVENT.itemsize:
                raise EventFileError(path, FORMAT, pos, f"polarity packet with eventSize {size}, expected 8")
            ev = np.frombuffer(data, dtype=POLARITY_EVENT, count=number, offset=body)
            valid = (ev["data"] & 1).astype(bool)
            skipped["invalid"] = skipped.get("invalid", 0) + int(number - valid.sum())
            negative = np.flatnonzero(valid & (ev["t"] < 0))
            if negative.size:  # libcaer's time stamps are positive 32-bit µs; a negative one is damage
                k = int(negative[0])
                raise EventFileError(path, FORMAT, body + 8 * k, f"polarity event {k} of the packet at byte {pos} "
                                     f"has the negative time stamp {int(ev['t'][k])} µs (AEDAT 3.1 time stamps are "
                                     "positive 32-bit µs)")
            d = ev["data"][valid]
            out = np.empty(d.shape[0], dtype=EVENT_DTYPE)
            out["t"] = ev["t"][valid].astype(np.int64) + (int(h["ts_overflow"]) << 31)
            out["x"] = (d >> 17) & 0x7FFF
            out["y"] = (d >> 2) & 0x7FFF
            out["p"] = (d >> 1) & 1
            chunks.append(out)
            offsets.append(body + 8 * np.flatnonzero(valid))
            polarity_sources.add(source)
        else:
            name = TYPE_NAMES.get(etype, f"type{etype}")
            skipped[name] = skipped.get(name, 0) + number
        pos = body + nbytes
    events = np.concatenate(chunks) if chunks else np.empty(0, dtype=EVENT_DTYPE)
    chip = None
    if len(polarity_sources) == 1:
        chip = sources.get(next(iter(polarity_sources)))
    elif not polarity_sources and len(sources) == 1:
        chip = next(iter(sources.values()))
    stated = chip_sensor_size(chip)
    bound = stated or (check_sensor_size(sensor_size, path, FORMAT) if sensor_size is not None else None)
    where = np.concatenate(offsets) if offsets else None
    events, repairs = check_events(events, path, FORMAT, bound, offsets=where)
    total, by_type = skipped_info(skipped)
    header = {f"source {k}": v for k, v in sources.items()}
    info = EventFileInfo(
        str(path), FORMAT, int(events.shape[0]), stated, total, by_type, chip, None, header, repairs
    )
    return events, info
