"""N-Caltech101: the Caltech101 images recorded by an ATIS camera making three saccades, 40-bit ATIS ``.bin``.

Layout: ``Caltech101/<class>/image_NNNN.bin`` (after unzipping; the ``Caltech101/`` level is optional). 101
folders (100 object classes and ``BACKGROUND_Google``), class names and order from the folder names (natural
order). No split is published: give ``--test-fraction`` for a seeded stratified one (`spikedata.splits`).

The recordings have different extents (each image was shown at its own size): the sensor size is the largest
extent over all files (`scan_extent`, a fast pass over the raw records), recorded in the store's ``source``, or
the one the user gives.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from spikedata.datasets.shared.declaration import Dataset, EncodeRun
from spikedata.datasets.shared.event_folder import EventFolder, scan_folder
from spikedata.datasets.shared.options import (
    BINNING,
    CHUNK,
    EVENT_CHECKS,
    SEEDED_SPLIT,
    SENSOR_SIZE,
    SOURCE,
    EventChecks,
    SplitSelection,
    parse_ints,
)
from spikedata.io.atis import OVERFLOW_Y, RECORD_BYTES


def find_ncaltech101(source: str | os.PathLike) -> EventFolder:
    """The N-Caltech101 samples under `source` (one split, ``train``)."""
    source = Path(source)
    root = source / "Caltech101" if (source / "Caltech101").is_dir() else source
    folder = scan_folder(root, extensions=(".bin",))
    if set(folder.splits) != {"train"}:
        raise FileNotFoundError(f"{root}: expected <class>/image_NNNN.bin folders, found split folders "
                                f"{sorted(folder.splits)}")  # fmt: skip
    return folder


def scan_extent(folder: EventFolder) -> tuple[int, int]:
    """(width, height) px holding every event of every file: 1 + the largest x and y (overflow markers skipped)."""
    max_x = max_y = -1
    for split in folder.splits.values():
        for rel in split.files:
            data = np.fromfile(os.path.join(split.root, rel), dtype=np.uint8)
            raw = data[: len(data) // RECORD_BYTES * RECORD_BYTES].reshape(-1, RECORD_BYTES)
            events = raw[raw[:, 1] != OVERFLOW_Y]
            if len(events):
                max_x = max(max_x, int(events[:, 0].max()))
                max_y = max(max_y, int(events[:, 1].max()))
    return max_x + 1, max_y + 1


def encode(dataset: Dataset, run: EncodeRun, source: Path, sensor_size: str | None, binning: dict,
           events: EventChecks, splits: SplitSelection, chunk: int) -> Path:
    """Bin the N-Caltech101 recordings under `source` on the given sensor (WIDTH,HEIGHT), else on the largest
    extent of the files."""
    from spikedata.datasets.shared.event_encoding import encode_with_layout, note_unsplit

    folder = find_ncaltech101(source)
    size = parse_ints(sensor_size, 2, "sensor_size")
    observed = scan_extent(folder) if size is None else None
    if size is None:
        size = observed
        run.report.say(f"sensor size from the data: {size[0]} x {size[1]}")
    folder = replace(folder, notes={**folder.notes, "sensor_size_observed": observed and list(observed)})
    note_unsplit(run, "N-Caltech101", splits)
    return encode_with_layout(dataset, run, folder, binning, events, splits, chunk, sensor_size=size)


DATASET = Dataset(
    "ncaltech101",
    "N-Caltech101 (ATIS .bin), sensor size from the data; no published split (use --test-fraction).",
    encode,
    options=(
        SOURCE,
        SENSOR_SIZE.but(help="WIDTH,HEIGHT (default: the largest extent of the files, scanned first)."),
        BINNING, EVENT_CHECKS, SEEDED_SPLIT, CHUNK,
    ),
    manifest="ncaltech101",
    reader=find_ncaltech101,
)
