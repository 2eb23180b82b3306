"""Plausibility checks that every event reader runs before it returns anything: a reader refuses what it cannot
vouch for instead of handing garbage to an encoder.

What is checked (each failure is an `EventFileError` naming the file, the format and, where known, the byte
offset):

* **magic / version**: the exact bytes a format starts with (`check_magic`);
* **payload**: a payload made only of zero bytes (a zero-filled file or a file whose data never reached the disk)
  is refused (`check_payload`); an empty file is refused by the format detection already;
* **sensor size**: stated sizes must be positive and fit the int16 coordinates (`check_sensor_size`);
* **events** (`check_events`, on the decoded `EVENT_DTYPE` array):
  - polarity is 0 or 1;
  - coordinates lie in [0, width) x [0, height) of the sensor (the size the file states, else the one the caller
    passes, else only x, y >= 0);
  - time is monotone: a backward step of at most `TIME_TOLERANCE_US` (1 ms) is repaired by a stable sort on time
    and reported in the returned repairs (`{"time_reordered": number of events that moved}`); a larger backward
    step is an error. A sensor's clock never runs backwards by more than its readout jitter, while a damaged
    timestamp almost always does;
  - at most `MAX_REPEATS` (16) identical consecutive events (same t, x, y, p): real recordings hold a few exact
    duplicates (the sample DVS gesture file has runs of up to 3), zero-filled or repeated regions hold hundreds.

API for readers (a new reader, e.g. Prophesee EVT 2/3 or DAT, calls these after decoding)::

    from spikedata.io.validate import check_events, check_magic, check_payload, check_sensor_size

    check_magic(data, b"%", path, "evt2")                      # exact bytes at offset 0 (or `offset=`)
    check_payload(data, start, path, "evt2")                   # refuse an all-zero payload data[start:end]
    size = check_sensor_size((w, h), path, "evt2", offset)     # positive ints <= 32767, else error
    events, repairs = check_events(events, path, "evt2", size, offsets=None)
    info = EventFileInfo(..., repairs=repairs)

`offsets` (int64 [n], optional) is the byte offset of each event's record, so that an error can say where the
bad event lies; pass None for compressed payloads. `check_events` returns the (possibly re-ordered) events and
the repairs dict; it never changes an event's values.
"""

from __future__ import annotations

import os

import numpy as np

from spikedata.io.events import EventFileError

#: Largest backward time step (µs) that is repaired (by a stable sort on t) instead of refused.
TIME_TOLERANCE_US = 1000
#: Most identical consecutive events (t, x, y, p) a real recording holds; a longer run is refused.
MAX_REPEATS = 16
#: Coordinates are int16: the largest sensor side a reader accepts.
MAX_SENSOR_SIDE = 32767


def check_magic(data: bytes | memoryview, magic: bytes, path: str | os.PathLike, fmt: str, offset: int = 0) -> None:
    """Raise unless `data[offset:offset + len(magic)] == magic` exactly."""
    got = bytes(data[offset : offset + len(magic)])
    if got != magic:
        raise EventFileError(path, fmt, offset, f"expected the magic bytes {magic!r}, found {got!r}")


def check_payload(data: bytes | memoryview, start: int, path: str | os.PathLike, fmt: str,
                  end: int | None = None) -> None:
    """Raise when the payload `data[start:end]` is non-empty and made only of zero bytes."""
    view = np.frombuffer(data, dtype=np.uint8)[start:end]
    if view.size and not view.any():
        raise EventFileError(path, fmt, start, f"the payload is {view.size} zero bytes (a zero-filled file, not a "
                             "recording)")


def check_sensor_size(size, path: str | os.PathLike, fmt: str, offset: int | None = None) -> tuple[int, int]:
    """(width, height) as ints when both lie in [1, `MAX_SENSOR_SIDE`], else EventFileError."""
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise EventFileError(path, fmt, offset, f"unreadable sensor size {size!r}") from None
    if not (1 <= w <= MAX_SENSOR_SIDE and 1 <= h <= MAX_SENSOR_SIDE):
        raise EventFileError(path, fmt, offset, f"implausible sensor size {w} x {h} (each side must lie in "
                             f"[1, {MAX_SENSOR_SIDE}])")
    return w, h


def _where(offsets: np.ndarray | None, index: int) -> int | None:
    return int(offsets[index]) if offsets is not None else None


def check_events(
    events: np.ndarray,
    path: str | os.PathLike,
    fmt: str,
    sensor_size: tuple[int, int] | None = None,
    *,
    offsets: np.ndarray | None = None,
    tolerance_us: int = TIME_TOLERANCE_US,
    max_repeats: int = MAX_REPEATS,
) -> tuple[np.ndarray, dict[str, int]]:
    """Check decoded events [n] (`EVENT_DTYPE`, file order); returns (events, repairs).

    `sensor_size` (width, height) px bounds the coordinates (None: only x, y >= 0). Small backward time steps
    (<= `tolerance_us`) are repaired by a stable sort on t; see the module docstring for every rule.
    """
    repairs: dict[str, int] = {}
    n = events.shape[0]
    if n == 0:
        return events, repairs
    p = events["p"]
    bad = np.flatnonzero((p != 0) & (p != 1))
    if bad.size:
        i = int(bad[0])
        raise EventFileError(path, fmt, _where(offsets, i), f"event {i}: polarity {int(p[i])} (must be 0 or 1)")
    x, y = events["x"], events["y"]
    w, h = sensor_size if sensor_size is not None else (None, None)
    outside = (x < 0) | (y < 0)
    if w is not None:
        outside |= (x >= w) | (y >= h)
    bad = np.flatnonzero(outside)
    if bad.size:
        i = int(bad[0])
        box = f"[0, {w}) x [0, {h})" if w is not None else "x, y >= 0"
        raise EventFileError(path, fmt, _where(offsets, i), f"event {i} at (x {int(x[i])}, y {int(y[i])}) lies "
                             f"outside the sensor {box}; {bad.size} event(s) outside in all")
    _check_repeats(events, path, fmt, offsets, max_repeats)
    t = events["t"]
    step = np.diff(t)
    back = np.flatnonzero(step < 0)
    if back.size:
        worst = int(back[np.argmin(step[back])])
        if -int(step[worst]) > tolerance_us:
            i = worst + 1
            raise EventFileError(path, fmt, _where(offsets, i), f"time runs backwards at event {i} ({int(t[i - 1])} "
                                 f"-> {int(t[i])} µs, more than the tolerated {tolerance_us} µs)")
        order = np.argsort(t, kind="stable")
        repairs["time_reordered"] = int(np.count_nonzero(order != np.arange(n)))
        events = events[order]
    return events, repairs


def _check_repeats(events: np.ndarray, path, fmt: str, offsets: np.ndarray | None, max_repeats: int) -> None:
    same = events[1:] == events[:-1]
    if not same.any():
        return
    # Length of the run of identical events ending at each position: cumulative count reset at every change.
    idx = np.arange(1, same.size + 1)
    last_change = np.maximum.accumulate(np.where(same, 0, idx))
    run = idx - last_change  # identical predecessors of event k (k = 1..n-1)
    worst = int(np.argmax(run))
    if run[worst] >= max_repeats:
        first = worst + 1 - int(run[worst])
        raise EventFileError(path, fmt, _where(offsets, first), f"{int(run[worst]) + 1} identical events in a row "
                             f"from event {first} (t {int(events['t'][first])} µs, x {int(events['x'][first])}, "
                             f"y {int(events['y'][first])}): a zero-filled or repeated region, not sensor data")
