"""The Zarr v3 spike store: the one on-disk contract between `spikedata` and `hm2bp`.

Layout (see `docs/store.md`)::

    STORE/               root group; attributes: format, format_version, dataset, encoder {name, params},
                         n_units, unit_shape, n_steps, dt_us, classes, seed, source, created_by, splits
      <split>/           one group per split ("train", "test", ...); attributes: n_samples, n_events,
                         content_sha256, encode_stats, extras
        indptr  int64  [n_samples + 1]   events of sample i are [indptr[i], indptr[i+1])
        times   uint16|uint32 [n_events] time step (steps of dt_us µs), sorted within a sample
        units   uint16|uint32 [n_events] flat unit index, sorted within a time step
        labels  int16  [n_samples]
        extra/<name>     optional per-sample arrays, first axis n_samples

Stores are written by :class:`StoreWriter` into a hidden temporary sibling and renamed into place only after the
content has been re-read and verified, so an interrupted encode never leaves anything `open_store` accepts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

from spikedata.errors import SpikedataError

FORMAT = "spikedata.store"
FORMAT_VERSION = 1

#: Events per chunk of `times`/`units`: 2^18 (~40 MNIST samples at T = 400, ~280 kB compressed); chosen by
#: `benchmarks/bench_store.py`, figures in docs/store.md.
EVENT_CHUNK = 1 << 18
#: Samples per chunk of the per-sample arrays.
SAMPLE_CHUNK = 1 << 16

_REQUIRED_ROOT = ("dataset", "encoder", "n_units", "unit_shape", "n_steps", "dt_us", "classes", "seed", "source")
_EVENT_CODECS = [BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.shuffle)]
_SAMPLE_CODECS = [BloscCodec(cname="zstd", clevel=5, shuffle=BloscShuffle.shuffle)]


class StoreError(SpikedataError, ValueError):
    """A store is missing, incomplete, from another format version, or violates an invariant."""


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


# --------------------------------------------------------------------------------------------------------------
# Reading


class Split:
    """One split of a store. Reads are lazy; `labels` and `indptr` are loaded once (small)."""

    def __init__(self, store: SpikeStore, name: str, group: zarr.Group):
        self._store = store
        self.name = name
        self._group = group
        self.attrs: dict[str, Any] = dict(group.attrs)
        self._times = group["times"]
        self._units = group["units"]
        self.indptr: np.ndarray = np.asarray(group["indptr"][:], dtype=np.int64)
        self.labels: np.ndarray = np.asarray(group["labels"][:], dtype=np.int16)
        self.extra_names: list[str] = list(self.attrs.get("extras", []))

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

    def _check_index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for split {self.name!r} with {n} samples")
        return i % n

    def events(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Spike times (steps) and flat unit indices of sample `i`, sorted by (time, unit)."""
        i = self._check_index(int(i))
        lo, hi = int(self.indptr[i]), int(self.indptr[i + 1])
        times, units = self._times[lo:hi], self._units[lo:hi]
        self._check_events(times, units, f"sample {i}")
        return times, units

    def read_range(self, start: int, stop: int) -> EventBlock:
        """Events of samples [start, stop) with one read per array (the efficient path for streaming)."""
        n = len(self)
        if not 0 <= start <= stop <= n:
            raise IndexError(f"range [{start}, {stop}) out of bounds for split {self.name!r} with {n} samples")
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        times, units = self._times[lo:hi], self._units[lo:hi]
        self._check_events(times, units, f"samples [{start}, {stop})")
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
            _scatter_dense(block.indptr, block.times, block.units, sorted_idx[run] - first, order[run], out)
        return out

    def extra(self, name: str) -> np.ndarray:
        """A per-sample extra array (first axis = sample); categorical strings come back as str arrays."""
        if name not in self.extra_names:
            raise KeyError(f"split {self.name!r} has no extra array {name!r}; it has {self.extra_names}")
        arr = self._group[f"extra/{name}"]
        data = arr[:]
        categories = arr.attrs.get("categories")
        if categories is not None:
            return np.asarray(categories, dtype=str)[data]
        return data

    def _check_events(self, times: np.ndarray, units: np.ndarray, where: str) -> None:
        if len(times) and (int(times.max()) >= self.n_steps or int(units.max()) >= self.n_units):
            raise StoreError(
                f"{self._store.path}: split {self.name!r}, {where}: event out of range "
                f"(time < {self.n_steps}, unit < {self.n_units} required); the store is corrupt"
            )


@numba.njit(cache=True)
def _scatter_dense(indptr, times, units, local, dest, out):  # pragma: no cover - numba
    for k in range(len(local)):
        s = local[k]
        b = dest[k]
        for e in range(indptr[s], indptr[s + 1]):
            out[b, times[e], units[e]] = True


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
            self._cache[name] = Split(self, name, self._root[name])
        return self._cache[name]

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
    """Open a spike store read-only and check its format, version and invariants.

    `path` is a local directory or any fsspec URL that zarr can read (object stores, HTTP); `storage_options` go
    to fsspec (credentials, endpoints). Raises :class:`StoreError` with what is wrong and where (missing,
    interrupted, foreign or corrupt store).
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
            raise StoreError(f"{path}: no such spike store")
        if not (path / "zarr.json").is_file():
            raise StoreError(f"{path}: not a Zarr v3 store (no zarr.json); is this a spike store?")
        try:
            root = zarr.open_group(str(path), mode="r", zarr_format=3)
        except Exception as exc:  # zarr raises several types for unreadable metadata
            raise StoreError(f"{path}: cannot read Zarr metadata ({exc})") from exc
    attrs = dict(root.attrs)
    if attrs.get("format") != FORMAT:
        raise StoreError(
            f"{path}: not a spike store (attribute 'format' is {attrs.get('format')!r}, expected {FORMAT!r}); "
            "an encode that was interrupted leaves no valid store"
        )
    version = attrs.get("format_version")
    if version != FORMAT_VERSION:
        raise StoreError(
            f"{path}: store format version {version!r}, this spikedata reads version {FORMAT_VERSION}; "
            "re-encode the dataset with this version"
        )
    missing = [k for k in (*_REQUIRED_ROOT, "splits") if k not in attrs]
    if missing:
        raise StoreError(f"{path}: store attributes missing {missing}")
    store = SpikeStore(path, root)
    if int(np.prod(store.unit_shape)) != store.n_units:
        raise StoreError(f"{path}: unit_shape {list(store.unit_shape)} does not multiply to n_units {store.n_units}")
    for name in store.splits:
        _validate_split(path, root, name, attrs)
    return store


def _validate_split(path: Path | str, root: zarr.Group, name: str, attrs: dict[str, Any]) -> None:
    where = f"{path}: split {name!r}"
    try:
        group = root[name]
        arrays = {k: group[k] for k in ("indptr", "times", "units", "labels")}
    except KeyError as exc:
        raise StoreError(f"{where}: missing array {exc}") from exc
    indptr = arrays["indptr"][:]
    n = arrays["labels"].shape[0]
    n_events = arrays["times"].shape[0]
    if indptr.shape != (n + 1,):
        raise StoreError(f"{where}: indptr has {indptr.shape[0]} entries for {n} samples (expected {n + 1})")
    if indptr[0] != 0 or indptr[-1] != n_events or arrays["units"].shape[0] != n_events:
        raise StoreError(
            f"{where}: indptr spans [{indptr[0]}, {indptr[-1]}] but times/units hold "
            f"{n_events}/{arrays['units'].shape[0]} events; the store is truncated or corrupt"
        )
    if n and np.any(np.diff(indptr) < 0):
        raise StoreError(f"{where}: indptr is not monotone at sample {int(np.argmax(np.diff(indptr) < 0))}")
    if int(group.attrs.get("n_samples", -1)) != n:
        raise StoreError(f"{where}: attribute n_samples {group.attrs.get('n_samples')} != {n} labels")
    labels = arrays["labels"][:]
    n_classes = len(attrs["classes"])
    if n and (labels.min() < 0 or labels.max() >= n_classes):
        raise StoreError(f"{where}: labels outside [0, {n_classes})")


# --------------------------------------------------------------------------------------------------------------
# Writing


class SplitWriter:
    """Appends samples to one split; buffers events and writes whole chunks."""

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
        codecs = _EVENT_CODECS if compressors is None else compressors
        for name, dtype in (("times", self._tdtype), ("units", self._udtype)):
            group.create_array(name, shape=(0,), dtype=dtype, chunks=(event_chunk,), compressors=codecs,
                               dimension_names=("event",))  # fmt: skip
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
        self._written += cut
        self._buf_t, self._buf_u = [t[cut:]], [u[cut:]]
        self._buffered = len(t) - cut

    def close(self) -> dict[str, Any]:
        """Write the per-sample arrays and split attributes; returns them."""
        self._flush(final=True)
        counts = np.concatenate(self._counts) if self._counts else np.zeros(0, np.int64)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        labels = np.concatenate(self._labels) if self._labels else np.zeros(0, np.int16)
        g = self._group
        g.create_array("indptr", data=indptr, chunks=(SAMPLE_CHUNK,), compressors=_SAMPLE_CODECS,
                       dimension_names=("sample_boundary",))  # fmt: skip
        g.create_array("labels", data=labels, chunks=(SAMPLE_CHUNK,), compressors=_SAMPLE_CODECS,
                       dimension_names=("sample",))  # fmt: skip
        for name, parts in self._extras.items():
            _write_extra(g, name, np.concatenate(parts))
        attrs = {
            "n_samples": len(labels),
            "n_events": int(indptr[-1]),
            "content_sha256": hashlib.sha256(
                b"".join(h.digest() for h in self._hashes.values()) + labels.tobytes()
            ).hexdigest(),
            "encode_stats": {k: (float(v) if isinstance(v, float) else int(v)) for k, v in self.stats.items()},
            "extras": sorted(self._extras),
            "class_counts": np.bincount(labels, minlength=self._n_classes).astype(int).tolist(),
        }
        g.attrs.update(attrs)
        return attrs


def _write_extra(group: zarr.Group, name: str, data: np.ndarray) -> None:
    attributes = {}
    if data.dtype.kind in "UOS":
        categories, codes = np.unique(data.astype(str), return_inverse=True)
        data = codes.astype(np.int32)
        attributes["categories"] = categories.tolist()
    chunks = (min(SAMPLE_CHUNK, max(1, len(data))), *data.shape[1:])
    dims = ("sample", *(f"{name}_dim{k}" for k in range(1, data.ndim)))
    group.create_array(f"extra/{name}", data=data, chunks=chunks, compressors=_SAMPLE_CODECS, attributes=attributes,
                       dimension_names=dims)  # fmt: skip


@numba.njit(cache=True)
def _first_unsorted_sample(indptr, times, units):  # pragma: no cover - numba
    for s in range(len(indptr) - 1):
        for e in range(indptr[s] + 1, indptr[s + 1]):
            if times[e] < times[e - 1] or (times[e] == times[e - 1] and units[e] <= units[e - 1]):
                return s
    return -1


class StoreWriter:
    """Writes a new store atomically. Use as a context manager::

        with StoreWriter(path, attrs) as writer:
            writer.split("train").append(indptr, times, units, labels)

    On a clean exit the store is finalised, re-opened and validated in its temporary location, then renamed to
    `path`. On an exception (or a kill) the temporary directory is removed (or left hidden, never under `path`).
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

    def __enter__(self) -> StoreWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._root = zarr.open_group(str(self._tmp), mode="w-", zarr_format=3)
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
        if exc_type is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            return
        try:
            self._finalise()
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise

    def _finalise(self) -> None:
        assert self._root is not None
        split_sha = {name: w.close()["content_sha256"] for name, w in self._splits.items()}
        attrs = {
            **self.attrs,
            "splits": list(self._splits),
            "split_sha256": split_sha,
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
        }
        # The format marker is written last: until then the temporary store cannot be opened.
        self._root.attrs.update(json.loads(json.dumps(attrs, default=_json_default)))
        open_store(self._tmp)
        if self.path.exists():
            trash = self.path.parent / f".{self.path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.path, trash)
            os.replace(self._tmp, self.path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self._tmp, self.path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"attribute value {obj!r} is not JSON-serialisable")

