"""Integrity of a store: chunk digests, the chunk manifest of each split and the sha256 digests that bind them.

Integrity (format version 2): every chunk of every array ends in a crc32c of its encoded bytes (zarr's `crc32c`
codec: a truncated or bit-flipped chunk fails to decode), and every split carries a chunk manifest: the crc32c of
each chunk's decoded values, by array and chunk position. A missing chunk (zarr would return fill values), a chunk
swapped with another, or copied in from another split or store therefore no longer matches its manifest entry.
The manifest of each split and all root attributes are bound by sha256 digests in the root attributes. The
per-sample arrays (indptr, labels) are checked in full at open; each event chunk is checked at its first read, so
a damaged store raises `StoreError` (naming store, split, array and chunk) before any of its data is used.
`verify_store` re-derives everything (digests, order, ranges, content hash).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import google_crc32c
import numpy as np

from spikedata.store.format import CORE_ARRAYS, StoreError, is_int

if TYPE_CHECKING:
    import zarr

#: Digest of the chunk manifest: crc32c (Castagnoli) of a chunk's decoded values, little-endian, C order.
CHUNK_DIGEST = "crc32c"


def chunk_digest(values: np.ndarray) -> int:
    """crc32c of an array's values as stored (little-endian, C order): the chunk manifest's digest."""
    arr = np.ascontiguousarray(values)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and np.little_endian is False):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    view = arr.view()
    view.flags.writeable = False
    return int(google_crc32c.value(view.reshape(-1).view(np.uint8)))


def chunk_digests(values: np.ndarray, chunk: int) -> list[int]:
    """Manifest digests of `values` cut into chunks of `chunk` rows along axis 0."""
    return [chunk_digest(values[k : k + chunk]) for k in range(0, values.shape[0], chunk)]


def canonical_sha256(obj: Any) -> str:
    """sha256 of the canonical JSON of `obj` (sorted keys, no spaces): the attribute digests."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def digested_root_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """The root attributes the `integrity.attributes` digest covers: all but the digest table itself."""
    return {k: v for k, v in attrs.items() if k != "integrity"}


def chunk_manifest_of(where: str, attrs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The chunk manifest {array: entry} in a split's attributes `attrs`, checked for shape (StoreError naming
    `where` otherwise)."""
    integrity = attrs.get("integrity")
    if not isinstance(integrity, dict) or integrity.get("algorithm") != CHUNK_DIGEST:
        raise StoreError(f"{where}: no chunk manifest (attribute 'integrity' with algorithm {CHUNK_DIGEST!r})")
    arrays = integrity.get("arrays")
    extras = attrs.get("extras", [])
    if not isinstance(extras, list) or not all(isinstance(e, str) for e in extras):
        raise StoreError(f"{where}: attribute 'extras' must be a list of names, got {extras!r}")
    names = (*CORE_ARRAYS, *[f"extra/{e}" for e in extras])
    if not isinstance(arrays, dict) or any(name not in arrays for name in names):
        missing = [name for name in names if not isinstance(arrays, dict) or name not in arrays]
        raise StoreError(f"{where}: the chunk manifest has no entry for {missing}")
    for name in names:
        entry = arrays[name]
        if not (isinstance(entry, dict) and is_int(entry.get("chunk")) and entry["chunk"] > 0
                and isinstance(entry.get(CHUNK_DIGEST), list) and all(is_int(d) for d in entry[CHUNK_DIGEST])):
            raise StoreError(f"{where}: chunk manifest entry of {name!r} is malformed")
    return arrays


def chunk_manifest_entry(arr: zarr.Array, chunk: int, digests: list[int]) -> dict[str, Any]:
    """The manifest entry of a written array: dtype, shape, rows per chunk, fill value and chunk digests."""
    return {"dtype": str(arr.dtype), "shape": list(arr.shape), "chunk": int(chunk),
            "fill_value": int(arr.metadata.fill_value), CHUNK_DIGEST: [int(d) for d in digests]}
