"""AEDAT 4.0 packets decoded in one pass into the event array: LZ4 frames walked in numba (zstd through the
`zstandard` package, one packet at a time), the size-prefixed flatbuffers walked in numba, the polarity events
written straight into `EVENT_DTYPE` records. Memory: the event array plus one decompressed packet.

LZ4 blocks are decompressed by liblz4 (the C library inside the `lz4` package, called from numba through
LLVM symbols, see `_liblz4`); the frames around them are walked here.

A DV packet decompresses to a size-prefixed flatbuffer: uint32 size, uint32 root table offset, the file
identifier (``EVTS``, ``IMUS``, ``TRIG``, ...), the table, and its field 0: a vector of element structs. An event
is 16 bytes: int64 t (µs), int16 x, int16 y, bool polarity, 3 padding bytes. Every offset is checked against the
packet before it is followed (a damaged packet is an error code, never a read outside the buffer).

The event array is sized before anything is decoded: for LZ4 (and uncompressed) packets by a first pass that
decompresses only each packet's first bytes (the vector's length sits right after the table); for zstd from the
content size each frame header states (an upper bound by a couple of events a packet, trimmed afterwards), so
zstd packets are decompressed once. Then each event packet is decompressed whole and its events copied.
"""

from __future__ import annotations

import ctypes
import importlib.util

import llvmlite.binding as llvm
import numba
import numpy as np
from numba import types

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


def _liblz4():
    """liblz4's safe block decoders, as the `lz4` package's extension exports them, made callable from cached
    numba code: the addresses are registered with LLVM under the C names (again in every process, before a cached
    kernel is loaded), and the kernels call them by name. Pointers travel as intp (the same registers)."""
    lib = ctypes.CDLL(importlib.util.find_spec("lz4.block._block").origin)
    for name in ("LZ4_decompress_safe_usingDict", "LZ4_decompress_safe_partial_usingDict"):
        llvm.add_symbol(name, ctypes.cast(getattr(lib, name), ctypes.c_void_p).value)
    i32, ptr = types.int32, types.intp
    return (types.ExternalFunction("LZ4_decompress_safe_usingDict", i32(ptr, ptr, i32, i32, ptr, i32)),
            types.ExternalFunction("LZ4_decompress_safe_partial_usingDict", i32(ptr, ptr, i32, i32, i32, ptr, i32)))


_LZ4_FULL, _LZ4_PARTIAL = _liblz4()


@numba.njit(cache=True, nogil=True)
def lz4_frames(src, pos, end, dst, limit):  # pragma: no cover - numba
    """Decompress the LZ4 frame(s) of src[pos:end] into dst with liblz4 (each block may refer to the frame's
    earlier output), stopping once `limit` bytes are out (the counting pass); (bytes written, error)."""
    o = 0
    cap = dst.shape[0]
    base_src = src.ctypes.data
    base_dst = dst.ctypes.data
    while pos < end and o < limit:
        if end - pos < 7 or _u32(src, pos) != 0x184D2204:
            return o, 1
        flg = np.int64(src[pos + 4])
        if (flg >> 6) != 1:
            return o, 2
        pos += 6 + (8 if flg & 0x08 else 0) + (4 if flg & 0x01 else 0) + 1
        block_checksum = (flg & 0x10) != 0
        frame_start = o
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
                if o + n > cap:
                    return o, 8
                dst[o : o + n] = src[pos : pos + n]
                o += n
            else:
                if limit < cap:
                    r = _LZ4_PARTIAL(base_src + pos, base_dst + o, n, min(limit, cap) - o, cap - o,
                                     base_dst + frame_start, o - frame_start)
                else:
                    r = _LZ4_FULL(base_src + pos, base_dst + o, n, cap - o, base_dst + frame_start, o - frame_start)
                if r < 0:
                    return o, 4
                o += r
            pos += n + (4 if block_checksum else 0)
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
