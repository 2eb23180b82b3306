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

import numba
import numpy as np

from spikedata.io.event_types import EventFileError

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


def _where(offsets, index: int) -> int | None:
    """Byte offset of event `index`: `offsets` is None, an array of offsets, or a function of the index."""
    if offsets is None:
        return None
    return int(offsets(index)) if callable(offsets) else int(offsets[index])


def check_events(
    events: np.ndarray,
    path: str | os.PathLike,
    fmt: str,
    sensor_size: tuple[int, int] | None = None,
    *,
    offsets=None,
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
    w, h = sensor_size if sensor_size is not None else (-1, -1)
    if events_look_clean(events, int(w), int(h), max_repeats):
        return events, repairs
    bad_p, outside, n_outside, run_start, run_len, worst, worst_step, any_back = scan_events(events, int(w), int(h))
    if bad_p >= 0:
        i = bad_p
        raise EventFileError(path, fmt, _where(offsets, i), f"event {i}: polarity {int(events['p'][i])} (must be 0 "
                             "or 1)")
    if outside >= 0:
        i = outside
        box = f"[0, {w}) x [0, {h})" if sensor_size is not None else "x, y >= 0"
        raise EventFileError(path, fmt, _where(offsets, i), f"event {i} at (x {int(events['x'][i])}, y "
                             f"{int(events['y'][i])}) lies outside the sensor {box}; {n_outside} event(s) outside "
                             "in all")
    if run_len > max_repeats:
        first = run_start
        raise EventFileError(path, fmt, _where(offsets, first), f"{run_len} identical events in a row from event "
                             f"{first} (t {int(events['t'][first])} µs, x {int(events['x'][first])}, y "
                             f"{int(events['y'][first])}): a zero-filled or repeated region, not sensor data")
    if any_back:
        if worst_step > tolerance_us:
            i = worst
            t = events["t"]
            raise EventFileError(path, fmt, _where(offsets, i), f"time runs backwards at event {i} ({int(t[i - 1])} "
                                 f"-> {int(t[i])} µs, more than the tolerated {tolerance_us} µs)")
        order = np.argsort(events["t"], kind="stable")
        repairs["time_reordered"] = int(np.count_nonzero(order != np.arange(n)))
        events = events[order]
    return events, repairs


@numba.njit(cache=True, nogil=True)
def events_look_clean(ev, w, h, max_repeats):  # pragma: no cover - numba
    """True when events [n] (`EVENT_DTYPE`) are plainly fine: polarities 0/1, coordinates inside the sensor
    (w, h px; w < 0: only x, y >= 0), time never steps back, and fewer than `max_repeats` identical neighbours in
    all (so no run can be longer). False sends them to `scan_events`, which finds what is wrong and where."""
    # The common case in one branch-free pass, about twice as fast as `scan_events`.
    n = ev.shape[0]
    x_lo, y_lo, x_hi, y_hi = np.int64(0), np.int64(0), np.int64(-1), np.int64(-1)
    bad_p = np.int64(0)
    back = False
    repeats = np.int64(0)
    tp, xp, yp, pp = np.int64(ev[0].t), np.int64(-1), np.int64(-1), np.int64(-1)
    for i in range(n):
        t = np.int64(ev[i].t)
        x = np.int64(ev[i].x)
        y = np.int64(ev[i].y)
        p = np.int64(ev[i].p)
        x_lo, x_hi = min(x_lo, x), max(x_hi, x)
        y_lo, y_hi = min(y_lo, y), max(y_hi, y)
        bad_p |= p & ~np.int64(1)
        back |= t < tp
        repeats += (t == tp) & (x == xp) & (y == yp) & (p == pp)
        tp, xp, yp, pp = t, x, y, p
    inside = x_lo >= 0 and y_lo >= 0 and (w < 0 or (x_hi < w and y_hi < h))
    return inside and bad_p == 0 and not back and repeats < max_repeats


@numba.njit(cache=True, nogil=True)
def scan_events(ev, w, h):  # pragma: no cover - numba
    """Every defect `check_events` reports, in one pass over events [n] (`EVENT_DTYPE`): (first bad polarity,
    first event outside the sensor w x h px, how many are outside, start and length of the longest run of identical
    consecutive events, event and size (µs) of the largest backward time step, whether time ever steps back);
    -1 where there is none."""
    # Records rather than four strided field views: about 20 % faster.
    n = ev.shape[0]
    bad_p = -1
    outside = -1
    n_outside = 0
    run_start, run_len = 0, 1
    best_start, best_len = 0, 1
    worst, worst_step = -1, np.int64(0)
    any_back = False
    tp, xp, yp, pp = np.int64(0), np.int64(0), np.int64(0), np.int64(0)
    for i in range(n):
        t = np.int64(ev[i].t)
        x = np.int64(ev[i].x)
        y = np.int64(ev[i].y)
        p = np.int64(ev[i].p)
        if bad_p < 0 and p != 0 and p != 1:
            bad_p = i
        if x < 0 or y < 0 or (w >= 0 and (x >= w or y >= h)):
            n_outside += 1
            if outside < 0:
                outside = i
        if i:
            # non-short-circuit: equal times are common, equal events rare; one predictable branch
            if (t == tp) & (x == xp) & (y == yp) & (p == pp):
                run_len += 1
                if run_len > best_len:
                    best_start, best_len = run_start, run_len
            else:
                run_start, run_len = i, 1
            step = tp - t
            if step > 0:
                any_back = True
                if step > worst_step:
                    worst, worst_step = i, step
        tp, xp, yp, pp = t, x, y, p
    return bad_p, outside, n_outside, best_start, best_len, worst, worst_step, any_back
