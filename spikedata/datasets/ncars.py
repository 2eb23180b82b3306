"""Prophesee N-CARS: 100 ms ATIS recordings of cars and background, Prophesee ``.dat`` files.

Layout: ``n-cars_train/{cars,background}/*.dat`` and ``n-cars_test/{cars,background}/*.dat`` (the two folders of
the official archives; the ``n-cars_`` prefix is optional). Classes ``background`` (0), ``cars`` (1); the split is
the published one. The ``.dat`` headers state no geometry: the sensor is taken from the manifest (120 x 100).
"""

from __future__ import annotations

import os
from pathlib import Path

from spikedata.datasets.shared.declaration import Dataset, EncodeRun
from spikedata.datasets.shared.event_folder import EventFolder, EventSplit, files_under
from spikedata.datasets.shared.options import (
    BINNING,
    CHUNK,
    EVENT_CHECKS,
    SOURCE,
    SPLIT_SELECTION,
    EventChecks,
    SplitSelection,
)
from spikedata.manifest import load_manifest


def find_ncars(source: str | os.PathLike) -> EventFolder:
    """The published splits of N-CARS under `source`."""
    source = Path(source)
    manifest = load_manifest("ncars")
    classes = tuple(manifest.classes or ("background", "cars"))
    splits = {}
    for split in ("train", "test"):
        folder = next((source / d for d in (f"n-cars_{split}", split) if (source / d).is_dir()), None)
        if folder is None:
            continue
        files, labels = [], []
        for label, name in enumerate(classes):
            for f in files_under(folder / name, (".dat",)) if (folder / name).is_dir() else []:
                files.append(f.relative_to(source).as_posix())
                labels.append(label)
        if files:
            splits[split] = EventSplit(str(source), split, tuple(files), tuple(labels))
    if not splits:
        raise FileNotFoundError(f"{source}: no N-CARS folders n-cars_train/ or n-cars_test/ with "
                                f"{'/ and '.join(classes)}/ *.dat files")  # fmt: skip
    return EventFolder(source, classes, splits, split_info={"kind": "published"})


def encode(dataset: Dataset, run: EncodeRun, source: Path, binning: dict, events: EventChecks,
           splits: SplitSelection, chunk: int) -> Path:
    """Bin the N-CARS recordings under `source` (published split) on the manifest's sensor."""
    from spikedata.datasets.shared.event_encoding import encode_with_layout

    return encode_with_layout(dataset, run, find_ncars(source), binning, events, splits, chunk, published=True)


DATASET = Dataset(
    "ncars",
    "Prophesee N-CARS (.dat), published split.",
    encode,
    options=(SOURCE, BINNING, EVENT_CHECKS, SPLIT_SELECTION, CHUNK),
    manifest="ncars",
    reader=find_ncars,
    preset="ncars-mlp",
)
