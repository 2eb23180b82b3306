"""Event-camera recordings -> one event type: detect a file's format from its content and dispatch to its reader.

`read_events(path)` detects the format from the file's content (never its name) and dispatches to one module per
format (`READERS`):

* ``atis40``  -- the 40-bit ATIS layout of N-MNIST / N-Caltech101 ``.bin`` files (`spikedata.io.atis`);
* ``aedat2``  -- jAER AEDAT 2.0 (and its 16-bit predecessor 1.0) (`spikedata.io.aedat2`);
* ``aedat3``  -- cAER AEDAT 3.1 packets (`spikedata.io.aedat3`);
* ``aedat4``  -- DV AEDAT 4.0, LZ4 / zstd packets decoded in one pass (`spikedata.io.aedat4`);
* ``evt2``, ``evt3``, ``dat`` -- Prophesee EVT 2.0 / EVT 3.0 ``.raw`` and ``.dat`` files, Event2D or CD events
  (`spikedata.io.prophesee`); ``evt21`` -- Prophesee EVT 2.1 ``.raw`` (`spikedata.io.evt21`);
* ``hdf5``   -- HDF5 event files: Prophesee's ``/CD/events`` (ECF codec), DSEC's ``events/{x,y,p,t}``, evlib's
  (`spikedata.io.hdf5_events`);
* ``text``   -- plain text / CSV event lists (`spikedata.io.text_events`).

Every reader returns events in file order with fields `t` (int64, µs), `x`, `y` (int16, pixels from 0) and `p`
(int8, 1 = ON / brightness increase, 0 = OFF), plus an `EventFileInfo` (format, sensor size where the file states
it, records that were not polarity events and were skipped, repairs). A truncated, empty, zero-filled, damaged or
foreign file raises `EventFileError`, whose message names the file, the format and the byte offset where reading
failed. Every reader checks what it decoded with `spikedata.io.validate` (exact magic and version, coordinates
inside the sensor, polarity 0/1, monotone time within 1 ms, no zero-filled runs) before returning it.

The event type and the reader's error live below this module, in `spikedata.io.event_types`; a new format is a
reader module built on them, one entry in `READERS` and its rule in `detect_format`.
"""

from __future__ import annotations

import importlib
import mmap
import os
from pathlib import Path

import numpy as np

from spikedata.io.event_types import EventFileError, EventFileInfo

#: Format name -> (reader module, reader function `read(data, path, **options) -> (events, EventFileInfo)`).
READERS = {
    "atis40": ("spikedata.io.atis", "read_atis"),
    "aedat2": ("spikedata.io.aedat2", "read_aedat2"),
    "aedat3": ("spikedata.io.aedat3", "read_aedat3"),
    "aedat4": ("spikedata.io.aedat4", "read_aedat4"),
    "evt2": ("spikedata.io.prophesee", "read_evt2"),
    "evt3": ("spikedata.io.prophesee", "read_evt3"),
    "dat": ("spikedata.io.prophesee", "read_dat"),
    "evt21": ("spikedata.io.evt21", "read_evt21"),
    "hdf5": ("spikedata.io.hdf5_events", "read_hdf5_events"),
    "text": ("spikedata.io.text_events", "read_text"),
}
FORMATS = tuple(READERS)

#: The exact version lines of the AEDAT versions read here -> format name.
AEDAT_VERSION_LINES = {
    b"#!AER-DAT1.0": "aedat2",
    b"#!AER-DAT2.0": "aedat2",
    b"#!AER-DAT3.1": "aedat3",
    b"#!AER-DAT4.0": "aedat4",
}

# Magic numbers of common non-event files, so that they are named instead of being decoded as ATIS garbage.
_FOREIGN_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"PK\x03\x04": "zip",
    b"\x89PNG": "PNG image",
    b"\x89HDF": "HDF5",
    b"\x93NUMPY": "numpy .npy",
    b"RIFF": "RIFF (e.g. WAV)",
    b"%PDF": "PDF",
    b"\xff\xd8\xff": "JPEG image",
    b"BZh": "bzip2",
    b"\xfd7zXZ": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"\x04\x22\x4d\x18": "LZ4 frame",
}


def detect_format(data: bytes | memoryview, path: str | os.PathLike = "<bytes>") -> str:
    """Format name (one of `FORMATS`) from the first bytes of a file; raises EventFileError when none fits.

    AEDAT files announce themselves (``#!AER-DAT<version>``; a jAER file that starts with ``#`` but has no
    version line is AEDAT 1.0), Prophesee files by their ``%`` text header (``% evt 3.0``, ``% format EVT2``,
    ``% Data file containing ...``). The ATIS 40-bit layout has no header: any other non-empty file that is not a known
    foreign type is read as ATIS, and the ATIS reader rejects it when its timestamps are not monotone.
    """
    head = bytes(data[:16])
    if not head:
        raise EventFileError(path, "unknown", 0, "empty file: no events and no header to detect a format from")
    if head.startswith(b"#!"):
        line = head[:12]
        if line in AEDAT_VERSION_LINES and head[12:13] in (b"\r", b"\n"):
            return AEDAT_VERSION_LINES[line]
        if line in AEDAT_VERSION_LINES:
            raise EventFileError(path, "aedat", 12, f"damaged version line: {head[:14]!r} does not end after "
                                 f"{line!r}")
        if line.startswith(b"#!AER-DAT"):
            raise EventFileError(path, "aedat", 9, f"unsupported AEDAT version {line[9:]!r} (read: 1.0, 2.0, 3.1, 4.0)")
        raise EventFileError(path, "aedat", 0, f"damaged or unknown version line {line!r}; an AEDAT file starts "
                             f"with one of {', '.join(repr(k) for k in AEDAT_VERSION_LINES)}")
    if head.startswith(b"#"):
        near = _near_version_line(head[:12])
        if near is not None:
            raise EventFileError(path, "aedat", 0, f"damaged version line {head[:12]!r} (one or two bytes off "
                                 f"{near!r}); refusing to guess the format")
        from spikedata.io.text_events import looks_like_text

        if looks_like_text(data):
            return "text"  # '# timestamp x y polarity' and numbers: a text event file (evlib writes these)
        if _text_line(data):
            return "aedat2"  # jAER files without a version line (AEDAT 1.0) start with '#' comment lines
        # else: an ATIS file whose first event has x = 35 (the byte '#'): binary, read below
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"  # an event layout or not: the HDF5 reader says which it found
    for magic, name in _FOREIGN_MAGIC.items():
        if head.startswith(magic):
            raise EventFileError(path, "unknown", 0, f"not an event file: the content looks like {name}")
    if head.startswith(b"%"):
        from spikedata.io.prophesee import detect

        found = detect(data)
        if found is not None and found.startswith("unsupported:"):
            raise EventFileError(path, "prophesee", 0, f"{found.split(':', 1)[1]} is not supported (EVT 2.0, EVT 2.1, "
                                 "EVT 3.0 and DAT are)")  # fmt: skip
        if found is not None:
            return found
    from spikedata.io.text_events import looks_like_text

    if looks_like_text(data):
        return "text"
    return "atis40"


def _text_line(data: bytes | memoryview, limit: int = 1024) -> bool:
    """True when `data` starts with a line of printable ASCII text ended by a newline (an AEDAT header comment)."""
    head = bytes(data[:limit])
    end = head.find(b"\n")
    if end < 0:
        return False
    return all(32 <= c < 127 or c in (9, 13) for c in head[:end])


def _near_version_line(line: bytes) -> bytes | None:
    """The AEDAT version line that `line` differs from in one or two bytes (a damaged magic), else None."""
    for known in AEDAT_VERSION_LINES:
        if len(line) == len(known) and 0 < sum(a != b for a, b in zip(line, known, strict=True)) <= 2:
            return known
    return None


def read_events_with_info(
    path: str | os.PathLike, format: str | None = None, **options
) -> tuple[np.ndarray, EventFileInfo]:
    """Events [n] (`EVENT_DTYPE`, file order) and an `EventFileInfo` from one event file.

    `format` forces a reader (one of `FORMATS`) instead of detecting it; `options` go to that reader (e.g.
    ``layout="dvs128"|"davis"`` for AEDAT 2.0 files whose header names no chip, ``sensor_size=(w, h)``: the
    sensor the coordinates must fit when the file does not state its own size).
    """
    path = Path(path)
    if path.is_dir():
        raise EventFileError(path, "unknown", None, "is a directory, not an event file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such event file")
    return read_events_bytes(file_bytes(path), path, format=format, **options)


#: Files from this size on are mapped into memory instead of copied (`file_bytes`).
MAP_FROM_BYTES = 1 << 20


def file_bytes(path: Path) -> bytes | mmap.mmap:
    """The bytes of an event file: small files read, large ones mapped read-only (pages populated up front), so a
    reader decodes from the page cache without a copy of the file beside its event array. The map is released
    with its last reference; readers return arrays of their own, never views of it."""
    size = path.stat().st_size
    if size < MAP_FROM_BYTES or os.name != "posix":
        return path.read_bytes()
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                         prot=mmap.PROT_READ)


def read_events_bytes(
    data: bytes, path: str | os.PathLike = "<bytes>", format: str | None = None, **options
) -> tuple[np.ndarray, EventFileInfo]:
    """As `read_events_with_info` for the bytes of a file already in memory (e.g. a zip member); `path` is
    only used in messages (and, for AEDAT 4, to hand the bytes to the `aedat` decoder)."""
    fmt = format or detect_format(data, path)
    if fmt not in READERS:
        raise ValueError(f"unknown event format {fmt!r}; known: {', '.join(FORMATS)}")
    module, function = READERS[fmt]
    return getattr(importlib.import_module(module), function)(data, path, **options)


def read_events(path: str | os.PathLike, format: str | None = None, **options) -> np.ndarray:
    """Events [n] of one event-camera file as a structured array: `t` int64 µs, `x`, `y` int16, `p` int8 (1 ON).

    The format (ATIS 40-bit, AEDAT 2.0 / 3.1 / 4.0, Prophesee EVT 2.0 / 3.0 / DAT) is detected from the content.
    Use `read_events_with_info` for the sensor size and the count of skipped non-polarity records.
    """
    return read_events_with_info(path, format=format, **options)[0]
