"""The 40-bit ATIS event layout of N-MNIST and N-Caltech101 (`.bin`) and of 128 x 128 recordings in `.bs2` files.

No header; every event is 5 bytes:

    byte 0: x (uint8)    byte 1: y (uint8)
    byte 2: bit 7 = polarity (1 = ON), bits 6..0 = timestamp bits 22..16
    bytes 3, 4: timestamp bits 15..8 and 7..0 (µs)

A record with y == 240 is not an event but a timestamp-overflow marker: it and every later record get 2**13 µs
added to their timestamp (the convention of the dataset authors' reader, which tonic follows too). Markers are
skipped and counted. Real recordings have non-decreasing timestamps; a file whose time runs backwards by more
than the tolerance of `spikedata.io.validate` is rejected, which is also how a foreign file without a known
header is told apart from ATIS data. The layout states no sensor size: coordinates are checked against the
`sensor_size` the caller passes (the encoder's, e.g. 34 x 34 for N-MNIST), else only y < 240.
"""

from __future__ import annotations

import os

import numpy as np

from spikedata.io.event_types import EVENT_DTYPE, EventFileError, EventFileInfo, skipped_info
from spikedata.io.validate import TIME_TOLERANCE_US, check_events, check_payload, check_sensor_size

FORMAT = "atis40"
RECORD_BYTES = 5
OVERFLOW_Y = 240
OVERFLOW_US = 1 << 13


def decode_atis(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(t µs int64, x, y, p, is_event) of uint8 records [n, 5]; overflow markers already applied to `t`."""
    x = raw[:, 0]
    y = raw[:, 1]
    b2 = raw[:, 2]
    t = ((b2 & 0x7F).astype(np.int64) << 16) | (raw[:, 3].astype(np.int64) << 8) | raw[:, 4]
    overflow = y == OVERFLOW_Y
    if overflow.any():
        t += np.cumsum(overflow, dtype=np.int64) * OVERFLOW_US
    return t, x, y, (b2 >> 7), ~overflow


def read_atis(data: bytes, path: str | os.PathLike = "<bytes>",
              sensor_size: tuple[int, int] | None = None) -> tuple[np.ndarray, EventFileInfo]:
    """Events of an ATIS 40-bit file's bytes and its info; `sensor_size` (width, height) bounds x and y (the
    layout does not store it)."""
    check_payload(data, 0, path, FORMAT)
    n = len(data) // RECORD_BYTES
    raw = np.frombuffer(data, dtype=np.uint8, count=n * RECORD_BYTES).reshape(n, RECORD_BYTES)
    t, x, y, p, is_event = decode_atis(raw)
    if not is_event.all():
        keep = np.flatnonzero(is_event)
        t, x, y, p = t[keep], x[keep], y[keep], p[keep]
    else:
        keep = np.arange(n)
    dec = np.flatnonzero(t[1:] < t[:-1] - TIME_TOLERANCE_US)
    if dec.size:
        record = int(keep[dec[0] + 1])
        raise EventFileError(
            path,
            FORMAT,
            record * RECORD_BYTES,
            f"not a recognised event file: it has no AEDAT header, and read as ATIS 40-bit records the timestamp "
            f"decreases at record {record} ({int(t[dec[0]])} -> {int(t[dec[0] + 1])} µs)",
        )
    tail = len(data) - n * RECORD_BYTES
    if tail:
        raise EventFileError(
            path, FORMAT, n * RECORD_BYTES, f"truncated: the last {tail} byte(s) do not form a 5-byte event record"
        )
    events = np.empty(t.shape[0], dtype=EVENT_DTYPE)
    events["t"] = t
    events["x"] = x
    events["y"] = y
    events["p"] = p
    size = check_sensor_size(sensor_size, path, FORMAT) if sensor_size is not None else (256, OVERFLOW_Y)
    events, repairs = check_events(events, path, FORMAT, size, offsets=keep * RECORD_BYTES)
    total, by_type = skipped_info({"overflow_marker": n - t.shape[0]})
    info = EventFileInfo(str(path), FORMAT, int(t.shape[0]), None, total, by_type, repairs=repairs)
    return events, info
