"""A folder of event files -> labelled samples -> spike-store jobs (used by N-MNIST and `encode events`).

Layouts (labels from sub-folder names, or from a CSV):

* ``DIR/<split>/<class>/<file>`` when DIR holds split folders (train, test, val, validation; any case), e.g.
  N-MNIST's ``Train/<digit>/*.bin``;
* ``DIR/<class>/<file>``: one split, ``train``;
* a labels CSV file (``labels``) with a header row and columns ``file`` (path relative to DIR), ``label`` (class
  name) and optionally ``split`` (default ``train``).

Samples of a split are ordered by class, then by file path (natural order: numeric names by value), so a sample's
index depends only on the folder's content. Classes are ordered naturally too (``"2" < "10"``); label = position.

A sample may also be a time segment of a file (`EventSplit.segments`, [start, end) µs; DVS128 Gesture): its
events are cut to the segment and their times made relative to its start. Before binning, every sample's events
are checked against the declared sensor (`EventPrep`: an error naming the file, with counts and the observed
extent, or dropped and counted with ``drop_outside``) and run through the `spikedata.transforms` of the encode.
`select_splits` applies a seeded stratified split and ``--max-*`` subsets (`spikedata.splits`).
"""

from __future__ import annotations

import csv
import functools
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from spikedata.encoders.event_binning import BinningOptions, bin_events
from spikedata.errors import DatasetError
from spikedata.io.events import read_events_with_info
from spikedata.pipeline import SplitJob
from spikedata.splits import split_record, stratified_split, stratified_subset, subset_record
from spikedata.store import EventBlock
from spikedata.transforms import TransformSpec, apply_transforms, check_inside, drop_outside

SPLIT_NAMES = {"train": "train", "test": "test", "val": "val", "validation": "val"}
#: File name endings read by default (case-insensitive).
EVENT_EXTENSIONS = (".bin", ".bs2", ".aedat", ".aedat4", ".dat")


def natural_key(text: str) -> tuple:
    """Sort key that orders digit runs by value ('2' < '10')."""
    return tuple(int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", text))


@dataclass(frozen=True)
class EventSplit:
    """One split: files (relative to `root`) and their labels; with `segments`, sample i is the time segment
    [start, end) µs of `files[i]`. `read_options` go to the reader (e.g. an AEDAT 2.0 address layout)."""

    root: str
    name: str
    files: tuple[str, ...]
    labels: tuple[int, ...]
    segments: tuple[tuple[int, int], ...] | None = None
    read_options: tuple[tuple[str, Any], ...] = ()

    def __len__(self) -> int:
        return len(self.files)

    def keys(self) -> list[str]:
        """A stable identifier per sample (file path, ``path#start-end`` for segments) for `spikedata.splits`."""
        if self.segments is None:
            return list(self.files)
        return [f"{f}#{a}-{b}" for f, (a, b) in zip(self.files, self.segments, strict=True)]

    def select(self, indices: np.ndarray, name: str | None = None) -> EventSplit:
        """The split of the samples at `indices` (in that order), renamed to `name` if given."""
        idx = [int(i) for i in indices]
        return replace(
            self,
            name=name or self.name,
            files=tuple(self.files[i] for i in idx),
            labels=tuple(self.labels[i] for i in idx),
            segments=None if self.segments is None else tuple(self.segments[i] for i in idx),
        )


@dataclass(frozen=True)
class EventFolder:
    """Splits and class names found in a folder of event files; `notes` describe what was found (recorded in
    the store's `source` attribute), `split_info` how the splits were made."""

    root: Path
    classes: tuple[str, ...]
    splits: dict[str, EventSplit]
    notes: dict[str, Any] = field(default_factory=dict)
    split_info: dict[str, Any] = field(default_factory=dict)


def select_splits(
    folder: EventFolder,
    test_fraction: float | None = None,
    split_seed: int = 0,
    max_samples: dict[str, int] | None = None,
    published: bool = False,
) -> EventFolder:
    """`folder` with a seeded stratified test split made from its only split (`test_fraction`), then every split
    cut to a seeded stratified subset of at most `max_samples[split]` samples. A dataset with a `published`
    split refuses `test_fraction`; so does a folder that already has a test split."""
    splits = dict(folder.splits)
    info: dict[str, Any] = dict(folder.split_info) or {"kind": "published" if published else "folders"}
    if test_fraction is not None:
        if published or "test" in splits:
            raise DatasetError(f"{folder.root}: the data set has its own test split; --test-fraction would replace "
                               "it (use the published split, or --max-test for a smaller test set)")  # fmt: skip
        if len(splits) != 1:
            raise DatasetError(f"{folder.root}: --test-fraction needs exactly one split, found {sorted(splits)}")
        (source_name, source), = splits.items()
        train, test = stratified_split(np.asarray(source.labels), source.keys(), test_fraction, split_seed)
        splits = {"train": source.select(train, "train"), "test": source.select(test, "test")}
        info = split_record(test_fraction, split_seed, source_name, len(train), len(test))
    for name, limit in (max_samples or {}).items():
        if limit is None or name not in splits:
            continue
        split = splits[name]
        keep = stratified_subset(np.asarray(split.labels), split.keys(), int(limit), split_seed)
        if len(keep) < len(split):
            info.setdefault("subsets", {})[name] = subset_record(len(keep), len(split), split_seed)
            splits[name] = split.select(keep)
    return replace(folder, splits=splits, split_info=info)


@dataclass(frozen=True)
class EventPrep:
    """What happens to a sample's events between the reader and the binning: the check against the declared
    `sensor_size` (width, height; events outside it are an error unless `drop_outside`), then `transforms` in
    order (seeded ones from (seed, sample index))."""

    sensor_size: tuple[int, int]
    transforms: tuple[TransformSpec, ...] = ()
    drop_outside: bool = False
    seed: int = 0

    @property
    def output_size(self) -> tuple[int, int]:
        """Sensor size (width, height) after the transforms: what the binning sees."""
        size = tuple(self.sensor_size)
        for spec in self.transforms:
            size = spec.output_size(size)
        return size

    def record(self) -> dict[str, Any]:
        return {"sensor_size": list(self.sensor_size), "outside_sensor": "drop" if self.drop_outside else "error",
                "transforms": [t.to_dict() for t in self.transforms], "transform_seed": self.seed}  # fmt: skip


def _files_under(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    found = [p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(extensions)]
    return sorted(found, key=lambda p: natural_key(p.relative_to(folder).as_posix()))


def scan_folder(
    root: str | os.PathLike,
    extensions: tuple[str, ...] = EVENT_EXTENSIONS,
    labels_csv: str | os.PathLike | None = None,
    classes: tuple[str, ...] | None = None,
) -> EventFolder:
    """Find the labelled event files under `root` (layouts in the module docstring).

    `classes` fixes the class names and their order (a class folder / CSV label outside it is an error);
    by default they are the names found, in natural order.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    per_split: dict[str, list[tuple[str, str]]] = {}
    if labels_csv is not None:
        per_split = _read_labels_csv(Path(labels_csv), root)
    else:
        subdirs = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: natural_key(d.name))
        split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_NAMES]
        layout = [(SPLIT_NAMES[d.name.lower()], d) for d in split_dirs] if split_dirs else [("train", root)]
        for split, folder in layout:
            for class_dir in sorted((d for d in folder.iterdir() if d.is_dir()), key=lambda d: natural_key(d.name)):
                for f in _files_under(class_dir, extensions):
                    per_split.setdefault(split, []).append((f.relative_to(root).as_posix(), class_dir.name))
    if not per_split:
        raise FileNotFoundError(
            f"{root}: no event files ({', '.join(extensions)}) in class sub-folders (DIR/<class>/ or "
            f"DIR/<split>/<class>/); give a labels CSV for other layouts"
        )
    names = sorted({c for items in per_split.values() for _, c in items}, key=natural_key)
    if classes is None:
        classes = tuple(names)
    else:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise ValueError(f"{root}: classes {unknown} are not among the expected {list(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split, items in per_split.items():
        items = sorted(items, key=lambda fc: (index[fc[1]], natural_key(fc[0])))
        splits[split] = EventSplit(str(root), split, tuple(f for f, _ in items), tuple(index[c] for _, c in items))
    return EventFolder(root, tuple(classes), splits)


def _read_labels_csv(path: Path, root: Path) -> dict[str, list[tuple[str, str]]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such labels CSV")
    out: dict[str, list[tuple[str, str]]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        if "file" not in cols or "label" not in cols:
            raise ValueError(f"{path}: the CSV needs a header with columns 'file' and 'label' (optional 'split')")
        for line, row in enumerate(reader, start=2):
            rel = (row[cols["file"]] or "").strip()
            label = (row[cols["label"]] or "").strip()
            if not rel or not label:
                raise ValueError(f"{path}:{line}: empty file or label")
            if not (root / rel).is_file():
                raise FileNotFoundError(f"{path}:{line}: {root / rel} does not exist")
            split = (row[cols["split"]].strip().lower() if "split" in cols else "") or "train"
            out.setdefault(SPLIT_NAMES.get(split, split), []).append((Path(rel).as_posix(), label))
    return out


@dataclass(frozen=True)
class BinnedRange:
    """Picklable `encode_range` for the pipeline: reads and bins samples [start, stop) of one split."""

    split: EventSplit
    options: BinningOptions
    prep: EventPrep | None = None

    def __call__(self, start: int, stop: int) -> EventBlock:
        return encode_files(self.split, start, stop, self.options, self.prep)


@functools.lru_cache(maxsize=2)
def _read_cached(path: str, options: tuple) -> tuple[np.ndarray, Any]:
    """Segments of one recording come one after another: read the file once per worker, not once per segment."""
    return read_events_with_info(path, **dict(options))


def _segment(events: np.ndarray, start: int, end: int, stats: dict) -> np.ndarray:
    t = events["t"]
    if len(t) and end > int(t[-1]) + 1:
        stats["segments_past_end"] += 1
    lo, hi = np.searchsorted(t, start, "left"), np.searchsorted(t, end, "left")
    if hi <= lo:
        stats["empty_segments"] += 1
    out = events[lo:hi].copy()
    out["t"] -= start
    return out


def prepare_events(events: np.ndarray, prep: EventPrep, where: str, index: int, stats: dict) -> np.ndarray:
    """A sample's events after the sensor check (or drop) and the transforms of `prep`."""
    if prep.drop_outside:
        events, n = drop_outside(events, prep.sensor_size)
        stats["dropped_outside"] += n
    else:
        check_inside(events, prep.sensor_size, where)
    if prep.transforms:
        events, _ = apply_transforms(events, prep.transforms, prep.sensor_size, seed=(prep.seed << 32) + index)
    return events


def encode_files(
    split: EventSplit, start: int, stop: int, options: BinningOptions, prep: EventPrep | None = None
) -> EventBlock:
    """EventBlock of samples [start, stop): read every file (cut to its segment), check and transform its events
    (`prep`), bin them, concatenate; stats summed."""
    root = Path(split.root)
    times, units = [], []
    counts = np.zeros(stop - start, dtype=np.int64)
    stats = dict.fromkeys(
        ("events_read", "skipped_records", "collapsed", "dropped_time", "dropped_space", "spikes"), 0
    )
    if prep is not None:
        stats["dropped_outside"] = 0
    if split.segments is not None:
        stats.update(segments_past_end=0, empty_segments=0)
    segment_us = np.zeros((stop - start, 2), dtype=np.int64) if split.segments is not None else None
    for k, i in enumerate(range(start, stop)):
        path = root / split.files[i]
        # Files that state no sensor size (ATIS, DAT) are checked against the encoder's, unless the transforms step
        # does that check (it says how many events fall outside and can drop them).
        bound = () if prep is not None else (("sensor_size", tuple(options.sensor_size)),)
        if split.segments is not None:
            events, info = _read_cached(str(path), tuple(split.read_options) + bound)
            a, b_ = split.segments[i]
            segment_us[k] = (a, b_)
            where = f"{path} [{a}, {b_}) µs"
            events = _segment(events, a, b_, stats)
        else:
            events, info = read_events_with_info(path, **dict(tuple(split.read_options) + bound))
            where = str(path)
        if prep is not None:
            events = prepare_events(events, prep, where, i, stats)
        b = bin_events(events, options)
        times.append(b.times)
        units.append(b.units)
        counts[k] = b.times.shape[0]
        stats["events_read"] += info.n_events if split.segments is None else 0
        stats["skipped_records"] += info.skipped_records if split.segments is None else 0
        stats["collapsed"] += b.n_collapsed
        stats["dropped_time"] += b.n_dropped_time
        stats["dropped_space"] += b.n_dropped_space
        stats["spikes"] += b.times.shape[0]
    indptr = np.zeros(stop - start + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return EventBlock(
        indptr=indptr,
        times=np.concatenate(times) if times else np.empty(0, np.uint32),
        units=np.concatenate(units) if units else np.empty(0, np.uint32),
        labels=np.asarray(split.labels[start:stop], dtype=np.int16),
        extras={} if segment_us is None else {"segment_us": segment_us},
        stats=stats,
    )


def split_jobs(
    folder: EventFolder, options: BinningOptions, chunk: int = 256, prep: EventPrep | None = None
) -> dict[str, SplitJob]:
    """Pipeline jobs for every split of `folder` (train first, then test, then the rest by name)."""
    order = sorted(folder.splits, key=lambda s: ({"train": 0, "test": 1}.get(s, 2), s))
    return {s: SplitJob(len(folder.splits[s]), BinnedRange(folder.splits[s], options, prep), chunk) for s in order}


@functools.lru_cache(maxsize=4)
def _probe(path: str) -> tuple[tuple[int, int] | None, str]:
    _, info = read_events_with_info(path)
    return info.sensor_size, info.format


def probe_sensor_size(folder: EventFolder) -> tuple[tuple[int, int] | None, str]:
    """(sensor size stated by the first file, its format); size None when the format does not state it."""
    first = next(iter(folder.splits.values()))
    return _probe(str(Path(first.root) / first.files[0]))


def store_attrs(
    dataset: str, folder: EventFolder, options: BinningOptions, encoder: str = "event_binning",
    prep: EventPrep | None = None,
) -> dict:
    """Root attributes of the store (docs/store.md) for `folder` binned with `options`.

    Source checksums: sha256 of every file would cost a full extra read of the data set, so `source` records
    the folder, its file count and total size instead; the per-sample order is fixed by `scan_folder`.
    """
    paths = sorted({os.path.join(s.root, f) for s in folder.splits.values() for f in s.files})
    n_files = len(paths)
    size = sum(os.path.getsize(p) for p in paths)
    source: dict[str, Any] = {"files": {}, "folder": str(folder.root), "n_files": n_files, "total_bytes": size}
    source.update(folder.notes)
    attrs = {
        "dataset": dataset,
        "encoder": {"name": encoder, "params": options.params()},
        "n_units": options.n_units,
        "unit_shape": list(options.unit_shape),
        "n_steps": options.n_steps,
        "dt_us": options.dt_us,
        "classes": list(folder.classes),
        "seed": 0 if prep is None else prep.seed,
        "source": source,
        "split": folder.split_info or {"kind": "folders"},
    }
    if prep is not None:
        attrs["events"] = prep.record()
    return attrs
