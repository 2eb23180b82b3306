"""A folder of event files -> labelled samples, split by the dataset's own rule or a seeded stratified one.

Layouts (labels from sub-folder names, or from a CSV):

* ``DIR/<split>/<class>/<file>`` when DIR holds split folders (train, test, val, validation; any case), e.g.
  N-MNIST's ``Train/<digit>/*.bin``;
* ``DIR/<class>/<file>``: one split, ``train``;
* a labels CSV file (``labels``) with a header row and columns ``file`` (path relative to DIR), ``label`` (class
  name) and optionally ``split`` (default ``train``).

Samples of a split are ordered by class, then by file path (natural order: numeric names by value), so a sample's
index depends only on the folder's content. Classes are ordered naturally too (``"2" < "10"``); label = position.

A sample may also be a time segment of a file (`EventSplit.segments`, [start, end) µs; DVS128 Gesture).
`select_splits` applies a seeded stratified split and ``--max-*`` subsets (`spikedata.splits`). Binning the
samples into a store is `spikedata.datasets.shared.event_encoding`.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from spikedata.errors import DatasetError
from spikedata.splits import split_record, stratified_split, stratified_subset, subset_record

SPLIT_NAMES = {"train": "train", "test": "test", "val": "val", "validation": "val"}
#: File name endings read by default (case-insensitive).
EVENT_EXTENSIONS = (".bin", ".bs2", ".aedat", ".aedat4", ".dat", ".raw", ".hdf5", ".h5")


def natural_key(text: str) -> tuple:
    """Sort key that orders digit runs by value ('2' < '10')."""
    return tuple(int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", text))


@dataclass(frozen=True)
class EventSplit:
    """One split: files (relative to `root`) and their labels; with `segments`, sample i is the time segment
    [start, end) µs of `files[i]`. `read_options` go to the reader (e.g. an AEDAT 2.0 address layout). `reader`
    reads files that are not event-camera recordings (a dataset's own container: ASL-DVS's .mat, DVS-Lip's .npy):
    an importable function `reader(path, **read_options) -> (events, EventFileInfo)`; None: the event-file reader
    (`spikedata.io.events.read_events_with_info`, format detected from the content)."""

    root: str
    name: str
    files: tuple[str, ...]
    labels: tuple[int, ...]
    segments: tuple[tuple[int, int], ...] | None = None
    read_options: tuple[tuple[str, Any], ...] = ()
    reader: Callable[..., tuple[np.ndarray, Any]] | None = None

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


def files_under(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Files under `folder` (recursively) whose names end in one of `extensions` (lower case), in natural order."""
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
                for f in files_under(class_dir, extensions):
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
