"""A folder of event files -> labelled samples -> spike-store jobs (used by N-MNIST and `encode events`).

Layouts (labels from sub-folder names, or from a CSV):

* ``DIR/<split>/<class>/<file>`` when DIR holds split folders (train, test, val, validation; any case), e.g.
  N-MNIST's ``Train/<digit>/*.bin``;
* ``DIR/<class>/<file>``: one split, ``train``;
* ``--labels FILE.csv`` with a header row and columns ``file`` (path relative to DIR), ``label`` (class name) and
  optionally ``split`` (default ``train``).

Samples of a split are ordered by class, then by file path (natural order: numeric names by value), so a sample's
index depends only on the folder's content. Classes are ordered naturally too (``"2" < "10"``); label = position.
"""

from __future__ import annotations

import csv
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikedata.encoders.event_binning import BinningOptions, bin_events
from spikedata.io.events import read_events_with_info
from spikedata.pipeline import SplitJob
from spikedata.store import EventBlock

SPLIT_NAMES = {"train": "train", "test": "test", "val": "val", "validation": "val"}
#: File name endings read by default (case-insensitive).
EVENT_EXTENSIONS = (".bin", ".bs2", ".aedat", ".aedat4", ".dat")


def natural_key(text: str) -> tuple:
    """Sort key that orders digit runs by value ('2' < '10')."""
    return tuple(int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", text))


@dataclass(frozen=True)
class EventSplit:
    """One split: files (relative to `root`) and their labels. Small when pickled: the listing is cached."""

    root: str
    name: str
    files: tuple[str, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class EventFolder:
    """Splits and class names found in a folder of event files."""

    root: Path
    classes: tuple[str, ...]
    splits: dict[str, EventSplit]


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

    def __call__(self, start: int, stop: int) -> EventBlock:
        return encode_files(self.split, start, stop, self.options)


def encode_files(split: EventSplit, start: int, stop: int, options: BinningOptions) -> EventBlock:
    """EventBlock of samples [start, stop): read every file, bin it, concatenate; stats summed."""
    root = Path(split.root)
    times, units = [], []
    counts = np.zeros(stop - start, dtype=np.int64)
    stats = dict.fromkeys(
        ("events_read", "skipped_records", "collapsed", "dropped_time", "dropped_space", "spikes"), 0
    )
    for k, i in enumerate(range(start, stop)):
        path = root / split.files[i]
        # Files that state no sensor size (ATIS) are checked against the encoder's: nothing outside it is binned.
        events, info = read_events_with_info(path, sensor_size=options.sensor_size)
        b = bin_events(events, options)
        times.append(b.times)
        units.append(b.units)
        counts[k] = b.times.shape[0]
        stats["events_read"] += info.n_events
        stats["skipped_records"] += info.skipped_records
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
        extras={},
        stats=stats,
    )


def split_jobs(folder: EventFolder, options: BinningOptions, chunk: int = 256) -> dict[str, SplitJob]:
    """Pipeline jobs for every split of `folder` (train first, then test, then the rest by name)."""
    order = sorted(folder.splits, key=lambda s: ({"train": 0, "test": 1}.get(s, 2), s))
    return {s: SplitJob(len(folder.splits[s]), BinnedRange(folder.splits[s], options), chunk) for s in order}


@functools.lru_cache(maxsize=4)
def _probe(path: str) -> tuple[tuple[int, int] | None, str]:
    _, info = read_events_with_info(path)
    return info.sensor_size, info.format


def probe_sensor_size(folder: EventFolder) -> tuple[tuple[int, int] | None, str]:
    """(sensor size stated by the first file, its format); size None when the format does not state it."""
    first = next(iter(folder.splits.values()))
    return _probe(str(Path(first.root) / first.files[0]))


def store_attrs(
    dataset: str, folder: EventFolder, options: BinningOptions, encoder: str = "event_binning"
) -> dict:
    """Root attributes of the store (docs/store.md) for `folder` binned with `options`.

    Source checksums: sha256 of every file would cost a full extra read of the data set, so `source` records
    the folder, its file count and total size instead; the per-sample order is fixed by `scan_folder`.
    """
    n_files = sum(len(s) for s in folder.splits.values())
    size = sum(
        os.path.getsize(os.path.join(s.root, f)) for s in folder.splits.values() for f in s.files
    )
    return {
        "dataset": dataset,
        "encoder": {"name": encoder, "params": options.params()},
        "n_units": options.n_units,
        "unit_shape": list(options.unit_shape),
        "n_steps": options.n_steps,
        "dt_us": options.dt_us,
        "classes": list(folder.classes),
        "seed": 0,
        "source": {"files": {}, "folder": str(folder.root), "n_files": n_files, "total_bytes": size},
    }
