"""Events given as four separate columns (time, x, y, polarity), as containers that are not event-camera formats
store them: MATLAB variables (`spikedata.io.mat_events`), the fields of a numpy structured array
(`spikedata.io.npy_events`).

`events_from_columns` turns them into `EVENT_DTYPE` events and refuses what it cannot vouch for: times must be
whole µs (an integer type, or floats with whole values: MATLAB stores numbers as double by default) and not
negative, coordinates whole pixels in [0, 32767], polarity 0 / 1 (bool included) or -1 / +1 (read as 0 / 1: both
conventions are common). Then the checks of every event reader (`spikedata.io.validate.check_events`: coordinates
inside the sensor when one is given, time monotone within 1 ms, no long runs of identical events). Every problem is
an `EventFileError` naming the file and the event.
"""

from __future__ import annotations

import os

import numpy as np

from spikedata.io.event_types import EventFileError, make_events
from spikedata.io.validate import check_events

__all__ = ["events_from_columns"]

_MAX_COORDINATE = 32767  # int16 coordinates


def _whole(values: np.ndarray, name: str, path: str | os.PathLike, fmt: str) -> np.ndarray:
    """`values` as int64 when every one is a whole number; EventFileError naming the first that is not."""
    values = np.asarray(values)
    if values.dtype.kind in "iub":
        return values.astype(np.int64)
    if values.dtype.kind != "f":
        raise EventFileError(path, fmt, None, f"{name} is of type {values.dtype}, expected numbers")
    bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)) | (np.abs(values) > 2.0**62))
    if len(bad):
        raise EventFileError(path, fmt, None, f"event {int(bad[0])}: {name} {values[bad[0]]!r} is not a whole number "
                             "in range")
    return values.astype(np.int64)


def events_from_columns(t, x, y, p, path: str | os.PathLike, fmt: str,
                        sensor_size: tuple[int, int] | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """(events `EVENT_DTYPE` [n] in the given order, repairs of `check_events`) from four equally long 1-d columns:
    time µs, x, y (pixels), polarity. `sensor_size` (width, height) bounds the coordinates."""
    t, x, y, p = (_whole(v, name, path, fmt) for v, name in ((t, "time"), (x, "x"), (y, "y"), (p, "polarity")))
    lengths = {len(t), len(x), len(y), len(p)}
    if len(lengths) > 1:
        raise EventFileError(path, fmt, None, f"the columns have different lengths (t {len(t)}, x {len(x)}, y "
                             f"{len(y)}, p {len(p)})")
    if len(p) and int(p.min()) == -1:  # -1 / +1 polarity: OFF / ON
        odd = np.flatnonzero((p != -1) & (p != 1))
        if len(odd):
            i = int(odd[0])
            raise EventFileError(path, fmt, None, f"event {i}: polarity {int(p[i])} (must be 0 / 1 or -1 / +1)")
        p = (p > 0).astype(np.int64)
    for name, v, top in (("x", x, _MAX_COORDINATE), ("y", y, _MAX_COORDINATE), ("polarity", p, 1)):
        bad = np.flatnonzero((v < 0) | (v > top))
        if len(bad):
            raise EventFileError(path, fmt, None, f"event {int(bad[0])}: {name} {int(v[bad[0]])} out of range "
                                 f"[0, {top}]")
    if len(t) and int(t.min()) < 0:
        i = int(np.argmin(t))
        raise EventFileError(path, fmt, None, f"event {i}: negative time {int(t[i])} µs")
    return check_events(make_events(t, x, y, p), path, fmt, sensor_size)
