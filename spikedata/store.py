"""The Zarr v3 spike store: the one on-disk contract between `spikedata` and `hm2bp` (format: `docs/store.md`).

Layout::

    STORE/               root group; attributes: format, format_version, dataset, encoder {name, params},
                         n_units, unit_shape, n_steps, dt_us, classes, seed, source, created_by, splits,
                         split_sha256, integrity {attributes, splits}
      <split>/           one group per split ("train", "test", ...); attributes: n_samples, n_events,
                         content_sha256, encode_stats, extras, class_counts, integrity {chunk manifest}
        indptr  int64  [n_samples + 1]   events of sample i are [indptr[i], indptr[i+1])
        times   uint16|uint32 [n_events] time step (steps of dt_us µs), sorted within a sample
        units   uint16|uint32 [n_events] flat unit index, sorted within a time step
        labels  int16  [n_samples]
        extra/<name>     optional per-sample arrays, first axis n_samples

Integrity (format version 2): every chunk of every array ends in a crc32c of its encoded bytes (zarr's `crc32c`
codec: a truncated or bit-flipped chunk fails to decode), and every split carries a chunk manifest: the crc32c of
each chunk's decoded values, by array and chunk position. A missing chunk (zarr would return fill values), a chunk
swapped with another, or copied in from another split or store therefore no longer matches its manifest entry.
The manifest of each split and all root attributes are bound by sha256 digests in the root attributes. The
per-sample arrays (indptr, labels) are checked in full at open; each event chunk is checked at its first read, so
a damaged store raises `StoreError` (naming store, split, array and chunk) before any of its data is used.
`verify_store` re-derives everything (digests, order, ranges, content hash).

Stores are written by :class:`StoreWriter` under an exclusive lock into a hidden temporary sibling and swapped
into place only after the content has been re-read and verified, so an interrupted encode never leaves anything
`open_store` accepts, and `overwrite` never leaves the path without a store.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google_crc32c
import numba
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle, Crc32cCodec

from spikedata.durable import fsync_dir
from spikedata.errors import SpikedataError
from spikedata.locking import PathLock
from spikedata.raster import scatter_dense

FORMAT = "spikedata.store"
FORMAT_VERSION = 2
#: What each format version added (for the message an older store gets).
VERSION_HISTORY = {1: "no chunk checksums or chunk manifest", 2: "crc32c per chunk, chunk manifest, attribute digests"}

#: Events per chunk of `times`/`units`: 2^18 (~40 MNIST samples at T = 400, ~280 kB compressed); chosen by
#: `benchmarks/bench_store.py`, figures in docs/store.md.
EVENT_CHUNK = 1 << 18
#: Samples per chunk of the per-sample arrays.
SAMPLE_CHUNK = 1 << 16
#: Digest of the chunk manifest: crc32c (Castagnoli) of a chunk's decoded values, little-endian, C order.
CHUNK_DIGEST = "crc32c"

_REQUIRED_ROOT = ("dataset", "encoder", "n_units", "unit_shape", "n_steps", "dt_us", "classes", "seed", "source")
_EVENT_CODECS = [BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.shuffle)]
_SAMPLE_CODECS = [BloscCodec(cname="zstd", clevel=5, shuffle=BloscShuffle.shuffle)]
_CORE = ("indptr", "times", "units", "labels")


class StoreError(SpikedataError, ValueError):
    """A store is missing, incomplete, damaged, from another format version, or violates an invariant."""


@dataclass(frozen=True)
class EventBlock:
    """Events of a contiguous range of k samples, in CSR form: what an encoder produces and a read returns.

    `indptr` int64 [k + 1] (starting at 0) indexes `times` (steps) and `units` (flat unit index), sorted by
    (time, unit) within each sample; `labels` [k]; `extras` per-sample arrays [k, ...]; `stats` additive counters
    of the encoder (e.g. collapsed events), summed per split by the writer.
    """

    indptr: np.ndarray
    times: np.ndarray
    units: np.ndarray
    labels: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


def index_dtype(limit: int) -> np.dtype:
    """Smallest unsigned dtype (uint16 or uint32) that holds values in [0, limit)."""
    return np.dtype(np.uint16) if limit <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def fill_value_for(name: str, dtype: np.dtype) -> int:
    """Fill value of an array: one that no valid store holds (max of the dtype for times/units, -1 for indptr,
    labels and categorical codes), so that even without the manifest a missing chunk reads as invalid data."""
    dtype = np.dtype(dtype)
    if name in ("times", "units"):
        return int(np.iinfo(dtype).max)
    if dtype.kind == "i":
        return -1
    return 0


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


# --------------------------------------------------------------------------------------------------------------
# Reading


class _Checked:
    """One array of a split with its manifest entry: chunked reads that verify every chunk at its first read."""

    def __init__(self, split: Split, name: str, array: zarr.Array, entry: dict[str, Any]):
        self.split, self.name, self.array = split, name, array
        self.chunk = int(entry["chunk"])
        self.digests = np.asarray(entry[CHUNK_DIGEST], dtype=np.int64)
        self.length = int(array.shape[0])
        self.verified = np.zeros(len(self.digests), dtype=np.bool_)
        self._tail: tuple[int, np.ndarray] | None = None  # (index, values) of the last chunk decoded

    def where(self, k: int) -> str:
        lo, hi = k * self.chunk, min((k + 1) * self.chunk, self.length)
        return (f"{self.split.where}, array {self.name!r}, chunk {k} (rows [{lo}, {hi}), file "
                f"{self.split.name}/{self.name}/c/{k}{'/0' * (self.array.ndim - 1)})")

    def _chunk_file(self, k: int) -> Path | None:
        root = self.split.store.path
        if not isinstance(root, Path):
            return None
        return root / self.split.name / self.name / "c" / "/".join([str(k)] + ["0"] * (self.array.ndim - 1))

    def _raw(self, lo: int, hi: int) -> np.ndarray:
        try:
            return self.array[lo:hi]
        except Exception as exc:  # zarr/numcodecs raise many types for a chunk that does not decode
            k0, k1 = lo // self.chunk, -(-hi // self.chunk)
            for k in range(k0, k1):  # name the chunk that fails
                try:
                    self.array[k * self.chunk : min((k + 1) * self.chunk, self.length)]
                except Exception as exc_k:  # noqa: BLE001
                    raise StoreError(f"{self.where(k)}: cannot be decoded ({type(exc_k).__name__}: {exc_k}); "
                                     "the chunk is truncated or corrupt: re-encode the store or restore it from a "
                                     "copy") from exc_k
            raise StoreError(f"{self.split.where}, array {self.name!r}: cannot read rows [{lo}, {hi}) "
                             f"({type(exc).__name__}: {exc})") from exc

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Rows [lo, hi), every chunk they touch verified against the manifest (once per chunk and process).

        Whole chunks are decoded (zarr decodes whole chunks anyway); the last one is kept, read-only, so that the
        next read of a streaming pass, which starts in it, does not decode it a second time.
        """
        if hi <= lo:
            return self.array[0:0] if self.length else np.zeros((0, *self.array.shape[1:]), self.array.dtype)
        k0, k1 = lo // self.chunk, -(-hi // self.chunk)
        base = k0 * self.chunk
        tail = self._tail
        first = k0 + 1 if tail is not None and tail[0] == k0 else k0
        if first == k1:
            return tail[1][lo - base : hi - base].copy()  # callers get writable arrays, as from zarr
        a0, a1 = first * self.chunk, min(k1 * self.chunk, self.length)
        data = self._raw(a0, a1)
        for k in range(first, k1):
            if self.verified[k]:
                continue
            part = data[k * self.chunk - a0 : min((k + 1) * self.chunk, self.length) - a0]
            got = chunk_digest(part)
            if got != self.digests[k]:
                path = self._chunk_file(k)
                state = "is missing" if path is not None and not path.exists() else "does not match the manifest"
                raise StoreError(f"{self.where(k)} {state} ({CHUNK_DIGEST} 0x{got:08x}, manifest 0x"
                                 f"{int(self.digests[k]):08x}): the chunk was deleted, replaced, swapped or "
                                 "corrupted; re-encode the store or restore it from a copy")
            self.split._check_chunk(self.name, part, k, self)
            self.verified[k] = True
        last = data[(k1 - 1) * self.chunk - a0 :].copy()
        last.flags.writeable = False
        self._tail = (k1 - 1, last)
        if first != k0:
            data = np.concatenate([tail[1], data])
        return data[lo - base : hi - base]


class Split:
    """One split of a store, validated at open. Reads are lazy; `labels` and `indptr` are loaded (and verified)
    once; every event chunk is verified at its first read."""

    def __init__(self, store: SpikeStore, name: str, group: zarr.Group):
        self.store = self._store = store
        self.name = name
        self.where = f"{store.path}: split {name!r}"
        self._group = group
        self.attrs: dict[str, Any] = dict(group.attrs)
        self.extra_names: list[str] = list(self.attrs.get("extras", []))
        manifest = _split_manifest(self.where, self.attrs)
        self._arrays: dict[str, _Checked] = {}
        for array_name in (*_CORE, *[f"extra/{e}" for e in self.extra_names]):
            self._arrays[array_name] = _Checked(self, array_name, _open_array(self.where, group, array_name,
                                                                                 manifest), manifest[array_name])
        self._check_layout()
        self.indptr: np.ndarray = np.asarray(self._arrays["indptr"].read(0, self._arrays["indptr"].length),
                                             dtype=np.int64)
        self.labels: np.ndarray = np.asarray(self._arrays["labels"].read(0, self._arrays["labels"].length),
                                             dtype=np.int16)
        self._check_per_sample()
        self._times, self._units = self._arrays["times"], self._arrays["units"]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        """(dense raster bool [T, N], label) of sample `i`: a map-style dataset for torch's DataLoader (whose
        default collate stacks the rasters into [B, T, N]); `events(i)` gives the sparse form."""
        i = self._check_index(int(i))
        return self.dense([i])[0], int(self.labels[i])

    def __repr__(self) -> str:
        return f"Split({self.name!r}, samples={len(self)}, events={self.n_events}, units={self.n_units})"

    n_units = property(lambda self: self._store.n_units)
    n_steps = property(lambda self: self._store.n_steps)
    unit_shape = property(lambda self: self._store.unit_shape)
    dt_us = property(lambda self: self._store.dt_us)
    classes = property(lambda self: self._store.classes)

    @property
    def n_events(self) -> int:
        return int(self.indptr[-1])

    # ---- validation at open ------------------------------------------------------------------------------------

    def _check_layout(self) -> None:
        a = self._arrays
        n = a["labels"].length
        n_events = a["times"].length
        if a["indptr"].length != n + 1:
            raise StoreError(f"{self.where}: indptr has {a['indptr'].length} entries for {n} samples "
                             f"(expected {n + 1})")
        if a["units"].length != n_events:
            raise StoreError(f"{self.where}: times hold {n_events} events but units {a['units'].length}; the "
                             "store is truncated or corrupt")
        for key, expected in (("n_samples", n), ("n_events", n_events)):
            value = self.attrs.get(key)
            if not _is_int(value) or int(value) != expected:
                raise StoreError(f"{self.where}: attribute {key} is {value!r}, the arrays hold {expected}")
        for e in self.extra_names:
            if a[f"extra/{e}"].length != n:
                raise StoreError(f"{self.where}: extra array {e!r} has {a[f'extra/{e}'].length} rows for {n} "
                                 "samples")

    def _check_per_sample(self) -> None:
        indptr, labels = self.indptr, self.labels
        n_events = self._arrays["times"].length
        if indptr[0] != 0 or indptr[-1] != n_events:
            raise StoreError(f"{self.where}: indptr spans [{indptr[0]}, {indptr[-1]}] but times/units hold "
                             f"{n_events} events; the store is truncated or corrupt")
        if len(labels) and np.any(np.diff(indptr) < 0):
            raise StoreError(f"{self.where}: indptr is not monotone at sample {int(np.argmax(np.diff(indptr) < 0))}")
        n_classes = len(self.classes)
        if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
            raise StoreError(f"{self.where}: labels outside [0, {n_classes})")

    def _check_chunk(self, name: str, part: np.ndarray, k: int, arr: _Checked) -> None:
        """Range check of a chunk that matched its digest (guards against a writer that broke the invariants)."""
        if name in ("times", "units") and part.size:
            limit = self.n_steps if name == "times" else self.n_units
            if int(part.max()) >= limit:
                raise StoreError(f"{arr.where(k)}: event out of range ({name} < {limit} required); the store is "
                                 "corrupt")

    # ---- reading -----------------------------------------------------------------------------------------------

    def _check_index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for split {self.name!r} with {n} samples")
        return i % n

    def events(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Spike times (steps) and flat unit indices of sample `i`, sorted by (time, unit)."""
        i = self._check_index(int(i))
        lo, hi = int(self.indptr[i]), int(self.indptr[i + 1])
        return self._times.read(lo, hi), self._units.read(lo, hi)

    def read_range(self, start: int, stop: int) -> EventBlock:
        """Events of samples [start, stop) with one read per array (the efficient path for streaming)."""
        n = len(self)
        if not 0 <= start <= stop <= n:
            raise IndexError(f"range [{start}, {stop}) out of bounds for split {self.name!r} with {n} samples")
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        times, units = self._times.read(lo, hi), self._units.read(lo, hi)
        return EventBlock(self.indptr[start : stop + 1] - lo, times, units, self.labels[start:stop])

    def dense(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Dense rasters bool [B, T, N] of the given samples (in the given order)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.zeros((len(idx), self.n_steps, self.n_units), dtype=np.bool_)
        if len(idx) == 0:
            return out
        n = len(self)
        if idx.min() < -n or idx.max() >= n:
            raise IndexError(f"indices out of range for split {self.name!r} with {n} samples")
        idx = idx % n
        # Read spans of nearby samples at once: one zarr read per run instead of one per sample.
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        breaks = np.flatnonzero(np.diff(sorted_idx) > 64) + 1
        for run in np.split(np.arange(len(idx)), breaks):
            first, last = int(sorted_idx[run[0]]), int(sorted_idx[run[-1]])
            block = self.read_range(first, last + 1)
            scatter_dense(block.indptr, block.times, block.units, sorted_idx[run] - first, order[run], out)
        return out

    def extra(self, name: str) -> np.ndarray:
        """A per-sample extra array (first axis = sample); categorical strings come back as str arrays."""
        if name not in self.extra_names:
            raise KeyError(f"split {self.name!r} has no extra array {name!r}; it has {self.extra_names}")
        arr = self._arrays[f"extra/{name}"]
        data = arr.read(0, arr.length)
        categories = arr.array.attrs.get("categories")
        if categories is not None:
            if len(data) and (data.min() < 0 or data.max() >= len(categories)):
                raise StoreError(f"{self.where}, array 'extra/{name}': category codes outside [0, "
                                 f"{len(categories)})")
            return np.asarray(categories, dtype=str)[data]
        return data

    # ---- integrity -----------------------------------------------------------------------------------------------

    def integrity(self) -> dict[str, Any]:
        """Chunks per array and how many were verified so far in this process (all after a full read)."""
        return {name: {"chunks": len(a.digests), "verified": int(a.verified.sum())} for name, a in self._arrays.items()}

    def verify(self, block: int = 2048, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Full check of this split: every chunk of every array against the manifest, events sorted by
        (time, unit) and in range in every sample, and the recomputed content hash against `content_sha256`.
        Raises StoreError on the first problem; returns counts. `progress(samples_done)` is called per block."""
        for name in self.extra_names:
            self.extra(name)
        hashes = {key: hashlib.sha256() for key in ("counts", "times", "units")}
        n = len(self)
        for start in range(0, n, block):
            stop = min(start + block, n)
            b = self.read_range(start, stop)
            bad = _first_unsorted_sample(b.indptr, b.times, b.units)
            if bad >= 0:
                raise StoreError(f"{self.where}: sample {start + bad}: events not strictly sorted by (time, unit)")
            hashes["counts"].update(np.diff(b.indptr).astype(np.int64).tobytes())
            hashes["times"].update(b.times.tobytes())
            hashes["units"].update(b.units.tobytes())
            if progress is not None:
                progress(stop)
        digest = hashlib.sha256(b"".join(h.digest() for h in hashes.values()) + self.labels.tobytes()).hexdigest()
        if digest != self.attrs.get("content_sha256"):
            raise StoreError(f"{self.where}: content hash {digest} does not match the stored content_sha256 "
                             f"{self.attrs.get('content_sha256')}")
        counts = np.bincount(self.labels, minlength=len(self.classes)).astype(int).tolist()
        if self.attrs.get("class_counts") not in (None, counts):
            raise StoreError(f"{self.where}: class_counts {self.attrs.get('class_counts')} do not match the labels "
                             f"{counts}")
        chunks = sum(len(a.digests) for a in self._arrays.values())
        return {"samples": n, "events": self.n_events, "chunks": chunks, "content_sha256": digest}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _split_manifest(where: str, attrs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    integrity = attrs.get("integrity")
    if not isinstance(integrity, dict) or integrity.get("algorithm") != CHUNK_DIGEST:
        raise StoreError(f"{where}: no chunk manifest (attribute 'integrity' with algorithm {CHUNK_DIGEST!r})")
    arrays = integrity.get("arrays")
    extras = attrs.get("extras", [])
    if not isinstance(extras, list) or not all(isinstance(e, str) for e in extras):
        raise StoreError(f"{where}: attribute 'extras' must be a list of names, got {extras!r}")
    names = (*_CORE, *[f"extra/{e}" for e in extras])
    if not isinstance(arrays, dict) or any(name not in arrays for name in names):
        missing = [name for name in names if not isinstance(arrays, dict) or name not in arrays]
        raise StoreError(f"{where}: the chunk manifest has no entry for {missing}")
    for name in names:
        entry = arrays[name]
        if not (isinstance(entry, dict) and _is_int(entry.get("chunk")) and entry["chunk"] > 0
                and isinstance(entry.get(CHUNK_DIGEST), list) and all(_is_int(d) for d in entry[CHUNK_DIGEST])):
            raise StoreError(f"{where}: chunk manifest entry of {name!r} is malformed")
    return arrays


def _open_array(where: str, group: zarr.Group, name: str, manifest: dict[str, Any]) -> zarr.Array:
    entry = manifest[name]
    try:
        arr = group[name]
    except KeyError:
        raise StoreError(f"{where}: missing array {name!r}") from None
    except Exception as exc:  # unreadable metadata
        raise StoreError(f"{where}: array {name!r} has unreadable metadata ({type(exc).__name__}: {exc})") from exc
    if not isinstance(arr, zarr.Array):
        raise StoreError(f"{where}: {name!r} is a group, not an array")
    problems = []
    if str(arr.dtype) != entry.get("dtype"):
        problems.append(f"dtype {arr.dtype} (manifest: {entry.get('dtype')})")
    if list(arr.shape) != entry.get("shape"):
        problems.append(f"shape {list(arr.shape)} (manifest: {entry.get('shape')})")
    if arr.chunks[0] != entry["chunk"] or tuple(arr.chunks[1:]) != tuple(arr.shape[1:]):
        problems.append(f"chunks {list(arr.chunks)} (manifest: {entry['chunk']} rows)")
    if len(entry[CHUNK_DIGEST]) != (-(-arr.shape[0] // entry["chunk"]) if arr.shape else 0):
        problems.append(f"{len(entry[CHUNK_DIGEST])} chunk digests for {arr.shape[0]} rows of {entry['chunk']}")
    fill = arr.metadata.fill_value
    if entry.get("fill_value") is not None and (fill is None or int(fill) != entry["fill_value"]):
        problems.append(f"fill value {fill} (manifest: {entry['fill_value']})")
    if not any(isinstance(c, Crc32cCodec) for c in arr.metadata.codecs):
        problems.append("no crc32c codec")
    if problems:
        raise StoreError(f"{where}: array {name!r} does not match its manifest: {'; '.join(problems)}")
    return arr


class SpikeStore:
    """An opened, validated spike store. Index it by split name: `store["train"]`."""

    def __init__(self, path: Path | str, root: zarr.Group):
        self.path = path
        self.attrs: dict[str, Any] = dict(root.attrs)
        self.splits: list[str] = list(self.attrs["splits"])
        self.n_units: int = int(self.attrs["n_units"])
        self.n_steps: int = int(self.attrs["n_steps"])
        self.unit_shape: tuple[int, ...] = tuple(int(s) for s in self.attrs["unit_shape"])
        self.dt_us: float = float(self.attrs["dt_us"])
        self.classes: list[str] = [str(c) for c in self.attrs["classes"]]
        self._root = root
        self._cache: dict[str, Split] = {}

    def __getitem__(self, name: str) -> Split:
        if name not in self.splits:
            raise KeyError(f"{self.path} has no split {name!r}; it has {self.splits}")
        if name not in self._cache:
            self._cache[name] = self._open_split(name)
        return self._cache[name]

    def _open_split(self, name: str) -> Split:
        where = f"{self.path}: split {name!r}"
        try:
            group = self._root[name]
        except KeyError:
            raise StoreError(f"{where}: missing (the group {name}/ is gone)") from None
        except Exception as exc:
            raise StoreError(f"{where}: unreadable group metadata ({type(exc).__name__}: {exc})") from exc
        if not isinstance(group, zarr.Group):
            raise StoreError(f"{where}: is an array, not a group")
        recorded = self.attrs["integrity"]["splits"].get(name)
        if canonical_sha256(dict(group.attrs)) != recorded:
            raise StoreError(f"{where}: its attributes (chunk manifest included) do not match the digest in the "
                             "root attributes: edited, corrupt, or copied from another store")
        return Split(self, name, group)

    def __contains__(self, name: object) -> bool:
        return name in self.splits

    def __repr__(self) -> str:
        return f"SpikeStore({str(self.path)!r}, dataset={self.attrs['dataset']!r}, splits={self.splits})"

    @property
    def fingerprint(self) -> str:
        """sha256 over the attributes that define the encoding and every split's content hash."""
        return fingerprint_of(self.attrs)


def fingerprint_of(attrs: dict[str, Any]) -> str:
    keep = {k: attrs[k] for k in (*_REQUIRED_ROOT, "split_sha256") if k in attrs}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


def is_url(path: str | os.PathLike) -> bool:
    """True for fsspec URLs (`s3://bucket/x.zarr`, `https://host/x.zarr`, ...), false for local paths."""
    return isinstance(path, str) and "://" in path and not path.startswith("file://")


def open_store(path: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> SpikeStore:
    """Open a spike store read-only and check its format, version, attribute digests and invariants.

    `path` is a local directory or any fsspec URL that zarr can read (object stores, HTTP); `storage_options` go
    to fsspec (credentials, endpoints). Every split is opened and its per-sample arrays verified here; event
    chunks are verified at their first read. Raises :class:`StoreError` with what is wrong and where (missing,
    interrupted, foreign, older, edited or damaged store).
    """
    if is_url(path):
        from zarr.storage import FsspecStore

        try:
            source: Any = FsspecStore.from_url(str(path), storage_options=storage_options, read_only=True)
            root = zarr.open_group(source, mode="r", zarr_format=3)
        except Exception as exc:  # fsspec/zarr raise many types for unreachable or foreign locations
            raise StoreError(f"{path}: cannot open as a Zarr v3 spike store ({type(exc).__name__}: {exc})") from exc
    else:
        path = Path(path)
        if not path.exists():
            raise StoreError(f"{path}: no such spike store{_interrupted_swap_hint(path)}")
        if not path.is_dir():
            raise StoreError(f"{path}: not a spike store (a file, not a directory)")
        if not (path / "zarr.json").is_file():
            raise StoreError(f"{path}: not a Zarr v3 store (no zarr.json); is this a spike store?")
        try:
            root = zarr.open_group(str(path), mode="r", zarr_format=3)
        except Exception as exc:  # zarr raises several types for unreadable metadata
            raise StoreError(f"{path}: cannot read Zarr metadata ({type(exc).__name__}: {exc})") from exc
    attrs = dict(root.attrs)
    if attrs.get("format") != FORMAT:
        raise StoreError(
            f"{path}: not a spike store (attribute 'format' is {attrs.get('format')!r}, expected {FORMAT!r}); "
            "an encode that was interrupted leaves no valid store"
        )
    version = attrs.get("format_version")
    if version != FORMAT_VERSION:
        raise StoreError(_version_message(path, version, attrs))
    _check_root_attrs(path, attrs)
    store = SpikeStore(path, root)
    for name in store.splits:
        store[name]
    return store


def _version_message(path, version: Any, attrs: dict[str, Any]) -> str:
    what = VERSION_HISTORY.get(version) if isinstance(version, int) else None
    older = isinstance(version, int) and version < FORMAT_VERSION
    command = (attrs.get("created_by") or {}).get("command") if isinstance(attrs.get("created_by"), dict) else None
    how = f" (it was written by `{command}`)" if command else ""
    if older:
        return (f"{path}: store format version {version} ({what or 'older'}); this spikedata reads only version "
                f"{FORMAT_VERSION} ({VERSION_HISTORY[FORMAT_VERSION]}): re-encode the dataset with this version"
                f"{how}")
    return (f"{path}: store format version {version!r}, this spikedata reads version {FORMAT_VERSION}; "
            f"re-encode the dataset with this version{how}, or use the spikedata that wrote it")


def _check_root_attrs(path, attrs: dict[str, Any]) -> None:
    missing = [k for k in (*_REQUIRED_ROOT, "splits", "integrity") if k not in attrs]
    if missing:
        raise StoreError(f"{path}: store attributes missing {missing}")

    def bad(key: str, expected: str) -> StoreError:
        return StoreError(f"{path}: attribute {key!r} is {attrs[key]!r}, expected {expected}")

    for key in ("n_units", "n_steps"):
        if not _is_int(attrs[key]) or attrs[key] < 1:
            raise bad(key, "a positive integer")
    if not isinstance(attrs["dt_us"], int | float) or isinstance(attrs["dt_us"], bool) or not (
        math.isfinite(attrs["dt_us"]) and attrs["dt_us"] > 0
    ):
        raise bad("dt_us", "a positive number of µs")
    shape = attrs["unit_shape"]
    if not isinstance(shape, list) or not shape or not all(_is_int(s) and s > 0 for s in shape):
        raise bad("unit_shape", "a list of positive integers")
    if math.prod(shape) != attrs["n_units"]:
        raise StoreError(f"{path}: unit_shape {shape} does not multiply to n_units {attrs['n_units']}")
    classes = attrs["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise bad("classes", "a non-empty list of class names")
    if not isinstance(attrs["dataset"], str):
        raise bad("dataset", "a string")
    if not _is_int(attrs["seed"]):
        raise bad("seed", "an integer")
    if not isinstance(attrs["encoder"], dict) or not isinstance(attrs["encoder"].get("name"), str):
        raise bad("encoder", "a table with a 'name'")
    splits = attrs["splits"]
    if not isinstance(splits, list) or not all(isinstance(s, str) and s.isidentifier() for s in splits) or len(
        set(splits)
    ) != len(splits):
        raise bad("splits", "a list of distinct split names")
    integrity = attrs["integrity"]
    if not (isinstance(integrity, dict) and isinstance(integrity.get("splits"), dict)
            and isinstance(integrity.get("attributes"), str)):
        raise bad("integrity", "a table with 'attributes' and 'splits' digests")
    if sorted(integrity["splits"]) != sorted(splits):
        raise StoreError(f"{path}: the integrity digests cover splits {sorted(integrity['splits'])}, the store lists "
                         f"{sorted(splits)}")
    if canonical_sha256(_digested_root(attrs)) != integrity["attributes"]:
        raise StoreError(f"{path}: the root attributes do not match their recorded sha256 digest (edited or "
                         "corrupt zarr.json); re-encode the store or restore it from a copy")


def _digested_root(attrs: dict[str, Any]) -> dict[str, Any]:
    """The root attributes the `integrity.attributes` digest covers: all but the digest table itself."""
    return {k: v for k, v in attrs.items() if k != "integrity"}


def verify_store(path: str | os.PathLike, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Open a store and run `Split.verify` on every split; returns {split: counts}. Raises StoreError."""
    store = open_store(path)
    out = {}
    for name in store.splits:
        split = store[name]
        cb = (lambda done, _n=name, _t=len(split): progress(_n, done, _t)) if progress is not None else None
        out[name] = split.verify(progress=cb)
    return out


# --------------------------------------------------------------------------------------------------------------
# Writing


def _codecs(compressors: list) -> list:
    return [*compressors, Crc32cCodec()]


class SplitWriter:
    """Appends samples to one split; buffers events and writes whole chunks, recording their digests."""

    def __init__(
        self,
        group: zarr.Group,
        n_units: int,
        n_steps: int,
        n_classes: int,
        event_chunk: int = EVENT_CHUNK,
        compressors: list | None = None,
    ):
        self._group = group
        self._chunk = event_chunk
        self._n_units, self._n_steps, self._n_classes = n_units, n_steps, n_classes
        self._tdtype, self._udtype = index_dtype(n_steps), index_dtype(n_units)
        codecs = _codecs(_EVENT_CODECS if compressors is None else compressors)
        for name, dtype in (("times", self._tdtype), ("units", self._udtype)):
            group.create_array(name, shape=(0,), dtype=dtype, chunks=(event_chunk,), compressors=codecs,
                               fill_value=fill_value_for(name, dtype), dimension_names=("event",))  # fmt: skip
        self._digests: dict[str, list[int]] = {"times": [], "units": []}
        self._counts: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._extras: dict[str, list[np.ndarray]] = {}
        self._buf_t: list[np.ndarray] = []
        self._buf_u: list[np.ndarray] = []
        self._buffered = 0
        self._written = 0
        self._hashes = {key: hashlib.sha256() for key in ("counts", "times", "units")}
        self.stats: dict[str, float] = {}

    def append(
        self,
        indptr: np.ndarray,
        times: np.ndarray,
        units: np.ndarray,
        labels: np.ndarray,
        extras: dict[str, np.ndarray] | None = None,
        stats: dict[str, float] | None = None,
    ) -> None:
        """Append k samples given as CSR events (`indptr` [k + 1] from 0) with labels [k] and extras [k, ...]."""
        indptr = np.asarray(indptr, dtype=np.int64)
        labels = np.asarray(labels)
        k = len(labels)
        times = np.asarray(times)
        units = np.asarray(units)
        if indptr.shape != (k + 1,) or indptr[0] != 0 or indptr[-1] != len(times) or len(units) != len(times):
            raise ValueError(
                f"inconsistent block: {k} labels, indptr shape {indptr.shape} ending at {indptr[-1:]}, "
                f"{len(times)} times, {len(units)} units"
            )
        if len(times):
            if times.min() < 0 or times.max() >= self._n_steps:
                raise ValueError(f"spike times must lie in [0, {self._n_steps}); got [{times.min()}, {times.max()}]")
            if units.min() < 0 or units.max() >= self._n_units:
                raise ValueError(f"unit indices must lie in [0, {self._n_units}); got [{units.min()}, {units.max()}]")
        if k and (labels.min() < 0 or labels.max() >= self._n_classes):
            raise ValueError(f"labels must lie in [0, {self._n_classes}); got [{labels.min()}, {labels.max()}]")
        t = times.astype(self._tdtype, copy=False)
        u = units.astype(self._udtype, copy=False)
        bad = _first_unsorted_sample(indptr, t, u)
        if bad >= 0:
            raise ValueError(f"sample {bad} of the block: events not strictly sorted by (time, unit)")
        counts = np.diff(indptr)
        # One running hash per stream, so the digest does not depend on how samples were cut into blocks.
        for key, data in (("counts", counts), ("times", t), ("units", u)):
            self._hashes[key].update(data.tobytes())
        self._counts.append(counts)
        self._labels.append(labels.astype(np.int16))
        for name, arr in (extras or {}).items():
            arr = np.asarray(arr)
            if arr.shape[:1] != (k,):
                raise ValueError(f"extra array {name!r} has shape {arr.shape}; its first axis must be {k}")
            self._extras.setdefault(name, []).append(arr)
        for key, value in (stats or {}).items():
            self.stats[key] = self.stats.get(key, 0) + value
        self._buf_t.append(t)
        self._buf_u.append(u)
        self._buffered += len(t)
        if self._buffered >= self._chunk:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._buffered:
            return
        t = np.concatenate(self._buf_t)
        u = np.concatenate(self._buf_u)
        cut = len(t) if final else (len(t) // self._chunk) * self._chunk
        for name, data in (("times", t[:cut]), ("units", u[:cut])):
            arr = self._group[name]
            arr.resize((self._written + cut,))
            arr[self._written :] = data
            self._digests[name] += chunk_digests(data, self._chunk)  # writes start on chunk boundaries
        self._written += cut
        self._buf_t, self._buf_u = [t[cut:]], [u[cut:]]
        self._buffered = len(t) - cut

    def close(self) -> dict[str, Any]:
        """Write the per-sample arrays, the chunk manifest and the split attributes; returns the attributes."""
        self._flush(final=True)
        counts = np.concatenate(self._counts) if self._counts else np.zeros(0, np.int64)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        labels = np.concatenate(self._labels) if self._labels else np.zeros(0, np.int16)
        g = self._group
        manifest = {
            name: _manifest_entry(g[name], self._chunk, self._digests[name]) for name in ("times", "units")
        }
        for name, data, dim in (("indptr", indptr, "sample_boundary"), ("labels", labels, "sample")):
            manifest[name] = _write_array(g, name, data, SAMPLE_CHUNK, dimension_names=(dim,))
        for name, parts in self._extras.items():
            manifest[f"extra/{name}"] = _write_extra(g, name, np.concatenate(parts))
        attrs = {
            "n_samples": len(labels),
            "n_events": int(indptr[-1]),
            "content_sha256": hashlib.sha256(
                b"".join(h.digest() for h in self._hashes.values()) + labels.tobytes()
            ).hexdigest(),
            "encode_stats": {k: (float(v) if isinstance(v, float) else int(v)) for k, v in self.stats.items()},
            "extras": sorted(self._extras),
            "class_counts": np.bincount(labels, minlength=self._n_classes).astype(int).tolist(),
            "integrity": {"algorithm": CHUNK_DIGEST, "arrays": manifest},
        }
        attrs = json.loads(json.dumps(attrs, default=_json_default))
        g.attrs.update(attrs)
        return attrs


def _manifest_entry(arr: zarr.Array, chunk: int, digests: list[int]) -> dict[str, Any]:
    return {"dtype": str(arr.dtype), "shape": list(arr.shape), "chunk": int(chunk),
            "fill_value": int(arr.metadata.fill_value), CHUNK_DIGEST: [int(d) for d in digests]}


def _write_array(group: zarr.Group, name: str, data: np.ndarray, chunk: int,
                 attributes: dict[str, Any] | None = None,
                 dimension_names: tuple[str, ...] | None = None) -> dict[str, Any]:
    arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=(chunk, *data.shape[1:]),
                             compressors=_codecs(_SAMPLE_CODECS), fill_value=fill_value_for(name, data.dtype),
                             attributes=attributes or {}, dimension_names=dimension_names)
    if data.size:
        arr[...] = data
    return _manifest_entry(arr, chunk, chunk_digests(data, chunk))


def _write_extra(group: zarr.Group, name: str, data: np.ndarray) -> dict[str, Any]:
    attributes = {}
    if data.dtype.kind in "UOS":
        categories, codes = np.unique(data.astype(str), return_inverse=True)
        data = codes.astype(np.int32).reshape(data.shape)
        attributes["categories"] = categories.tolist()
    dims = ("sample", *(f"{name}_dim{k}" for k in range(1, data.ndim)))
    return _write_array(group, f"extra/{name}", data, min(SAMPLE_CHUNK, max(1, len(data))), attributes, dims)


@numba.njit(cache=True)
def _first_unsorted_sample(indptr, times, units):  # pragma: no cover - numba
    for s in range(len(indptr) - 1):
        for e in range(indptr[s] + 1, indptr[s + 1]):
            if times[e] < times[e - 1] or (times[e] == times[e - 1] and units[e] <= units[e - 1]):
                return s
    return -1


# --------------------------------------------------------------------------------------------------------------
# Atomic replacement and leftovers


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_EXCHANGE = _renameat2()


def exchange_paths(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if _EXCHANGE is None:
        return False
    if _EXCHANGE(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (38, 22, 95):  # ENOSYS, EINVAL (file system without support), EOPNOTSUPP
        return False
    raise OSError(err, f"cannot swap {a} and {b}: {os.strerror(err)}")


def _leftovers(path: Path, kind: str) -> list[Path]:
    prefix = f".{path.name}.{kind}-"
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(prefix))


def _interrupted_swap_hint(path: Path) -> str:
    old = _leftovers(path, "old")
    return (f"; an interrupted --overwrite left the previous store at {old[-1]} (the next writer of {path} "
            "restores it)") if old else ""


def clean_leftovers(path: str | os.PathLike) -> list[str]:
    """Remove what interrupted writers of `path` left beside it; call only while holding the path's lock.

    `.NAME.partial-*` directories (encodes killed before they finished, or the previous store after a swap that
    was interrupted before it was deleted) are removed: holding the lock proves their writers are gone. When
    `path` is missing but a `.NAME.old-*` store exists (a two-rename replacement killed between its renames, on
    systems without an atomic swap), that store is moved back to `path`. Returns what was done, for a note.
    """
    path = Path(path)
    done = []
    olds = _leftovers(path, "old")
    if olds and not path.exists():
        os.replace(olds[-1], path)
        done.append(f"restored {path} from {olds[-1].name}")
        olds = olds[:-1]
    for p in [*_leftovers(path, "partial"), *olds]:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        done.append(f"removed {p.name}")
    return done



class StoreWriter:
    """Writes a new store atomically, as the only writer of its path. Use as a context manager::

        with StoreWriter(path, attrs) as writer:
            writer.split("train").append(indptr, times, units, labels)

    Entering takes the lock `.NAME.lock` beside `path` (a second writer gets a `LockError` naming this process)
    and removes the leftovers of dead writers (`clean_leftovers`). On a clean exit the store is finalised,
    re-opened and validated in its temporary location, then renamed to `path`, or, with `overwrite`, atomically
    swapped with the existing store, which is deleted afterwards. On an exception the temporary directory is
    removed; after a kill only hidden siblings remain, which the next writer removes.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        attrs: dict[str, Any],
        overwrite: bool = False,
        event_chunk: int = EVENT_CHUNK,
        compressors: list | None = None,
    ):
        """`event_chunk`/`compressors` exist for `benchmarks/bench_store.py`; the defaults are the measured choice."""
        self.path = Path(path)
        self._layout = {"event_chunk": event_chunk, "compressors": compressors}
        missing = [k for k in _REQUIRED_ROOT if k not in attrs]
        if missing:
            raise ValueError(f"store attributes missing {missing}")
        if int(np.prod(attrs["unit_shape"])) != int(attrs["n_units"]):
            raise ValueError(f"unit_shape {attrs['unit_shape']} does not multiply to n_units {attrs['n_units']}")
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} already exists (pass overwrite to replace it)")
        self.attrs = dict(attrs)
        self._tmp = self.path.parent / f".{self.path.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._overwrite = overwrite
        self._root: zarr.Group | None = None
        self._splits: dict[str, SplitWriter] = {}
        self._lock = PathLock(self.path, what="the spike store")
        self.cleaned: list[str] = []

    def __enter__(self) -> StoreWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            self.cleaned = clean_leftovers(self.path)
            if self.path.exists() and not self._overwrite:
                raise FileExistsError(f"{self.path} already exists (pass overwrite to replace it)")
            self._root = zarr.open_group(str(self._tmp), mode="w-", zarr_format=3)
        except BaseException:
            self._lock.release()
            raise
        return self

    def split(self, name: str) -> SplitWriter:
        """The writer of split `name` (created on first use)."""
        assert self._root is not None, "use StoreWriter as a context manager"
        if name not in self._splits:
            if not name.isidentifier():
                raise ValueError(f"split name {name!r} must be an identifier")
            self._splits[name] = SplitWriter(
                self._root.create_group(name),
                int(self.attrs["n_units"]),
                int(self.attrs["n_steps"]),
                len(self.attrs["classes"]),
                **self._layout,
            )
        return self._splits[name]

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
                return
            try:
                self._finalise()
            except BaseException:
                shutil.rmtree(self._tmp, ignore_errors=True)
                raise
        finally:
            self._lock.release()

    def _finalise(self) -> None:
        assert self._root is not None
        split_attrs = {name: w.close() for name, w in self._splits.items()}
        attrs = {
            **self.attrs,
            "splits": list(self._splits),
            "split_sha256": {name: a["content_sha256"] for name, a in split_attrs.items()},
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
        }
        attrs = json.loads(json.dumps(attrs, default=_json_default))
        attrs["integrity"] = {
            "algorithm": "sha256",
            "attributes": canonical_sha256(_digested_root(attrs)),
            "splits": {name: canonical_sha256(a) for name, a in split_attrs.items()},
        }
        # The format marker is written last (one write of zarr.json): until then the store cannot be opened.
        self._root.attrs.update(attrs)
        open_store(self._tmp)
        if self.path.exists():
            if exchange_paths(self._tmp, self.path):  # the old store is now at self._tmp
                fsync_dir(self.path.parent)
                shutil.rmtree(self._tmp, ignore_errors=True)
                return
            # No atomic swap here: two renames. A kill between them leaves `.NAME.old-*`, which the next writer
            # moves back (clean_leftovers) and open_store names in its message.
            trash = self.path.parent / f".{self.path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.path, trash)
            os.replace(self._tmp, self.path)
            fsync_dir(self.path.parent)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self._tmp, self.path)
            fsync_dir(self.path.parent)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"attribute value {obj!r} is not JSON-serialisable")
