"""jAER AEDAT 2.0 (and 1.0) files: ``#`` text header lines, then big-endian (address, timestamp) records.

Header: lines starting with ``#`` and ending in a line feed (``#!AER-DAT2.0``, ``# AEChip: <java class>``, the
chip's preferences as XML, ...). The data start at the first byte after the header that is not ``#``. AEDAT 2.0
records are a 32-bit address and a 32-bit timestamp (µs), both big-endian; AEDAT 1.0 (no version line) uses a 16-bit
address. Timestamps are unwrapped where the 32-bit counter wraps.

How an address is read depends on the chip (`layout`), taken from the ``AEChip`` header line:

* ``dvs128`` (DVS128, Tmpdiff128, eDVS): bit 0 polarity with raw 0 = ON (jAER's DVS128 extractor flips it),
  bits 1-7 x, bits 8-14 y; bit 15 or higher set = special (sync / external) event, skipped.
* ``davis`` (DAVIS240/346/640, ...): bit 31 set = APS pixel sample, or IMU sample when bits 10 and 11 are also
  set; bit 31 clear with bit 10 set = special (external input) event; otherwise a polarity event with y in bits
  22-30, x in bits 12-21 and polarity in bit 11 (1 = ON). APS, IMU and special records are skipped and counted.

When the header names no chip (e.g. files written by jAER's MATLAB ``saveaerdat.m``) the layout is inferred from
the addresses: any address above 16 bits means DAVIS. Coordinates are the address fields as stored; jAER's viewer
additionally mirrors x (x' = width - 1 - x) when displaying, which this reader does not do.

Checks (`spikedata.io.validate`): the version line must be exactly ``#!AER-DAT2.0`` (or 1.0), an all-zero payload
is refused, records none of which is a polarity event (e.g. a body of 0xFF bytes, which the DAVIS layout reads as
IMU samples) are refused, coordinates must lie inside the sensor the chip name gives (else the caller's
`sensor_size`), and time must be monotone within 1 ms after unwrapping.
"""

from __future__ import annotations

import os

import numpy as np

from spikedata.io.chips import chip_sensor_size
from spikedata.io.event_types import EVENT_DTYPE, EventFileError, EventFileInfo, skipped_info
from spikedata.io.validate import check_events, check_payload, check_sensor_size

FORMAT = "aedat2"
LAYOUTS = ("dvs128", "davis")


def parse_jaer_header(data: bytes, path: str | os.PathLike, fmt: str = FORMAT) -> tuple[int, list[str]]:
    """(offset of the first data byte, header lines without '#' and line end) of a jAER-style header.

    A header line must end in a line feed and be text; a '#' that starts binary data (the address of the first
    event can begin with byte 0x23) ends the header.
    """
    pos = 0
    lines: list[str] = []
    n = len(data)
    while pos < n and data[pos] == 0x23:  # '#'
        end = data.find(b"\n", pos)
        if end < 0:
            raise EventFileError(path, fmt, pos, "truncated header: the last header line has no line end")
        raw = data[pos + 1 : end].rstrip(b"\r")
        if not _is_text(raw):
            break
        lines.append(raw.decode("utf-8", errors="replace"))
        pos = end + 1
    return pos, lines


def _is_text(line: bytes) -> bool:
    return all(b >= 0x20 or b == 0x09 for b in line)


def _chip_from_header(lines: list[str]) -> str | None:
    for line in lines:
        text = line.strip()
        if text.startswith("AEChip:"):
            name = text[len("AEChip:") :].strip()
            return name.rsplit(".", 1)[-1] or None
    return None


def layout_for_chip(chip: str | None) -> str | None:
    """'dvs128' or 'davis' for a jAER chip class name, None when the name does not tell."""
    if not chip:
        return None
    name = chip.lower()
    if "davis" in name or "dvs240" in name or "scidvs" in name:
        return "davis"
    if "dvs128" in name or "tmpdiff128" in name or "edvs" in name:
        return "dvs128"
    return None


def read_aedat2(
    data: bytes, path: str | os.PathLike = "<bytes>", layout: str | None = None,
    sensor_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, EventFileInfo]:
    """Polarity events of an AEDAT 2.0 / 1.0 file's bytes and its info; `layout` overrides the chip's layout,
    `sensor_size` (width, height) bounds the coordinates when the header names no known chip."""
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    start, lines = parse_jaer_header(data, path)
    version = 1
    for line in lines:
        if line.startswith("!AER-DAT"):
            number = line[len("!AER-DAT") :].strip()
            if number not in ("1.0", "2.0"):
                raise EventFileError(path, FORMAT, 0, f"AEDAT version line {line!r} is not read by this reader "
                                     "(it reads '#!AER-DAT2.0' and '#!AER-DAT1.0')")
            version = int(number[0])
    fmt = f"aedat{version}"
    rec = 8 if version == 2 else 6
    n = (len(data) - start) // rec
    tail = len(data) - start - n * rec
    if tail:
        raise EventFileError(
            path, fmt, start + n * rec, f"truncated: the last {tail} byte(s) do not form a {rec}-byte record"
        )
    check_payload(data, start, path, fmt)
    dtype = np.dtype([("a", ">u4" if version == 2 else ">u2"), ("t", ">u4")])
    records = np.frombuffer(data, dtype=dtype, count=n, offset=start)
    addr = records["a"].astype(np.uint32)
    t = _unwrap32(records["t"].astype(np.int64))

    chip = _chip_from_header(lines)
    chosen = layout or (layout_for_chip(chip) if version == 2 else "dvs128")
    if chosen is None:
        chosen = "davis" if n and int(addr.max()) > 0xFFFF else "dvs128"
    if chosen == "davis":
        aps_or_imu = (addr & 0x80000000) != 0
        imu = (addr & 0x80000C00) == 0x80000C00
        special = ~aps_or_imu & ((addr & 0x400) != 0)
        polarity = ~aps_or_imu & ~special
        counts = {"aps": int((aps_or_imu & ~imu).sum()), "imu": int(imu.sum()), "special": int(special.sum())}
        a = addr[polarity]
        x, y, p = (a >> 12) & 0x3FF, (a >> 22) & 0x1FF, (a >> 11) & 1
    else:
        special = (addr >> 15) != 0
        polarity = ~special
        counts = {"special": int(special.sum())}
        a = addr[polarity]
        x, y, p = (a >> 1) & 0x7F, (a >> 8) & 0x7F, 1 - (a & 1)
    if n and not a.shape[0]:
        # jAER writes polarity events in every recording it makes; a record stream without a single one is a
        # damaged or filled body (e.g. all 0xFF), which would otherwise become an empty sample without a word
        kinds = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        raise EventFileError(path, fmt, start, f"none of its {n} records is a polarity event ({kinds}; {chosen} "
                             "layout): a damaged or filled body, not a recording")
    events = np.empty(a.shape[0], dtype=EVENT_DTYPE)
    events["t"] = t[polarity]
    events["x"] = x
    events["y"] = y
    events["p"] = p
    stated = chip_sensor_size(chip)
    bound = stated or (check_sensor_size(sensor_size, path, fmt) if sensor_size is not None else None)
    events, repairs = check_events(events, path, fmt, bound, offsets=start + rec * np.flatnonzero(polarity))
    total, by_type = skipped_info(counts)
    header = {"version": f"{version}.0"}
    if chip:
        header["chip"] = chip
    info = EventFileInfo(
        str(path), fmt, int(a.shape[0]), stated, total, by_type, chip, chosen, header, repairs
    )
    return events, info


def _unwrap32(t: np.ndarray) -> np.ndarray:
    """Add 2**32 after every place where the unsigned 32-bit timestamp counter wrapped (a drop of > 2**31)."""
    if t.shape[0] < 2:
        return t
    wraps = np.cumsum(np.diff(t) < -(1 << 31), dtype=np.int64)
    if wraps[-1] == 0:
        return t
    out = t.copy()
    out[1:] += wraps << 32
    return out
