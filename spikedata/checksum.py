"""File checksums: the one place spikedata hashes files (provenance in store attributes, manifest checks,
downloads)."""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Iterable
from pathlib import Path

from spikedata.errors import DatasetError

CHUNK = 1 << 20  # bytes read per update


def file_digests(path: str | os.PathLike, algorithms: Iterable[str] = ("sha256",),
                 decompress: bool = False) -> dict[str, str]:
    """Hex digests of a file's bytes (or of its gzip-decompressed bytes), every algorithm in one read.

    A gzip stream that is cut off or corrupt raises `DatasetError` naming the file and the reason."""
    hashes = {name: hashlib.new(name, usedforsecurity=False) for name in algorithms}
    if Path(path).is_dir():
        raise DatasetError(f"{path}: is a directory, not a file")
    try:
        with (gzip.open(path, "rb") if decompress else open(path, "rb")) as f:
            while block := f.read(CHUNK):
                for h in hashes.values():
                    h.update(block)
    except EOFError:
        raise DatasetError(f"{path}: truncated gzip stream (it ends before its end-of-stream marker)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DatasetError(f"{path}: corrupt gzip stream ({exc})") from None
    return {name: h.hexdigest() for name, h in hashes.items()}


def file_sha256(path: str | os.PathLike, decompress: bool = False) -> str:
    """sha256 hex digest of a file's bytes, or of its gzip-decompressed bytes."""
    return file_digests(path, ("sha256",), decompress)["sha256"]


def files_sha256(paths: Iterable[str | os.PathLike], root: str | os.PathLike | None = None) -> dict[str, str]:
    """`{name: sha256}` for the store's `source.files`: names relative to `root` (posix), or file names."""
    out = {}
    for p in paths:
        path = Path(root) / p if root is not None else Path(p)
        name = Path(p).as_posix() if root is not None else path.name
        out[name] = file_sha256(path)
    return out
