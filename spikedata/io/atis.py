"""The 40-bit ATIS event layout of N-MNIST and N-Caltech101 (`.bin`) and of 128 x 128 recordings in `.bs2` files.

No header; every event is 5 bytes:

    byte 0: x (uint8)    byte 1: y (uint8)
    byte 2: bit 7 = polarity (1 = ON), bits 6..0 = timestamp bits 22..16
    bytes 3, 4: timestamp bits 15..8 and 7..0 (µs)

A record with y == 240 is not an event but a timestamp-overflow marker: it and every later record get 2**13 µs
added to their timestamp (the convention of the dataset authors' reader, which tonic follows too). Markers are
skipped and counted. Real recordings have non-decreasing timestamps; a file that does not is rejected, which is
also how a foreign file without a known header is told apart from ATIS data.
"""

from __future__ import annotations

import os

import numpy as np

from spikedata.io.events import EVENT_DTYPE, EventFileError, EventFileInfo, skipped_info

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


def read_atis(data: bytes, path: str | os.PathLike = "<bytes>") -> tuple[np.ndarray, EventFileInfo]:
    """Events of an ATIS 40-bit file's bytes and its info (sensor size is not stored in this layout)."""
    n = len(data) // RECORD_BYTES
    raw = np.frombuffer(data, dtype=np.uint8, count=n * RECORD_BYTES).reshape(n, RECORD_BYTES)
    t, x, y, p, is_event = decode_atis(raw)
    if not is_event.all():
        keep = np.flatnonzero(is_event)
        t, x, y, p = t[keep], x[keep], y[keep], p[keep]
    else:
        keep = None
    dec = np.flatnonzero(t[1:] < t[:-1])
    if dec.size:
        record = int(dec[0] + 1 if keep is None else keep[dec[0] + 1])
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
    total, by_type = skipped_info({"overflow_marker": n - t.shape[0]})
    info = EventFileInfo(str(path), FORMAT, int(t.shape[0]), None, total, by_type)
    return events, info
