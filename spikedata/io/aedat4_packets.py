"""AEDAT 4.0 packets decoded in one pass into the event array: LZ4 frames decompressed in numba (zstd through the
`zstandard` package, one packet at a time), the size-prefixed flatbuffers walked in numba, the polarity events
written straight into `EVENT_DTYPE` records. Memory: the event array plus one decompressed packet.

A DV packet decompresses to a size-prefixed flatbuffer: uint32 size, uint32 root table offset, the file
identifier (``EVTS``, ``IMUS``, ``TRIG``, ...), the table, and its field 0: a vector of element structs. An event
is 16 bytes: int64 t (µs), int16 x, int16 y, bool polarity, 3 padding bytes. Every offset is checked against the
packet before it is followed (a damaged packet is an error code, never a read outside the buffer).

Two passes over the packets: the first decompresses only each packet's first bytes (the vector's length sits
right after the table) to size the event array exactly, the second decompresses each event packet whole and
copies its events.
"""

from __future__ import annotations

import numba
import numpy as np

#: Error codes of the kernels -> message.
ERRORS = {1: "not an LZ4 frame", 2: "corrupt LZ4 frame descriptor", 3: "LZ4 block runs past the packet",
          4: "corrupt LZ4 block (a literal or match runs past its buffer)", 5: "LZ4 match before the start",
          6: "corrupt flatbuffer (an offset outside the packet)", 7: "the packet holds more events than counted",
          8: "the decompressed packet is larger than its frame declares"}  # fmt: skip
#: Decompressed bytes the counting pass needs (size prefix, root offset, identifier, table, vector length).
HEAD_BYTES = 256


@numba.njit(cache=True, nogil=True, inline="always")
def _u32(buf, i):  # pragma: no cover - numba
    return np.int64(buf[i]) | (np.int64(buf[i + 1]) << 8) | (np.int64(buf[i + 2]) << 16) | (np.int64(buf[i + 3]) << 24)


@numba.njit(cache=True, nogil=True)
def lz4_frames(src, pos, end, dst, limit):  # pragma: no cover - numba
    """Decompress the LZ4 frame(s) of src[pos:end] into dst, stopping once `limit` bytes are out (the counting
    pass); (bytes written, error)."""
    o = 0
    cap = min(dst.shape[0], limit)
    while pos < end and o < limit:
        if end - pos < 7 or _u32(src, pos) != 0x184D2204:
            return o, 1
        flg = np.int64(src[pos + 4])
        if (flg >> 6) != 1:
            return o, 2
        pos += 6 + (8 if flg & 0x08 else 0) + (4 if flg & 0x01 else 0) + 1
        block_checksum = (flg & 0x10) != 0
        while o < limit:
            if pos + 4 > end:
                return o, 3
            size = _u32(src, pos)
            pos += 4
            if size == 0:
                pos += 4 if flg & 0x04 else 0
                break
            n = size & 0x7FFFFFFF
            if pos + n > end:
                return o, 3
            if size & 0x80000000:  # stored uncompressed
                k = min(n, cap - o)
                dst[o : o + k] = src[pos : pos + k]
                o += k
                if k < n and o < limit:
                    return o, 8
            else:
                o, err = _lz4_block(src, pos, pos + n, dst, o, cap, limit)
                if err:
                    return o, err
            pos += n + (4 if block_checksum else 0)
    return o, 0


@numba.njit(cache=True, nogil=True)
def _lz4_block(src, i, end, dst, o, cap, limit):  # pragma: no cover - numba
    """One LZ4 block src[i:end] appended to dst at o (matches may reach into earlier blocks of the frame)."""
    while i < end:
        token = np.int64(src[i])
        i += 1
        lit = token >> 4
        if lit == 15:
            while True:
                if i >= end:
                    return o, 4
                b = np.int64(src[i])
                i += 1
                lit += b
                if b != 255:
                    break
        if i + lit > end:
            return o, 4
        if o + lit > cap:
            if o >= limit or cap >= limit:
                k = min(lit, cap - o)
                dst[o : o + k] = src[i : i + k]
                return o + k, 0 if cap >= limit else 8
            return o, 8
        for k in range(lit):
            dst[o + k] = src[i + k]
        o += lit
        i += lit
        if i >= end:
            break  # the last sequence holds only literals
        if i + 2 > end:
            return o, 4
        offset = np.int64(src[i]) | (np.int64(src[i + 1]) << 8)
        i += 2
        if offset == 0 or offset > o:
            return o, 5
        match = (token & 15) + 4
        if (token & 15) == 15:
            while True:
                if i >= end:
                    return o, 4
                b = np.int64(src[i])
                i += 1
                match += b
                if b != 255:
                    break
        if o + match > cap:
            if cap >= limit:
                match = cap - o
            else:
                return o, 8
        s = o - offset
        if offset >= 8:  # no overlap within 8 bytes: copy words
            k = 0
            while k + 8 <= match:
                for j in range(8):
                    dst[o + k + j] = dst[s + k + j]
                k += 8
            for j in range(k, match):
                dst[o + j] = dst[s + j]
        else:
            for k in range(match):
                dst[o + k] = dst[s + k]
        o += match
        if o >= limit:
            return o, 0
    return o, 0


@numba.njit(cache=True, nogil=True)
def element_vector(buf, n):  # pragma: no cover - numba
    """(position of the first element, element count) of the size-prefixed flatbuffer buf[:n], or (-1, error)."""
    if n < 12:
        return -1, 6
    root = 4 + _u32(buf, 4)
    if root + 4 > n:
        return -1, 6
    vtable = root - (_u32(buf, root) if _u32(buf, root) < 0x80000000 else _u32(buf, root) - 0x100000000)
    if vtable < 4 or vtable + 6 > n:
        return -1, 6
    vt_size = np.int64(buf[vtable]) | (np.int64(buf[vtable + 1]) << 8)
    if vt_size < 6:
        return -1, 0  # no field 0: an empty packet
    field = np.int64(buf[vtable + 4]) | (np.int64(buf[vtable + 5]) << 8)
    if field == 0:
        return -1, 0
    at = root + field
    if at + 4 > n:
        return -1, 6
    vec = at + _u32(buf, at)
    if vec + 4 > n:
        return -1, 6
    return vec + 4, _u32(buf, vec)


@numba.njit(cache=True, nogil=True)
def copy_events(buf, n, first, count, out, k):  # pragma: no cover - numba
    """Copy `count` 16-byte events from buf[first:] (n bytes valid) to out[k:]; error code."""
    if first < 0 or first + 16 * count > n or k + count > out.shape[0]:
        return 6 if k + count <= out.shape[0] else 7
    for j in range(count):
        e = first + 16 * j
        t = _u32(buf, e) | (_u32(buf, e + 4) << 32)
        out[k + j].t = t
        out[k + j].x = np.int16(np.int64(buf[e + 8]) | (np.int64(buf[e + 9]) << 8))
        out[k + j].y = np.int16(np.int64(buf[e + 10]) | (np.int64(buf[e + 11]) << 8))
        out[k + j].p = buf[e + 12]
    return 0


@numba.njit(cache=True, nogil=True)
def count_lz4(src, starts, ends, scratch):  # pragma: no cover - numba
    """Element count of every LZ4 packet (first bytes only); (counts, failed packet or -1, error)."""
    counts = np.zeros(starts.shape[0], np.int64)
    for p in range(starts.shape[0]):
        got, err = lz4_frames(src, starts[p], ends[p], scratch, HEAD_BYTES)
        if err:
            return counts, p, err
        first, c = element_vector(scratch, got)
        if first < 0 and c:
            return counts, p, c
        counts[p] = c if first >= 0 else 0
    return counts, -1, 0


@numba.njit(cache=True, nogil=True)
def decode_lz4(src, starts, ends, scratch, out):  # pragma: no cover - numba
    """Decompress every event packet whole and copy its events to `out` in order; (events, failed packet or -1,
    error)."""
    k = 0
    for p in range(starts.shape[0]):
        got, err = lz4_frames(src, starts[p], ends[p], scratch, scratch.shape[0])
        if err:
            return k, p, err
        first, c = element_vector(scratch, got)
        if first < 0:
            if c:
                return k, p, c
            continue
        err = copy_events(scratch, got, first, c, out, k)
        if err:
            return k, p, err
        k += c
    return k, -1, 0
