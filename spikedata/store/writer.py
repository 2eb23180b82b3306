"""Writing a spike store: `StoreWriter` (one writer per path, under a lock, into a hidden sibling, installed only
when complete and verified) and its `SplitWriter`s, which write whole chunks and record their digests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle, Crc32cCodec

from spikedata.locking import PathLock
from spikedata.store.format import (
    EVENT_CHUNK,
    FORMAT,
    FORMAT_VERSION,
    REQUIRED_ROOT_ATTRS,
    SAMPLE_CHUNK,
    fill_value_for,
    first_unsorted_sample,
    index_dtype,
)
from spikedata.store.integrity import (
    CHUNK_DIGEST,
    canonical_sha256,
    chunk_digests,
    chunk_manifest_entry,
    digested_root_attrs,
)
from spikedata.store.reader import open_store
from spikedata.store.swap import clean_leftovers, install

_EVENT_CODECS = [BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.shuffle)]
_SAMPLE_CODECS = [BloscCodec(cname="zstd", clevel=5, shuffle=BloscShuffle.shuffle)]


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
        bad = first_unsorted_sample(indptr, t, u)
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
            name: chunk_manifest_entry(g[name], self._chunk, self._digests[name]) for name in ("times", "units")
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


def _write_array(group: zarr.Group, name: str, data: np.ndarray, chunk: int,
                 attributes: dict[str, Any] | None = None,
                 dimension_names: tuple[str, ...] | None = None) -> dict[str, Any]:
    arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=(chunk, *data.shape[1:]),
                             compressors=_codecs(_SAMPLE_CODECS), fill_value=fill_value_for(name, data.dtype),
                             attributes=attributes or {}, dimension_names=dimension_names)
    if data.size:
        arr[...] = data
    return chunk_manifest_entry(arr, chunk, chunk_digests(data, chunk))


def _write_extra(group: zarr.Group, name: str, data: np.ndarray) -> dict[str, Any]:
    attributes = {}
    if data.dtype.kind in "UOS":
        categories, codes = np.unique(data.astype(str), return_inverse=True)
        data = codes.astype(np.int32).reshape(data.shape)
        attributes["categories"] = categories.tolist()
    dims = ("sample", *(f"{name}_dim{k}" for k in range(1, data.ndim)))
    return _write_array(group, f"extra/{name}", data, min(SAMPLE_CHUNK, max(1, len(data))), attributes, dims)


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
        missing = [k for k in REQUIRED_ROOT_ATTRS if k not in attrs]
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
            "attributes": canonical_sha256(digested_root_attrs(attrs)),
            "splits": {name: canonical_sha256(a) for name, a in split_attrs.items()},
        }
        # The format marker is written last (one write of zarr.json): until then the store cannot be opened.
        self._root.attrs.update(attrs)
        open_store(self._tmp)
        install(self._tmp, self.path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"attribute value {obj!r} is not JSON-serialisable")
