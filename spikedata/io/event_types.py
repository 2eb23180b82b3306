"""The one event type of `spikedata` and what every event-file reader shares: `EVENT_DTYPE` (t µs, x, y, p),
`make_events`, the error a reader raises (`EventFileError`, naming file, format and byte offset) and what it learnt
about a file besides its events (`EventFileInfo`).

Every reader module (`spikedata.io.atis`, `aedat2`, `aedat3`, `aedat4`, `prophesee`) imports these; the dispatcher
`spikedata.io.events` sits above the readers and imports them only when it dispatches to one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from spikedata.errors import SpikedataError

#: The one event type of `spikedata`: time in µs, pixel coordinates from 0, polarity 1 = ON, 0 = OFF.
EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])


class EventFileError(SpikedataError, ValueError):
    """An event file cannot be read: message names the file, the format tried and the byte offset."""

    def __init__(self, path: str | os.PathLike, fmt: str, offset: int | None, message: str):
        self.path = str(path)
        self.format = fmt
        self.offset = offset
        where = f"byte offset {offset}" if offset is not None else "byte offset unknown"
        super().__init__(f"{self.path}: {fmt}: {message} ({where})")


@dataclass(frozen=True)
class EventFileInfo:
    """What a reader learnt about a file besides its events.

    `sensor_size` is (width, height) in pixels where the file states it (AEDAT chip / source name or stream
    size), else None. `skipped_records` counts records that are not polarity events (APS frame samples, IMU
    samples, special/trigger events, invalid events, timestamp-overflow markers); `skipped_by_type` breaks it down.
    """

    path: str
    format: str
    n_events: int
    sensor_size: tuple[int, int] | None = None
    skipped_records: int = 0
    skipped_by_type: dict[str, int] = field(default_factory=dict)
    chip: str | None = None
    address_layout: str | None = None
    header: dict[str, str] = field(default_factory=dict)
    repairs: dict[str, int] = field(default_factory=dict)


def make_events(t, x, y, p) -> np.ndarray:
    """Structured event array [n] (`EVENT_DTYPE`) from four equally long 1-d arrays."""
    t = np.asarray(t)
    out = np.empty(t.shape[0], dtype=EVENT_DTYPE)
    out["t"] = t
    out["x"] = x
    out["y"] = y
    out["p"] = p
    return out


def skipped_info(counts: dict[str, int]) -> tuple[int, dict[str, int]]:
    """(total, non-zero counts) of skipped records by type."""
    nonzero = {k: int(v) for k, v in counts.items() if v}
    return sum(nonzero.values()), nonzero
