"""Prophesee EVT 2.1 ``.raw`` files: the 64-bit vectorised format of IMX636 / GenX320 cameras.

Header: the ``%`` text lines of every Prophesee ``.raw`` file (`spikedata.io.prophesee.parse_header`), announcing
``% evt 2.1`` or ``% format EVT21;...``. Then 64-bit words, type in bits 63-60:

* ``0x0`` EVT_NEG / ``0x1`` EVT_POS: bits 59-54 time (6 low bits), 53-43 x (aligned on 32), 42-32 y, 31-0 a
  validity mask: one event at (x + i, y) for every set bit i, polarity 0 / 1 from the type;
* ``0x8`` EVT_TIME_HIGH: bits 59-32 = time >> 6 (the 34-bit µs time's 28 high bits);
* ``0xA`` EXT_TRIGGER, ``0xE`` OTHERS, ``0xF`` CONTINUED: skipped and counted. Any other type is an error.

Two byte orders are in use. Little-endian 64-bit words (GenX320, and what evlib reads) by default; the IMX636
sends each word as its two 32-bit halves, the high half first, which Metavision marks ``endianness=legacy`` in the
``% format`` line: there the mask is in the second 32-bit half and type / time / x / y in the first.

Time rules are EVT 2.0's (`spikedata.io.prophesee`): events before the first TIME_HIGH are skipped and counted, a
TIME_HIGH that falls back by nearly the whole 34-bit range starts the next loop, and every decoded event goes
through `spikedata.io.validate.check_events` (sensor from the header's geometry, polarity, time order, repeats).
"""

from __future__ import annotations

import os

import numba
import numpy as np

from spikedata.io.event_types import EVENT_DTYPE, EventFileInfo
from spikedata.io.prophesee import (
    TIME_TOLERANCE_US,
    check_word_types,
    header_or_fail,
    make_info,
    sensor_bound,
    time_high_34,
    words_or_fail,
)
from spikedata.io.validate import check_events, check_payload

FORMAT = "evt21"
#: Word types EVT 2.1 defines (others are errors).
TYPES = (0x0, 0x1, 0x8, 0xA, 0xE, 0xF)


def is_legacy(entries: list[tuple[str, str]]) -> bool:
    """True when the header's ``% format`` line says ``endianness=legacy`` (IMX636: 32-bit halves swapped)."""
    for key, value in entries:
        if key.lower() == "format":
            fields = dict(f.split("=", 1) for f in value.split(";")[1:] if "=" in f)
            return fields.get("endianness", "").strip().lower() == "legacy"
    return False


@numba.njit(cache=True, nogil=True)
def _word(words, i, legacy):  # pragma: no cover - numba
    w = np.uint64(words[i])
    if legacy:
        w = (w >> np.uint64(32)) | (w << np.uint64(32))
    return w


@numba.njit(cache=True, nogil=True)
def _count(words, legacy):  # pragma: no cover - numba
    """(events after the first TIME_HIGH, events before it, word-type histogram [16])."""
    hist = np.zeros(16, np.int64)
    n = 0
    before = 0
    have_time = False
    for i in range(words.shape[0]):
        w = _word(words, i, legacy)
        typ = np.int64(w >> np.uint64(60))
        hist[typ] += 1
        if typ <= 1:
            k = _popcount32(np.int64(w & np.uint64(0xFFFFFFFF)))
            if have_time:
                n += k
            else:
                before += k
        elif typ == 0x8:
            have_time = True
    return n, before, hist


@numba.njit(cache=True, inline="always")
def _popcount32(v):  # pragma: no cover - numba
    # SWAR bit count of a 32-bit mask held in an int64 (numba would widen uint32 products to 64 bits)
    v = v - ((v >> 1) & 0x55555555)
    v = (v & 0x33333333) + ((v >> 2) & 0x33333333)
    v = (v + (v >> 4)) & 0x0F0F0F0F
    return ((v * 0x01010101) & 0xFFFFFFFF) >> 24


@numba.njit(cache=True, nogil=True)
def _decode(words, legacy, out):  # pragma: no cover - numba
    """Decode into the `EVENT_DTYPE` records `out` (sized by `_count`); returns the number of events."""
    n = 0
    base = np.int64(0)
    loops = np.int64(0)
    have_time = False
    for i in range(words.shape[0]):
        w = _word(words, i, legacy)
        typ = np.int64(w >> np.uint64(60))
        if typ <= 1:
            if not have_time:
                continue
            hi = np.int64(w >> np.uint64(32))
            t = base + ((hi >> 22) & 0x3F)
            x0 = (hi >> 11) & 0x7FF
            y = hi & 0x7FF
            mask = np.int64(w & np.uint64(0xFFFFFFFF))
            for byte in range(4):
                m = (mask >> (8 * byte)) & 0xFF
                if m:
                    for b in range(8):
                        if (m >> b) & 1:
                            out[n].t = t
                            out[n].x = x0 + 8 * byte + b
                            out[n].y = y
                            out[n].p = typ
                            n += 1
        elif typ == 0x8:
            base, loops = time_high_34(np.int64(w >> np.uint64(32)) & 0xFFFFFFF, base, loops, have_time)
            have_time = True
    return n


@numba.njit(cache=True, nogil=True)
def _word_of_event(words, legacy, k):  # pragma: no cover - numba
    """Index of the word that produces event `k` (counting from the first TIME_HIGH)."""
    n = 0
    have_time = False
    for i in range(words.shape[0]):
        w = _word(words, i, legacy)
        typ = np.int64(w >> np.uint64(60))
        if typ == 0x8:
            have_time = True
        elif typ <= 1 and have_time:
            n += _popcount32(np.int64(w & np.uint64(0xFFFFFFFF)))
            if n > k:
                return i
    return words.shape[0] - 1


def read_evt21(
    data: bytes, path: str | os.PathLike = "<bytes>", sensor_size: tuple[int, int] | None = None,
    time_tolerance_us: int = TIME_TOLERANCE_US,
) -> tuple[np.ndarray, EventFileInfo]:
    """Events of an EVT 2.1 ``.raw`` file's bytes and its info; `sensor_size` bounds x, y when the header states
    no geometry."""
    start, entries = header_or_fail(data, path, FORMAT)
    size = sensor_bound(entries, sensor_size, path, FORMAT)
    words = words_or_fail(data, start, 8, "<u8", path, FORMAT)
    check_payload(data, start, path, FORMAT)
    legacy = is_legacy(entries)
    n, before, hist = _count(words, legacy)
    if any(hist[t] for t in range(16) if t not in TYPES):
        # name the first undefined word as the file holds it (halves swapped back for the legacy order)
        shown = words if not legacy else (words >> np.uint64(32)) | (words << np.uint64(32))
        check_word_types(shown, hist, TYPES, 60, start, 8, path, FORMAT)
    events = np.empty(int(n), dtype=EVENT_DTYPE)
    _decode(words, legacy, events)
    events, repairs = check_events(events, path, FORMAT, size, tolerance_us=time_tolerance_us,
                                   offsets=lambda k: start + 8 * int(_word_of_event(words, legacy, k)))
    skipped = {"ext_trigger": hist[0xA], "others": hist[0xE], "continued": hist[0xF],
               "before_first_time_high": before}  # fmt: skip
    entries = [*entries, ("byte_order", "legacy (32-bit halves swapped)" if legacy else "little-endian 64-bit")]
    return events, make_info(path, FORMAT, n, size, skipped, entries, repairs)
