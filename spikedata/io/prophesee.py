"""Prophesee / Metavision recordings: EVT 2.0 and EVT 3.0 ``.raw`` files and the older ``.dat`` files.

All three start with a text header of lines ``% key value\\n`` (newer files end it with ``% end``); the binary data
follow. The header decides the format: ``% evt 2.0`` / ``% evt 3.0`` or ``% format EVT2`` / ``% format EVT3;...``
for ``.raw`` files, ``% Data file containing <type> events`` with ``% Version 2`` for ``.dat`` files.

Sensor size (width, height) from the header, first match wins: ``% geometry WxH``, ``width=``/``height=`` in
``% format``, ``% Width`` / ``% Height`` (DAT), else the sensor generation that ``% plugin_name`` or
``% sensor_generation`` names (Gen3 / Gen3.1: 640 x 480; Gen4 / Gen4.1 / IMX636: 1280 x 720; GenX320: 320 x 320;
ATIS / Gen2: 304 x 240). None when the header says none of these.

EVT 2.0 (little-endian 32-bit words, type in bits 31-28):

* ``0x0`` CD_OFF / ``0x1`` CD_ON: bits 27-22 time (6 low bits), 21-11 x, 10-0 y;
* ``0x8`` EV_TIME_HIGH: bits 27-0 = time >> 6;
* ``0xA`` EXT_TRIGGER, ``0xE`` OTHERS, ``0xF`` CONTINUED: skipped and counted.

EVT 3.0 (little-endian 16-bit words, type in bits 15-12, state carried between words):

* ``0x0`` EVT_ADDR_Y: y = bits 10-0;
* ``0x2`` EVT_ADDR_X: one event at x = bits 10-0, polarity bit 11;
* ``0x3`` VECT_BASE_X: base x = bits 10-0, polarity bit 11;
* ``0x4`` VECT_12 / ``0x5`` VECT_8: one event at base x + i for every set bit i of the 12 / 8 bit mask, then
  base x += 12 / 8;
* ``0x6`` EVT_TIME_LOW: time = time base + bits 11-0;
* ``0x8`` EVT_TIME_HIGH: time base = bits 11-0 << 12 (time low restarts at 0);
* ``0xA`` EXT_TRIGGER, ``0xE`` OTHERS, ``0x7`` CONTINUED_4, ``0xF`` CONTINUED_12: skipped and counted.

Time is the 12-bit TIME_HIGH joined with the 12-bit TIME_LOW: the TIME_LOW counter wraps every 4096 µs and the
encoder sends the next TIME_HIGH before it does, so the time base is never advanced from a TIME_LOW decrease
(small TIME_LOW steps back do occur in real recordings; the check below sorts them and says so). The 24-bit (EVT 3) /
34-bit (EVT 2) time itself loops: a TIME_HIGH that falls back by nearly the whole range starts the next loop
(Metavision's rule). Events before the first TIME_HIGH have no time and are skipped (and counted), as
Metavision does. A word of a type the format does not define is an error.

DAT (``% Version 2``): after the header one byte event type (0 = Event2D, 12 = EventCD) and one byte event size
(8), then 8-byte events: uint32 time (µs; its 32-bit wrap is unwrapped) and uint32 with x in bits 13-0, y in bits
27-14, polarity in bits 31-28 (0 or 1; anything else is refused by the event check).

Every reader then checks what it decoded with the readers' shared rules (`spikedata.io.validate.check_events`,
one numba pass): polarity 0 / 1, coordinates inside the header's geometry (else the caller's sensor size), no
zero-filled or repeated run, time monotone (steps back within `TIME_TOLERANCE_US` repaired by a stable sort and
reported in `EventFileInfo.repairs`, larger ones refused); a violation raises `EventFileError` naming the file, the
format and the byte offset of the word that produced the first offending event.
"""

from __future__ import annotations

import os
import re

import numba
import numpy as np

from spikedata.io.event_types import EVENT_DTYPE, EventFileError, EventFileInfo, skipped_info
from spikedata.io.validate import check_events, check_sensor_size

FORMATS = ("evt2", "evt3", "dat")
#: DAT event types read: 0 = Event2D (ATIS / Gen1 recordings, N-CARS), 12 = EventCD (Metavision's CD events); both
#: 8 bytes, the same layout.
DAT_EVENT_TYPES = {0: "Event2D", 12: "EventCD"}
#: A decoded event may lie at most this far (µs) before the latest earlier event; real recordings step back by a
#: few µs (EVT 3 TIME_LOW jitter), a mis-decoded or foreign file by much more.
TIME_TOLERANCE_US = 1000

# (pattern in the lower-cased plugin / generation text, (width, height))
_GENERATION_SIZES = (
    ("genx320", (320, 320)),
    ("imx636", (1280, 720)),
    ("imx646", (1280, 720)),
    ("gen41", (1280, 720)),
    ("gen4", (1280, 720)),
    ("gen31", (640, 480)),
    ("gen3", (640, 480)),
    ("atis", (304, 240)),
    ("gen2", (304, 240)),
)
_GENERATION_NUMBERS = {"4.1": (1280, 720), "4.0": (1280, 720), "4": (1280, 720), "3.1": (640, 480),
                       "3.0": (640, 480), "3": (640, 480), "320": (320, 320)}  # fmt: skip
_GEOMETRY = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")
#: a control character other than tab: the line is not header text
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f]")


# --------------------------------------------------------------------------------------------------------------
# Header


def parse_header(data: bytes | memoryview) -> tuple[int, list[tuple[str, str]]] | None:
    """(offset of the first data byte, [(key, value)]) of a ``%`` text header, or None when `data` does not start
    with one (a line that is not text ends the header: binary data may begin with the byte of ``%``)."""
    pos = 0
    n = len(data)
    entries: list[tuple[str, str]] = []
    while pos < n and data[pos] == 0x25:  # '%'
        end = bytes(data[pos : pos + 4096]).find(b"\n")
        if end < 0:
            break
        raw = bytes(data[pos + 1 : pos + end]).rstrip(b"\r")
        if _CONTROL.search(raw):
            break
        text = raw.decode("ascii", errors="replace").strip()
        key, _, value = text.partition(" ")
        pos += end + 1
        if key.lower() == "end":
            break
        entries.append((key, value.strip()))
    return (pos, entries) if entries else None


def header_format(entries: list[tuple[str, str]]) -> str | None:
    """'evt2', 'evt21', 'evt3', 'dat', 'unsupported:<what>' or None (not a Prophesee header) from the header entries."""
    table = {k.lower(): v for k, v in entries}
    if "evt" in table:
        version = table["evt"].strip()
        return {"2.0": "evt2", "2.1": "evt21", "3.0": "evt3"}.get(version, f"unsupported:EVT {version}")
    if "format" in table:
        name = table["format"].split(";")[0].strip().upper()
        return {"EVT2": "evt2", "EVT21": "evt21", "EVT3": "evt3"}.get(name, f"unsupported:format {name}")
    for key, value in entries:
        if key.lower() == "data" and value.lower().startswith("file containing"):
            return "dat"
    if "version" in table and ("date" in table or "height" in table or "width" in table):
        return "dat"
    return None


def header_sensor_size(entries: list[tuple[str, str]]) -> tuple[int, int] | None:
    """(width, height) px stated by the header (rules in the module docstring), else None."""
    table = {k.lower(): v for k, v in entries}
    m = _GEOMETRY.match(table.get("geometry", ""))
    if m:
        return int(m.group(1)), int(m.group(2))
    if "format" in table:
        fields = dict(f.split("=", 1) for f in table["format"].split(";")[1:] if "=" in f)
        if "width" in fields and "height" in fields:
            return int(fields["width"]), int(fields["height"])
    if table.get("width", "").isdigit() and table.get("height", "").isdigit():
        return int(table["width"]), int(table["height"])
    generation = table.get("sensor_generation", "").strip()
    if generation in _GENERATION_NUMBERS:
        return _GENERATION_NUMBERS[generation]
    plugin = (table.get("plugin_name", "") + " " + table.get("sensor_name", "")).lower().replace(".", "")
    for key, size in _GENERATION_SIZES:
        if key in plugin:
            return size
    return None


def detect(data: bytes | memoryview) -> str | None:
    """The Prophesee format of `data` ('evt2', 'evt3', 'dat', 'unsupported:...') or None."""
    parsed = parse_header(data[:65536])
    return None if parsed is None else header_format(parsed[1])


# --------------------------------------------------------------------------------------------------------------
# Kernels (numba): decode straight into the records of the output event array.

_POPCOUNT12 = np.array([bin(i).count("1") for i in range(4096)], dtype=np.int64)
#: Word types each format defines (others are errors).
_EVT3_TYPES = (0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0xA, 0xE, 0xF)
_EVT2_TYPES = (0x0, 0x1, 0x8, 0xA, 0xE, 0xF)


@numba.njit(cache=True)
def first_of_type(words, shift, typ):  # pragma: no cover - numba
    for i in range(words.shape[0]):
        if (words[i] >> shift) == typ:
            return i
    return words.shape[0]


@numba.njit(cache=True)
def _evt3_histogram(words, pop, first):  # pragma: no cover - numba
    """(events from word `first` on, events before it, word-type histogram [16]); branch-free in the main loop
    (a per-word histogram update costs more than the decoding, so only the rare types are counted there)."""
    before = 0
    for i in range(first):
        w = np.int64(words[i])
        typ = w >> 12
        m = (w & 0xFFF) if typ == 0x4 else ((w & 0xFF) if typ == 0x5 else (1 if typ == 0x2 else 0))
        before += pop[m]
    n = 0
    seen = 0
    ext = 0
    other = 0
    cont = 0
    for i in range(words.shape[0]):
        w = np.int64(words[i])
        typ = w >> 12
        seen |= 1 << typ
        ext += typ == 0xA
        other += typ == 0xE
        cont += (typ == 0x7) + (typ == 0xF)
        m = (w & 0xFFF) if typ == 0x4 else ((w & 0xFF) if typ == 0x5 else (1 if typ == 0x2 else 0))
        n += pop[m]
    hist = np.zeros(16, np.int64)
    for t in range(16):
        hist[t] = (seen >> t) & 1
    hist[0xA] = ext
    hist[0xE] = other
    hist[0x7] = cont
    return n - before, before, hist


@numba.njit(cache=True)
def _evt3_word_of_event(words, pop, first, k):  # pragma: no cover - numba
    """Index of the word that produces event `k` (counting from the first TIME_HIGH)."""
    n = 0
    for i in range(first, words.shape[0]):
        w = np.int64(words[i])
        typ = w >> 12
        m = (w & 0xFFF) if typ == 0x4 else ((w & 0xFF) if typ == 0x5 else (1 if typ == 0x2 else 0))
        n += pop[m]
        if n > k:
            return i
    return words.shape[0] - 1


@numba.njit(cache=True)
def _evt2_word_of_event(words, first, k):  # pragma: no cover - numba
    n = 0
    for i in range(first, words.shape[0]):
        n += (words[i] >> 28) <= 1
        if n > k:
            return i
    return words.shape[0] - 1


@numba.njit(cache=True)
def _evt3_decode(words, out):  # pragma: no cover - numba
    """Decode into the `EVENT_DTYPE` records `out`; returns the number of events (checked afterwards by
    `spikedata.io.validate.check_events`, one numba pass). Writing whole records is about twice as fast as writing
    four strided field views."""
    max_base = ((1 << 12) - 1) << 12
    loop = 1 << 24
    threshold = 10 << 12
    n = 0
    y = 0
    base_x = 0
    pol = 0
    base = np.int64(0)
    t = np.int64(0)
    loops = np.int64(0)
    have_time = False
    for i in range(words.shape[0]):
        w = np.int64(words[i])
        typ = w >> 12
        if typ == 0x0:
            y = w & 0x7FF
        elif typ == 0x2:
            if have_time:
                out[n].t = t
                out[n].x = w & 0x7FF
                out[n].y = y
                out[n].p = (w >> 11) & 1
                n += 1
        elif typ == 0x3:
            base_x = w & 0x7FF
            pol = (w >> 11) & 1
        elif typ == 0x4 or typ == 0x5:
            span = 12 if typ == 0x4 else 8
            mask = w & ((1 << span) - 1)
            if have_time and mask:
                for b in range(span):
                    if (mask >> b) & 1:
                        out[n].t = t
                        out[n].x = base_x + b
                        out[n].y = y
                        out[n].p = pol
                        n += 1
            base_x += span
        elif typ == 0x6:
            t = base + (w & 0xFFF)
        elif typ == 0x8:
            new_base = ((w & 0xFFF) << 12) + loops * loop
            if have_time and base > new_base and base - new_base >= max_base - threshold:
                new_base += loop
                loops += 1
            base = new_base
            t = base
            have_time = True
    return n


@numba.njit(cache=True, inline="always")
def time_high_34(high, base, loops, have_time):  # pragma: no cover - numba
    """EVT 2.0 / 2.1 TIME_HIGH: the new time base (µs) from its 28 bits and the loop count of the 34-bit time; a
    TIME_HIGH that falls back by nearly the whole range starts the next loop (Metavision's rule)."""
    max_base = ((np.int64(1) << 28) - 1) << 6
    loop = np.int64(1) << 34
    new_base = (high << 6) + loops * loop
    if have_time and base > new_base and base - new_base >= max_base - (np.int64(10) << 6):
        return new_base + loop, loops + 1
    return new_base, loops


@numba.njit(cache=True)
def _evt2_decode(words, out):  # pragma: no cover - numba
    """One pass into the `EVENT_DTYPE` records `out`, one slot per word: (events, first word of an undefined type
    or -1, skipped [ext_trigger, others, continued, before_first_time_high])."""
    skipped = np.zeros(4, np.int64)
    n = 0
    base = np.int64(0)
    loops = np.int64(0)
    have_time = False
    for i in range(words.shape[0]):
        w = np.int64(words[i])
        typ = w >> 28
        if typ <= 1:
            if not have_time:
                skipped[3] += 1
                continue
            out[n].t = base + ((w >> 22) & 0x3F)
            out[n].x = (w >> 11) & 0x7FF
            out[n].y = w & 0x7FF
            out[n].p = typ
            n += 1
        elif typ == 0x8:
            base, loops = time_high_34(w & 0xFFFFFFF, base, loops, have_time)
            have_time = True
        elif typ == 0xA:
            skipped[0] += 1
        elif typ == 0xE:
            skipped[1] += 1
        elif typ == 0xF:
            skipped[2] += 1
        else:
            return n, i, skipped
    return n, -1, skipped


@numba.njit(cache=True)
def _dat_decode(ts, data, out):  # pragma: no cover - numba
    wrap = np.int64(0)
    prev = np.int64(ts[0]) if ts.shape[0] else np.int64(0)
    for i in range(ts.shape[0]):
        t = np.int64(ts[i])
        if t < prev and prev - t > (np.int64(1) << 31):
            wrap += np.int64(1) << 32
        prev = t
        d = data[i]
        out[i].t = t + wrap
        out[i].x = d & 0x3FFF
        out[i].y = (d >> 14) & 0x3FFF
        out[i].p = (d >> 28) & 0xF


def header_or_fail(data: bytes, path, fmt: str) -> tuple[int, list[tuple[str, str]]]:
    parsed = parse_header(data)
    if parsed is None:
        raise EventFileError(path, fmt, 0, "no '%' text header")
    return parsed


def make_info(path, fmt, n, size, skipped: dict[str, int], entries, repairs: dict[str, int]) -> EventFileInfo:
    total, by_type = skipped_info(skipped)
    return EventFileInfo(str(path), fmt, int(n), size, total, by_type, None, None, dict(entries), repairs=repairs)


def words_or_fail(data: bytes, start: int, itemsize: int, dtype: str, path, fmt: str) -> np.ndarray:
    body = len(data) - start
    if body % itemsize:
        end = start + (body // itemsize) * itemsize
        raise EventFileError(path, fmt, end, f"truncated: the last {body % itemsize} byte(s) do not form a "
                             f"{itemsize}-byte word")  # fmt: skip
    return np.frombuffer(data, dtype=dtype, offset=start, count=body // itemsize)


def check_word_types(words, hist, defined, shift, start, itemsize, path, fmt) -> None:
    unknown = [t for t in range(16) if hist[t] and t not in defined]
    if unknown:
        i = int(np.flatnonzero(np.isin(words >> shift, unknown))[0])
        raise EventFileError(path, fmt, start + itemsize * i, f"word 0x{int(words[i]):0{2 * itemsize}x} has type "
                             f"0x{int(words[i]) >> shift:x}, which {fmt} does not define; the file is corrupt or "
                             f"not {fmt}")  # fmt: skip


def sensor_bound(entries: list[tuple[str, str]], sensor_size, path, fmt: str) -> tuple[int, int] | None:
    """The sensor the coordinates must fit: the header's geometry, else the caller's `sensor_size` (as the other
    readers do: a file's own statement wins)."""
    stated = header_sensor_size(entries)
    if stated is not None:
        return stated
    return check_sensor_size(sensor_size, path, fmt) if sensor_size is not None else None


def read_evt3(
    data: bytes, path: str | os.PathLike = "<bytes>", sensor_size: tuple[int, int] | None = None,
    time_tolerance_us: int = TIME_TOLERANCE_US,
) -> tuple[np.ndarray, EventFileInfo]:
    """Events of an EVT 3.0 ``.raw`` file's bytes and its info; `sensor_size` bounds x, y when the header states no
    geometry."""
    fmt = "evt3"
    start, entries = header_or_fail(data, path, fmt)
    size = sensor_bound(entries, sensor_size, path, fmt)
    words = words_or_fail(data, start, 2, "<u2", path, fmt)
    first = first_of_type(words, 12, 0x8)
    n, before, hist = _evt3_histogram(words, _POPCOUNT12, first)
    check_word_types(words, hist, _EVT3_TYPES, 12, start, 2, path, fmt)
    events = np.empty(int(n), dtype=EVENT_DTYPE)
    _evt3_decode(words, events)
    events, repairs = check_events(events, path, fmt, size, tolerance_us=time_tolerance_us,
                                   offsets=lambda k: start + 2 * int(_evt3_word_of_event(words, _POPCOUNT12, first, k)))
    skipped = {"ext_trigger": hist[0xA], "others": hist[0xE], "continued": hist[0x7],
               "before_first_time_high": before}  # fmt: skip
    return events, make_info(path, fmt, n, size, skipped, entries, repairs)


def read_evt2(
    data: bytes, path: str | os.PathLike = "<bytes>", sensor_size: tuple[int, int] | None = None,
    time_tolerance_us: int = TIME_TOLERANCE_US,
) -> tuple[np.ndarray, EventFileInfo]:
    """Events of an EVT 2.0 ``.raw`` file's bytes and its info; `sensor_size` bounds x, y when the header states no
    geometry."""
    fmt = "evt2"
    start, entries = header_or_fail(data, path, fmt)
    size = sensor_bound(entries, sensor_size, path, fmt)
    words = words_or_fail(data, start, 4, "<u4", path, fmt)
    # Nearly every EVT 2.0 word is an event: decode in one pass into one slot per word, then keep the first n.
    events = np.empty(words.shape[0], dtype=EVENT_DTYPE)
    n, unknown, counts = _evt2_decode(words, events)
    if unknown >= 0:
        check_word_types(words[: unknown + 1], np.bincount(words[: unknown + 1] >> 28, minlength=16), _EVT2_TYPES, 28,
                     start, 4, path, fmt)  # fmt: skip
    # a view, not `resize` (which reallocates and copies the whole array); copied only when the non-event words
    # would leave a quarter or more of the buffer unused
    events = events[: int(n)] if 4 * int(n) >= 3 * words.shape[0] else events[: int(n)].copy()
    first = first_of_type(words, 28, 0x8)
    events, repairs = check_events(events, path, fmt, size, tolerance_us=time_tolerance_us,
                                   offsets=lambda k: start + 4 * int(_evt2_word_of_event(words, first, k)))
    skipped = dict(zip(("ext_trigger", "others", "continued", "before_first_time_high"), counts.tolist(),
                       strict=True))  # fmt: skip
    return events, make_info(path, fmt, n, size, skipped, entries, repairs)


def read_dat(
    data: bytes, path: str | os.PathLike = "<bytes>", sensor_size: tuple[int, int] | None = None,
    time_tolerance_us: int = TIME_TOLERANCE_US,
) -> tuple[np.ndarray, EventFileInfo]:
    """Events of a Prophesee ``.dat`` file's bytes (2-D events, Version 2) and its info; `sensor_size` bounds x, y
    when the header states no geometry."""
    fmt = "dat"
    start, entries = header_or_fail(data, path, fmt)
    table = {k.lower(): v for k, v in entries}
    version = table.get("version", "").strip()
    if version and version != "2":
        raise EventFileError(path, fmt, 0, f"DAT version {version} is not supported (version 2 is)")
    for key, value in entries:
        if key.lower() == "data" and "event2d" not in value.lower().replace(" ", "") and "cd" not in value.lower():
            raise EventFileError(path, fmt, 0, f"'{key} {value}': only 2-D (CD) event files are supported")
    if len(data) - start < 2:
        raise EventFileError(path, fmt, start, "truncated: no event type / size bytes after the header")
    ev_type, ev_size = data[start], data[start + 1]
    if ev_type not in DAT_EVENT_TYPES or ev_size != 8:
        raise EventFileError(path, fmt, start, f"event type {ev_type} of size {ev_size}: only 2-D / CD events (type 0 "
                             "or 12, 8 bytes) are supported")  # fmt: skip
    body = start + 2
    words = words_or_fail(data, body, 4, "<u4", path, fmt)
    if len(words) % 2:
        raise EventFileError(path, fmt, len(data) - 4, "truncated: the last 4 bytes do not form an 8-byte event")
    pairs = words.reshape(-1, 2)
    size = sensor_bound(entries, sensor_size, path, fmt)
    events = np.empty(pairs.shape[0], dtype=EVENT_DTYPE)
    _dat_decode(pairs[:, 0], pairs[:, 1], events)
    events, repairs = check_events(events, path, fmt, size, tolerance_us=time_tolerance_us,
                                   offsets=lambda k: body + 8 * int(k))
    entries = [*entries, ("event_type", f"{ev_type} ({DAT_EVENT_TYPES[ev_type]})")]
    return events, make_info(path, fmt, len(events), size, {}, entries, repairs)
