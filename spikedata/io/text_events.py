"""Plain-text and CSV event files: one event a line, four numeric columns.

Layouts in use, all read:

* ``t x y p`` separated by spaces / tabs, without a header: the Event Camera Dataset's ``events.txt`` and evlib's
  text files (evlib writes a ``# timestamp x y polarity`` comment first); time in seconds with a fraction;
* CSV with a header naming the columns in any order, e.g. ``x,y,p,t`` or faery's ``t,x@304,y@240,on`` (faery puts
  the sensor size after ``@``: it becomes `EventFileInfo.sensor_size`); time in integer µs.

The separator is a comma when the first data line holds one, else white space. A header is a first line (``#`` or
``%`` allowed before it) that is not made of numbers; its names map to the columns: ``t`` / ``ts`` / ``time`` /
``timestamp`` (optionally with a unit, ``t_us``, ``t [s]``, ``timestamp(ms)``), ``x``, ``y``, ``p`` / ``pol`` /
``polarity`` / ``on``. Other columns are skipped. Without a header the order is ``t x y p``.

**Time unit**, decided from the content unless the header names one: time stamps written with a decimal point or
an exponent (``0.000123``, ``1.5e-3``) are seconds; integers are µs (what faery, DVS-Lip style CSVs and most C
writers use). Mixing the two in one file is an error (a seconds file whose first stamp is ``0`` is fine: a file
that has any decimal stamp in its first lines is read as seconds). Seconds are converted exactly from their
decimal digits (no float rounding), to the nearest µs.

Polarity 1 = ON; 0 or -1 = OFF (evlib writes -1). Coordinates and polarity must be integers. Lines starting with
``#`` or ``%`` and empty lines are skipped anywhere. The events then go through `spikedata.io.validate.check_events`
(sensor from the header, else the caller's; polarity, time order, repeats). A malformed line raises
`EventFileError` naming the file, the line number and its byte offset.
"""

from __future__ import annotations

import os
import re

import numba
import numpy as np

from spikedata.io.event_types import EVENT_DTYPE, EventFileError, EventFileInfo
from spikedata.io.validate import check_events, check_sensor_size

FORMAT = "text"
_UNITS = {"s": 6, "sec": 6, "ms": 3, "us": 0, "µs": 0, "usec": 0, "ns": -3}
_NAMES = {"t": "t", "ts": "t", "time": "t", "timestamp": "t", "timestamps": "t", "x": "x", "y": "y", "p": "p",
          "pol": "p", "polarity": "p", "on": "p"}  # fmt: skip
_NAME = re.compile(r"^([a-zµ]+?)(?:[_ ]*[\[(]?\s*(s|sec|ms|us|µs|usec|ns)\s*[\])]?)?(?:@(\d+))?$")
_NUMBER = re.compile(rb"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_PRINTABLE = np.zeros(256, bool)
_PRINTABLE[32:127] = True
_PRINTABLE[[9, 10, 13]] = True

# kernel error codes -> message
_ERRORS = {1: "expected a number", 2: "too few columns", 3: "a coordinate or polarity that is not an integer",
           4: "a decimal time stamp in a file whose time stamps are integer µs", 5: "a number out of range",
           6: "polarity other than 1, 0 or -1", 7: "more columns than the first data line"}  # fmt: skip


def _lines(data, limit: int = 65536) -> list[tuple[int, bytes]]:
    """(offset, line) of the first lines of `data` (at most `limit` bytes)."""
    head = bytes(data[:limit])
    out, pos = [], 0
    for line in head.split(b"\n")[:-1] if b"\n" in head else [head]:
        out.append((pos, line.rstrip(b"\r")))
        pos += len(line) + 1
    return out


def _fields(line: bytes, comma: bool) -> list[bytes]:
    return [f.strip() for f in line.split(b",")] if comma else line.split()


def looks_like_text(data) -> bool:
    """True when `data` starts as a text event file: printable ASCII, and a first data line (after optional
    comment / header lines) of at least four numbers."""
    head = np.frombuffer(bytes(data[:4096]), np.uint8)
    if not head.size or not _PRINTABLE[head].all() or 10 not in head:
        return False
    for _, line in _lines(data, 4096)[:8]:
        text = line.strip()
        if not text or text[:1] in (b"#", b"%"):
            continue
        fields = _fields(text, b"," in text)
        if len(fields) >= 4 and all(_NUMBER.match(f) for f in fields):
            return True
        if not any(_NUMBER.match(f) for f in fields):
            continue  # a header line
        return False
    return False


def parse_layout(data, path) -> tuple[int, bool, list[str | None], int | None, tuple[int, int] | None]:
    """(offset of the first data line, comma-separated, column roles ['t'|'x'|'y'|'p'|None], time unit as a
    power of ten to µs or None (decide from content), sensor size from the header or None)."""
    header: tuple[int, bytes] | None = None
    for pos, line in _lines(data):
        text = line.strip()
        if not text:
            continue
        bare = text.lstrip(b"#%").strip()
        fields = _fields(bare, b"," in bare)
        if fields and all(_NUMBER.match(f) for f in fields):
            comma = b"," in text
            if header is None:
                return pos, comma, ["t", "x", "y", "p"] + [None] * (len(fields) - 4), None, None
            return (pos, comma, *_roles(header[1], comma, path, header[0]))
        if text[:1] not in (b"#", b"%") or header is None:
            header = (pos, bare)
    raise EventFileError(path, FORMAT, 0, "no line of four numbers (t, x, y, p) in the first 64 kB")


def _roles(line: bytes, comma: bool, path, offset: int) -> tuple[list[str | None], int | None, tuple | None]:
    roles: list[str | None] = []
    unit = None
    size: dict[str, int] = {}
    for raw in _fields(line, comma):
        m = _NAME.match(raw.decode("utf-8", errors="replace").strip().lower())
        role = _NAMES.get(m.group(1)) if m else None
        if role in roles:
            raise EventFileError(path, FORMAT, offset, f"header names the {role} column twice: {line[:80]!r}")
        roles.append(role)
        if role == "t" and m.group(2):
            unit = _UNITS[m.group(2)]
        if role in ("x", "y") and m.group(3):
            size[role] = int(m.group(3))
    missing = [r for r in "txyp" if r not in roles]
    if missing:
        raise EventFileError(path, FORMAT, offset, f"header {line[:80]!r} names no {', '.join(missing)} column "
                             "(names read: t / ts / time / timestamp, x, y, p / pol / polarity / on)")
    sensor = (size["x"], size["y"]) if len(size) == 2 else None
    return roles, unit, sensor


@numba.njit(cache=True, nogil=True, inline="always")
def _digits(buf, i, size, m, exp, fraction):  # pragma: no cover - numba
    """Append the decimal digits at buf[i:] to the mantissa m; past 18 significant digits an integer part's digit
    raises the exponent and a fraction's is dropped. (next position, m, exp, digits read)."""
    digits = 0
    while i < size:
        d = np.int64(buf[i]) - 48
        if d < 0 or d > 9:
            break
        if m < 100000000000000000:
            m = m * 10 + d
            exp -= fraction
        elif not fraction:
            exp += 1
        digits += 1
        i += 1
    return i, m, exp, digits


@numba.njit(cache=True, nogil=True, inline="always")
def _number(buf, i, size):  # pragma: no cover - numba
    """Parse the field at buf[i] (leading blanks skipped): (position after it, mantissa, decimal exponent,
    decimal syntax, error). Digits past the 18th significant one are dropped (exponent kept)."""
    while i < size and (buf[i] == 32 or buf[i] == 9):
        i += 1
    neg = False
    if i < size and (buf[i] == 45 or buf[i] == 43):
        neg = buf[i] == 45
        i += 1
    # the common field, a plain integer of at most 18 digits, in one tight loop
    j = i
    m = np.int64(0)
    while j < size and j - i < 18:
        d = np.int64(buf[j]) - 48
        if d < 0 or d > 9:
            break
        m = m * 10 + d
        j += 1
    if j > i and (j == size or not (buf[j] == 46 or buf[j] == 101 or buf[j] == 69 or 48 <= buf[j] <= 57)):
        return j, -m if neg else m, 0, False, 0
    i, m, exp, digits = _digits(buf, i, size, np.int64(0), 0, False)
    decimal = False
    if i < size and buf[i] == 46:
        decimal = True
        i, m, exp, more = _digits(buf, i + 1, size, m, exp, True)
        digits += more
    if i < size and (buf[i] == 101 or buf[i] == 69):
        decimal = True
        i += 1
        eneg = False
        if i < size and (buf[i] == 45 or buf[i] == 43):
            eneg = buf[i] == 45
            i += 1
        e = 0
        start = i
        while i < size and 48 <= buf[i] <= 57:
            e = min(e * 10 + (np.int64(buf[i]) - 48), 1000)
            i += 1
        if i == start:
            return i, m, exp, decimal, 1
        exp += -e if eneg else e
    if digits == 0:
        return i, m, exp, decimal, 1
    return i, -m if neg else m, exp, decimal, 0


@numba.njit(cache=True, nogil=True)
def _scale(m, q):  # pragma: no cover - numba
    """m * 10^q rounded to the nearest integer (half away from zero); (value, error)."""
    if m == 0:
        return np.int64(0), 0
    if q >= 0:
        v = m
        for _ in range(q):
            if abs(v) > 922337203685477580:
                return np.int64(0), 5
            v *= 10
        return v, 0
    if q < -18:
        return np.int64(0), 0
    d = np.int64(1)
    for _ in range(-q):
        d *= 10
    a = (abs(m) + d // 2) // d
    return (-a if m < 0 else a), 0


@numba.njit(cache=True, nogil=True)
def _parse(buf, pos, roles, unit, decimal_time, out):  # pragma: no cover - numba
    """Parse lines from buf[pos:] into `out` in one pass; roles[c] = 0 t, 1 x, 2 y, 3 p, -1 skipped. Returns
    (events, error code, byte offset of the line where it failed)."""
    n = 0
    size = buf.shape[0]
    ncols = roles.shape[0]
    while pos < size:
        line = pos
        i = pos
        while i < size and (buf[i] == 32 or buf[i] == 9 or buf[i] == 13):
            i += 1
        if i == size or buf[i] == 10 or buf[i] == 35 or buf[i] == 37:  # blank or comment line
            while i < size and buf[i] != 10:
                i += 1
            pos = i + 1
            continue
        t = np.int64(0)
        x = np.int64(0)
        y = np.int64(0)
        p = np.int64(0)
        for c in range(ncols):
            if c:  # one separator: a comma, or blanks
                while i < size and (buf[i] == 32 or buf[i] == 9):
                    i += 1
                if i < size and buf[i] == 44:
                    i += 1
                elif i == size or buf[i] == 10 or buf[i] == 13:
                    return n, 2, line
            i, m, exp, dec, err = _number(buf, i, size)
            if err:
                return n, 1, line
            r = roles[c]
            if r == 0:
                if dec and not decimal_time:
                    return n, 4, line
                t, err = _scale(m, exp + unit)
                if err:
                    return n, 5, line
            elif r > 0:
                if dec:
                    return n, 3, line
                if r == 1:
                    x = m
                elif r == 2:
                    y = m
                else:
                    p = m
            if i < size and not (buf[i] == 32 or buf[i] == 9 or buf[i] == 44 or buf[i] == 13 or buf[i] == 10):
                return n, 1, line
        while i < size and (buf[i] == 32 or buf[i] == 9 or buf[i] == 13):
            i += 1
        if i < size and buf[i] != 10:
            return n, 7, line
        pos = i + 1
        if p == -1:
            p = 0
        elif p != 0 and p != 1:
            return n, 6, line
        if x < -32768 or x > 32767 or y < -32768 or y > 32767:
            return n, 5, line
        out[n].t = t
        out[n].x = x
        out[n].y = y
        out[n].p = p
        n += 1
    return n, 0, pos


_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_NEWLINES = np.uint64(0x0A0A0A0A0A0A0A0A)
_ONES = np.uint64(0x0101010101010101)


@numba.njit(cache=True, nogil=True)
def _count_lines(buf, start):  # pragma: no cover - numba
    """1 + the newlines in buf[start:], eight bytes at a time: a byte of `w ^ 0x0A..` is zero exactly where `w` has a
    newline; the zero-byte test sets its high bit there and nowhere else, and a multiply adds those bits up."""
    n = 1
    size = buf.shape[0]
    i = start
    while i < size and i % 8:
        n += buf[i] == 10
        i += 1
    words = buf[i : i + (size - i) // 8 * 8].view(np.uint64)
    for w in words:
        x = w ^ _NEWLINES
        y = ~(((x & _LOW7) + _LOW7) | x | _LOW7)
        n += ((y >> np.uint64(7)) * _ONES) >> np.uint64(56)
    for k in range(i + words.shape[0] * 8, size):
        n += buf[k] == 10
    return n


def read_text(data, path: str | os.PathLike = "<bytes>",
              sensor_size: tuple[int, int] | None = None) -> tuple[np.ndarray, EventFileInfo]:
    """Events of a text / CSV event file's bytes and its info (layouts and time units in the module docstring);
    `sensor_size` bounds x, y when the header states none."""
    start, comma, roles, unit, stated = parse_layout(data, path)
    buf = np.frombuffer(data, np.uint8)
    t_col = roles.index("t")
    allow_decimal = unit is not None
    if unit is None:  # decide from the first data lines: any decimal time stamp means seconds
        sample = [_fields(line.strip(), comma) for _, line in _lines(bytes(data[start : start + 65536]))][:1000]
        allow_decimal = any(len(f) > t_col and re.search(rb"[.eE]", f[t_col]) for f in sample)
        unit = 6 if allow_decimal else 0
    codes = np.array([("txyp".index(r) if r else -1) for r in roles], np.int64)
    bound = int(_count_lines(buf, start))
    events = np.empty(bound, dtype=EVENT_DTYPE)
    n, err, where = _parse(buf, start, codes, unit, allow_decimal, events)
    if err:
        line = int(np.count_nonzero(buf[:where] == 10)) + 1
        text = bytes(data[where : where + 60]).split(b"\n")[0]
        raise EventFileError(path, FORMAT, int(where), f"line {line}: {_ERRORS[int(err)]} in {text!r} (columns "
                             f"{', '.join(r or '-' for r in roles)})")
    events = events[:n] if 4 * n >= 3 * bound else events[:n].copy()
    size = stated if stated is not None else (check_sensor_size(sensor_size, path, FORMAT) if sensor_size else None)
    events, repairs = check_events(events, path, FORMAT, size)
    header = {"columns": " ".join(r or "-" for r in roles), "separator": "comma" if comma else "white space",
              "time_unit": {6: "s", 3: "ms", 0: "µs", -3: "ns"}[unit]}  # fmt: skip
    return events, EventFileInfo(str(path), FORMAT, int(n), stated, 0, {}, None, None, header, repairs)
