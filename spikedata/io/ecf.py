"""Prophesee's ECF ("event compression format") codec, decoded in numba: the HDF5 filter 36559 (0x8ECF) that
Metavision puts on the ``/CD/events`` dataset of its ``.hdf5`` recordings. Written from the codec's published
description (Prophesee's open-source ``hdf5_ecf``); no package on PyPI provides it, and reading the raw chunks
(`h5py`'s chunk index) with this decoder needs no HDF5 filter plugin.

One compressed chunk holds at most 65,535 CD events (Metavision writes chunks of 16,384); all integers
little-endian:

* uint32 header: ``n << 2 | packed_yxp << 1 | packed_xp``;
* time: uint64 first time stamp, then bytes ``d << 4 | c``: time += d, then c events at that time (c = 15:
  the count follows as uint16); a byte with d = 15 instead starts a time jump: the low nibbles of the run of
  ``0xF?`` bytes are the jump's 4-bit digits, least significant first;
* then, when packed_yxp: groups of four 24-bit values ``y << 12 | x << 1 | p`` in three uint32 (the values
  are the words' bytes from the most significant end, Prophesee's bit order);
* else y as uint16 runs ``y << 5 | c`` (c = 31: the count follows as uint16), then either (packed_xp) groups
  of four 12-bit values ``x << 1 | p`` in three uint16, or x as uint16 ``x << 5 | mask`` (one event at x, one
  at x + j + 1 for each bit 4 - j set in the 5-bit mask) followed by polarity runs of bytes ``p << 7 | c``
  (c = 127: the count follows as uint16).

`decode_chunks` decodes every chunk straight into the `EVENT_DTYPE` records of the output, checking every read
against the chunk's end, so a damaged chunk is an error with its position, never a read outside the buffer.
Error codes: see `ERRORS`.
"""

from __future__ import annotations

import numba
import numpy as np

#: HDF5 filter id of ECF.
FILTER_ID = 0x8ECF
#: Most events one chunk can hold.
MAX_CHUNK_EVENTS = 65535
ERRORS = {1: "the chunk ends inside its time stamps", 2: "the chunk ends inside its y runs",
          3: "the chunk ends inside its x / polarity values", 4: "its header declares a different number of "
          "events than the dataset's chunk holds", 5: "the chunk ends inside its polarity runs",
          6: "a run covers more events than the chunk holds", 7: "the chunk is shorter than its header",
          8: "a time jump of more than 60 bits"}  # fmt: skip


@numba.njit(cache=True, nogil=True, inline="always")
def _u16(buf, i):  # pragma: no cover - numba
    return np.int64(buf[i]) | (np.int64(buf[i + 1]) << 8)


@numba.njit(cache=True, nogil=True, inline="always")
def _u32(buf, i):  # pragma: no cover - numba
    return _u16(buf, i) | (_u16(buf, i + 2) << 16)


@numba.njit(cache=True, nogil=True)
def _times(buf, pos, end, n, out, first):  # pragma: no cover - numba
    """Time stamps of one chunk into out[first:first + n].t; (next position, error)."""
    if pos + 8 > end:
        return pos, 1
    t = _u32(buf, pos) | (_u32(buf, pos + 4) << 32)
    pos += 8
    i = 0
    while i < n:
        if pos >= end:
            return pos, 1
        v = np.int64(buf[pos])
        d = v >> 4
        c = v & 15
        if d != 15:
            t += d
            if c == 15:
                if pos + 3 > end:
                    return pos, 1
                c = _u16(buf, pos + 1)
                pos += 2
            if i + c > n:
                return pos, 6
            for k in range(first + i, first + i + c):
                out[k].t = t
            i += c
            pos += 1
        else:
            jump = np.int64(0)
            j = 0
            while d == 15:
                if j >= 15:
                    return pos, 8
                jump |= c << (4 * j)
                j += 1
                pos += 1
                if pos >= end:
                    return pos, 1
                v = np.int64(buf[pos])
                d = v >> 4
                c = v & 15
            t += jump
    return pos, 0


@numba.njit(cache=True, nogil=True)
def _packed(buf, pos, end, n, out, first, wide):  # pragma: no cover - numba
    """Groups of four values packed in three words: 24-bit ``y << 12 | x << 1 | p`` in uint32 words (`wide`) or
    12-bit ``x << 1 | p`` in uint16 words; each value's bits are taken from the most significant end of the
    group. (next position, error)."""
    size = 4 if wide else 2
    q = 8 if wide else 4  # a quarter of a word
    groups = (n + 3) // 4
    if pos + 3 * size * groups > end:
        return pos, 3
    for g in range(groups):
        w0 = _u32(buf, pos) if wide else _u16(buf, pos)
        w1 = _u32(buf, pos + size) if wide else _u16(buf, pos + size)
        w2 = _u32(buf, pos + 2 * size) if wide else _u16(buf, pos + 2 * size)
        pos += 3 * size
        vals = (w0 >> q, (w0 & ((1 << q) - 1)) | ((w1 >> (2 * q)) << q),
                (w1 & ((1 << (2 * q)) - 1)) | ((w2 >> (3 * q)) << (2 * q)), w2 & ((1 << (3 * q)) - 1))
        for j in range(4):
            i = 4 * g + j
            if i < n:
                v = vals[j]
                if wide:
                    out[first + i].y = (v >> 12) & 0x7FF
                out[first + i].x = (v >> 1) & 0x7FF
                out[first + i].p = v & 1
    return pos, 0


@numba.njit(cache=True, nogil=True)
def _runs(buf, pos, end, n, out, first, polarity):  # pragma: no cover - numba
    """Run-length values: y as uint16 ``y << 5 | count`` or (`polarity`) p as bytes ``p << 7 | count``; the
    largest count (31 / 127) means the count follows as uint16. (next position, error)."""
    size = 1 if polarity else 2
    bits = 7 if polarity else 5
    full = (1 << bits) - 1
    short = 5 if polarity else 2
    i = 0
    while i < n:
        if pos + size > end:
            return pos, short
        v = np.int64(buf[pos]) if polarity else _u16(buf, pos)
        c = v & full
        if c == full:
            if pos + size + 2 > end:
                return pos, short
            c = _u16(buf, pos + size)
            pos += 2
        pos += size
        if i + c > n:
            return pos, 6
        value = v >> bits
        for k in range(first + i, first + i + c):
            if polarity:
                out[k].p = value
            else:
                out[k].y = value
        i += c
    return pos, 0


@numba.njit(cache=True, nogil=True)
def _masked_xs(buf, pos, end, n, out, first):  # pragma: no cover - numba
    i = 0
    while i < n:
        if pos + 2 > end:
            return pos, 3
        v = _u16(buf, pos)
        pos += 2
        x = v >> 5
        out[first + i].x = x
        i += 1
        for j in range(5):
            if (v >> (4 - j)) & 1:
                if i < n:  # the encoder may set bits past the chunk's last event: ignored, as the codec does
                    out[first + i].x = x + j + 1
                i += 1
    return pos, 0


@numba.njit(cache=True, nogil=True)
def decode_chunk(buf, pos, end, n, out, first):  # pragma: no cover - numba
    """Decode the chunk buf[pos:end] holding `n` events into out[first:first + n]; (error code, position)."""
    if pos + 4 > end:
        return 7, pos
    head = _u32(buf, pos)
    if (head >> 2) != n:
        return 4, pos
    packed_yxp = (head >> 1) & 1
    packed_xp = head & 1
    pos, err = _times(buf, pos + 4, end, n, out, first)
    if err:
        return err, pos
    if packed_yxp:
        pos, err = _packed(buf, pos, end, n, out, first, True)
    else:
        pos, err = _runs(buf, pos, end, n, out, first, False)
        if not err:
            if packed_xp:
                pos, err = _packed(buf, pos, end, n, out, first, False)
            else:
                pos, err = _masked_xs(buf, pos, end, n, out, first)
                if not err:
                    pos, err = _runs(buf, pos, end, n, out, first, True)
    return err, pos


@numba.njit(cache=True, nogil=True)
def decode_chunks(buf, offsets, sizes, counts, raw, out):  # pragma: no cover - numba
    """Decode chunk k (buf[offsets[k]:offsets[k] + sizes[k]], counts[k] events) in order into `out`;
    `raw[k]` marks a chunk stored without the filter (16-byte records x u2, y u2, p i2, t i8). Returns (failed
    chunk or -1, error code, byte position)."""
    first = 0
    for k in range(offsets.shape[0]):
        pos = offsets[k]
        end = pos + sizes[k]
        n = counts[k]
        if raw[k]:
            if sizes[k] < 16 * n:
                return k, 7, pos
            for i in range(n):
                r = pos + 16 * i
                out[first + i].x = _u16(buf, r)
                out[first + i].y = _u16(buf, r + 2)
                out[first + i].p = _u16(buf, r + 4)
                out[first + i].t = _u32(buf, r + 8) | (_u32(buf, r + 12) << 32)
        else:
            err, where = decode_chunk(buf, pos, end, n, out, first)
            if err:
                return k, err, where
        first += n
    return -1, 0, 0
