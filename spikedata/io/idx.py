"""IDX files (the MNIST / EMNIST container), gzipped or raw, detected from content.

An IDX file is a big-endian header -- two zero bytes, a type code, the number of dimensions `ndim`, then `ndim`
uint32 sizes -- followed by the array in C order. MNIST images are `idx3` uint8 [n, 28, 28], labels `idx1` uint8
[n]. EMNIST uses the same container but stores every image transposed (column-major); see `transpose_images`.

Resources are bounded by the header: it is read (from the first decompressed bytes of a gzip stream) before the
body; the declared size must be possible for the file (a raw file holds exactly header + data bytes; deflate
expands at most `MAX_DEFLATE_RATIO`-fold, so a 2 MB gzip cannot hold 1.6 TB of images), must fit in memory
(`spikedata.resources`), and decompression stops at the declared size (one byte more is an error), so a
decompression bomb is refused before it is expanded.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikedata.errors import SpikedataError
from spikedata.resources import ResourceError, format_bytes, require_memory

#: IDX type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
#: Largest expansion of deflate (each 258-byte match costs at least 2 bits): ~1032:1.
MAX_DEFLATE_RATIO = 1032
_READ = 1 << 20


class IdxError(SpikedataError, ValueError):
    """An IDX file is malformed: wrong magic number, unknown type, truncated or with trailing data."""


@dataclass(frozen=True)
class IdxHeader:
    """Parsed IDX header: element dtype, array shape and header length in bytes."""

    dtype: np.dtype
    shape: tuple[int, ...]
    header_bytes: int

    @property
    def shape_text(self) -> str:
        """The shape for messages: a corrupt header's hundreds of dimensions abbreviated."""
        dims = list(self.shape)
        if len(dims) <= 6:
            return str(dims)
        return f"[{', '.join(map(str, dims[:4]))}, ... ({len(dims)} dimensions)]"

    @property
    def data_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize  # Python ints: no overflow for any header


def read_idx_bytes(path: str | os.PathLike) -> bytes:
    """The (decompressed) bytes of an IDX file, header first, bounded as the module docstring says; gzip is
    detected from the content, not the name."""
    path = Path(path)
    if path.is_dir():
        raise IdxError(f"{path}: is a directory, not an IDX file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such IDX file")
    with open(path, "rb") as f:
        if f.read(2) != _GZIP_MAGIC:
            f.seek(0)
            return _read_raw(f, path)
        f.seek(0)
        return _read_gzip(f, path, path.stat().st_size)


def _check_size(header: IdxHeader, path: Path, limit: int | None, what: str) -> None:
    if any(d == 0 for d in header.shape):
        raise IdxError(f"{path}: header declares shape {header.shape_text}: no data")
    if limit is not None and header.data_bytes > limit:
        raise IdxError(f"{path}: header declares shape {header.shape_text} ({format_bytes(header.data_bytes)}), "
                       f"but {what}")
    try:
        require_memory(header.header_bytes + 2 * header.data_bytes,
                       f"{path}: shape {header.shape_text} ({format_bytes(header.data_bytes)} of data)")
    except ResourceError as exc:
        raise IdxError(str(exc)) from None


def _check_body(header: IdxHeader, body: int, path: Path | str) -> None:
    """The `body` bytes after the header hold exactly the declared array."""
    if body < header.data_bytes:
        raise IdxError(
            f"{path}: truncated: header declares shape {header.shape_text} ({header.data_bytes} data bytes) "
            f"but only {body} bytes follow the header"
        )
    if body > header.data_bytes:
        raise IdxError(
            f"{path}: {body - header.data_bytes} unexpected bytes after the {header.data_bytes} data bytes of "
            f"shape {header.shape_text}"
        )


def _read_raw(f, path: Path) -> bytes:
    size = os.fstat(f.fileno()).st_size
    head = f.read(4 + 4 * 255)
    header = parse_idx_header(head, str(path))
    body = size - header.header_bytes
    _check_body(header, body, path)
    _check_size(header, path, None, "")
    f.seek(0)
    return f.read()


def _read_gzip(f, path: Path, compressed: int) -> bytes:
    """Decompress a gzip stream (members concatenated), header first, never more than the declared size + 1."""
    out = bytearray()
    header: IdxHeader | None = None
    limit = 4  # decompressed bytes wanted so far: the fixed header part, then the dimensions, then the data
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    feed = b""
    try:
        while True:
            want = limit + 1 - len(out)
            got = d.decompress(feed, want) if not d.eof else b""  # an empty feed flushes pending output
            feed = b"" if d.eof else d.unconsumed_tail  # after the end of a member the rest is in unused_data
            if not got and not feed:
                if d.eof:
                    rest = d.unused_data or f.read(_READ)
                    if not rest:
                        break
                    if not rest.startswith(_GZIP_MAGIC):
                        raise IdxError(f"{path}: non-gzip bytes after the gzip stream")
                    d, feed = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS), rest  # another gzip member
                    continue
                feed = f.read(_READ)
                if not feed:
                    break
                continue
            out += got
            if header is None and len(out) >= 4:
                dims = 4 + 4 * out[3]
                if len(out) >= dims:
                    header = parse_idx_header(bytes(out), str(path))
                    ceiling = MAX_DEFLATE_RATIO * compressed
                    _check_size(header, path, ceiling, f"a gzip file of {format_bytes(compressed)} expands to at "
                                f"most {format_bytes(ceiling)}: the header is corrupt")
                    limit = header.header_bytes + header.data_bytes
                else:
                    limit = dims
            if header is not None and len(out) > limit:
                raise IdxError(f"{path}: more data than the {header.data_bytes} bytes of shape "
                               f"{header.shape_text} (unexpected bytes after the data)")
    except zlib.error as exc:
        raise IdxError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc
    if not d.eof:
        raise IdxError(f"{path}: corrupt or truncated gzip stream (it ends after {len(out)} decompressed bytes)")
    return bytes(out)


def parse_idx_header(data: bytes, where: str = "<bytes>") -> IdxHeader:
    """Parse and check the header at the start of `data` (decompressed IDX bytes)."""
    if len(data) < 4:
        raise IdxError(f"{where}: {len(data)} bytes is too short for an IDX header (need at least 4)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise IdxError(
            f"{where}: wrong magic number 0x{data[0]:02x}{data[1]:02x}{data[2]:02x}{data[3]:02x}; an IDX file "
            "starts with two zero bytes, a type code and the number of dimensions (e.g. 0x00000803 for images)"
        )
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise IdxError(f"{where}: unknown IDX type code 0x{code:02x} (known: {known})")
    if ndim == 0:
        raise IdxError(f"{where}: IDX header declares 0 dimensions")
    header_bytes = 4 + 4 * ndim
    if len(data) < header_bytes:
        raise IdxError(f"{where}: truncated header: {ndim} dimensions need {header_bytes} bytes, file has {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header_bytes])
    return IdxHeader(IDX_DTYPES[code], tuple(int(s) for s in shape), header_bytes)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or raw) into a native-endian array of the declared shape.

    Raises :class:`IdxError` naming the file on a wrong magic number, an unknown type code, a size the file
    cannot hold or memory cannot fit, data shorter than the header declares (truncated) or longer (trailing
    bytes), and a corrupt gzip stream.
    """
    data = read_idx_bytes(path)
    header = parse_idx_header(data, str(path))
    body = len(data) - header.header_bytes
    _check_body(header, body, path)
    arr = np.frombuffer(data, dtype=header.dtype, count=math.prod(header.shape), offset=header.header_bytes)
    return arr.reshape(header.shape).astype(header.dtype.newbyteorder("="), copy=True)


def transpose_images(images: np.ndarray) -> np.ndarray:
    """Swap the two image axes of [n, H, W] (EMNIST's IDX images are stored transposed)."""
    if images.ndim != 3:
        raise ValueError(f"expected images [n, H, W], got shape {images.shape}")
    return np.ascontiguousarray(images.transpose(0, 2, 1))


def read_emnist_mapping(path: str | os.PathLike) -> dict[int, str]:
    """Class names by label from an EMNIST `*-mapping.txt` file (lines `label ascii_code [ascii_code ...]`).

    The name is the character(s) of the code(s): "A" for `10 65`, "Aa" for EMNIST-letters' `1 65 97`. Labels must
    be consecutive integers (EMNIST letters start at 1, the other variants at 0).
    """
    path = Path(path)
    names: dict[int, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            label, codes = int(parts[0]), [int(c) for c in parts[1:]]
            if not codes:
                raise ValueError
            name = "".join(chr(c) for c in codes)
        except (ValueError, OverflowError):
            raise IdxError(f"{path}:{lineno}: expected 'label ascii_code [ascii_code ...]', got {line!r}") from None
        if label in names:
            raise IdxError(f"{path}:{lineno}: label {label} appears twice")
        names[label] = name
    if not names:
        raise IdxError(f"{path}: empty mapping file")
    first = min(names)
    if sorted(names) != list(range(first, first + len(names))):
        raise IdxError(f"{path}: labels must be consecutive integers, got {sorted(names)}")
    return names
