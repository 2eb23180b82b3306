"""Reading a spike store: `open_store` validates it and returns a `SpikeStore`; `store[split]` is a `Split`, whose
event chunks are verified against the chunk manifest at their first read; `verify_store` checks everything."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec

from spikedata.raster import scatter_dense
from spikedata.store.attributes import check_root_attrs, fingerprint_of, version_message
from spikedata.store.format import (
    CORE_ARRAYS,
    FORMAT,
    FORMAT_VERSION,
    EventBlock,
    StoreError,
    first_unsorted_sample,
    is_int,
)
from spikedata.store.integrity import CHUNK_DIGEST, canonical_sha256, chunk_digest, chunk_manifest_of
from spikedata.store.swap import interrupted_swap_hint


class _Checked:
    """One array of a split with its manifest entry: chunked reads that verify every chunk at its first read."""

    def __init__(self, split: Split, name: str, array: zarr.Array, entry: dict[str, Any], limit: int | None = None):
        """`limit`: values must lie below it (n_steps for times, n_units for units), checked per verified chunk."""
        self.split, self.name, self.array, self.limit = split, name, array, limit
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
        """Rows [lo, hi) as stored; a chunk that does not decode is a StoreError naming it."""
        ranges = [(max(lo, k * self.chunk), min(hi, (k + 1) * self.chunk))
                  for k in range(lo // self.chunk, -(-hi // self.chunk))]
        parts = read_chunks(self.array, ranges)
        for k, part in zip(range(lo // self.chunk, -(-hi // self.chunk)), parts, strict=True):
            if isinstance(part, BaseException):
                raise StoreError(f"{self.where(k)}: cannot be decoded ({type(part).__name__}: {part}); the chunk is "
                                 "truncated or corrupt: re-encode the store or restore it from a copy") from part
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _check_range(self, part: np.ndarray, k: int) -> None:
        """Range check of a chunk that matched its digest (guards against a writer that broke the invariants)."""
        if self.limit is not None and part.size and int(part.max()) >= self.limit:
            raise StoreError(f"{self.where(k)}: event out of range ({self.name} < {self.limit} required); the store is "
                             "corrupt")

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
            self._check_range(part, k)
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
        self.store = store
        self.name = name
        self.where = f"{store.path}: split {name!r}"
        self._group = group
        self.attrs: dict[str, Any] = dict(group.attrs)
        self.extra_names: list[str] = list(self.attrs.get("extras", []))
        manifest = chunk_manifest_of(self.where, self.attrs)
        self._arrays: dict[str, _Checked] = {}
        limits = {"times": store.n_steps, "units": store.n_units}
        for array_name in (*CORE_ARRAYS, *[f"extra/{e}" for e in self.extra_names]):
            array = _open_array(self.where, group, array_name, manifest)
            self._arrays[array_name] = _Checked(self, array_name, array, manifest[array_name], limits.get(array_name))
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

    n_units = property(lambda self: self.store.n_units)
    n_steps = property(lambda self: self.store.n_steps)
    unit_shape = property(lambda self: self.store.unit_shape)
    dt_us = property(lambda self: self.store.dt_us)
    classes = property(lambda self: self.store.classes)

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
            if not is_int(value) or int(value) != expected:
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
            bad = first_unsorted_sample(b.indptr, b.times, b.units)
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


async def _gather_rows(array: zarr.AsyncArray, ranges: list[tuple[int, int]], limit: int) -> list:
    gate = asyncio.Semaphore(limit)

    async def one(lo: int, hi: int) -> Any:
        async with gate:
            return await array.getitem(slice(lo, hi))

    # return_exceptions: every read ends (decoded or failed) before this returns, so that none is left running
    return await asyncio.gather(*(one(lo, hi) for lo, hi in ranges), return_exceptions=True)


def read_chunks(array: zarr.Array, ranges: list[tuple[int, int]]) -> list[np.ndarray | Exception]:
    """The rows [lo, hi) of `array` for each of `ranges` (each within one chunk), read concurrently on zarr's event
    loop; a range that cannot be read or decoded gives its exception instead of an array.

    Why not ``array[lo:hi]`` over several chunks: zarr reads them concurrently and raises as soon as one fails,
    while the others keep running on its background loop. A command that then exits on the error (``error: ...``,
    exit status 1) shuts that loop and its thread pool down under them, and they print tracebacks ("cannot schedule
    new futures after shutdown", "Event loop is closed", "Task was destroyed but it is pending") after the error
    line. Here every read has finished, or failed, before the caller sees any result."""
    from zarr.core.sync import sync  # zarr's own loop: the one its stores (local, fsspec) are bound to

    limit = max(1, int(zarr.config.get("async.concurrency") or 10))
    return sync(_gather_rows(array.async_array, list(ranges), limit))


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
            raise StoreError(f"{path}: no such spike store{interrupted_swap_hint(path)}")
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
        raise StoreError(version_message(path, version, attrs))
    check_root_attrs(path, attrs)
    store = SpikeStore(path, root)
    for name in store.splits:
        store[name]
    return store


def verify_store(path: str | os.PathLike, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Open a store and run `Split.verify` on every split; returns {split: counts}. Raises StoreError."""
    store = open_store(path)
    out = {}
    for name in store.splits:
        split = store[name]
        cb = (lambda done, _n=name, _t=len(split): progress(_n, done, _t)) if progress is not None else None
        out[name] = split.verify(progress=cb)
    return out
