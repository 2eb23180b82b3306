"""IDX files (the MNIST / EMNIST container), gzipped or raw, detected from content.

An IDX file is a big-endian header -- two zero bytes, a type code, the number of dimensions `ndim`, then `ndim`
uint32 sizes -- followed by the array in C order. MNIST images are `idx3` uint8 [n, 28, 28], labels `idx1` uint8
[n]. EMNIST uses the same container but stores every image transposed (column-major); see `transpose_images`.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikedata.errors import SpikedataError

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


class IdxError(SpikedataError, ValueError):
    """An IDX file is malformed: wrong magic number, unknown type, truncated or with trailing data."""


@dataclass(frozen=True)
class IdxHeader:
    """Parsed IDX header: element dtype, array shape and header length in bytes."""

    dtype: np.dtype
    shape: tuple[int, ...]
    header_bytes: int

    @property
    def data_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def read_idx_bytes(path: str | os.PathLike) -> bytes:
    """The (decompressed) bytes of an IDX file; gzip is detected from the content, not the name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such IDX file")
    data = path.read_bytes()
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as exc:
        # EOFError: compressed stream cut short; BadGzipFile (an OSError) / zlib.error: corrupt stream or CRC.
        raise IdxError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc


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

    Raises :class:`IdxError` naming the file on a wrong magic number, an unknown type code, data shorter than the
    header declares (truncated) or longer (trailing bytes).
    """
    data = read_idx_bytes(path)
    header = parse_idx_header(data, str(path))
    body = len(data) - header.header_bytes
    if body < header.data_bytes:
        raise IdxError(
            f"{path}: truncated: header declares shape {list(header.shape)} ({header.data_bytes} data bytes) "
            f"but only {body} bytes follow the header"
        )
    if body > header.data_bytes:
        raise IdxError(
            f"{path}: {body - header.data_bytes} unexpected bytes after the {header.data_bytes} data bytes of "
            f"shape {list(header.shape)}"
        )
    arr = np.frombuffer(data, dtype=header.dtype, count=int(np.prod(header.shape)), offset=header.header_bytes)
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
