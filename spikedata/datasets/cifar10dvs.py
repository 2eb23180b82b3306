"""CIFAR10-DVS: CIFAR-10 images moved in front of a DVS128, 10 classes, 1,000 recordings each.

Layout: ``<class>/cifar10_<class>_N.aedat`` (the original release: AEDAT 2.0 written by jAER, DVS128 address
layout, read with ``layout="dvs128"`` since not every header names the chip) or ``<class>/cifar10_<class>_N.aedat4``
(the AEDAT 4.0 re-hosting). Classes in the manifest's order (airplane ... truck); 128 x 128 sensor. Coordinates are
the addresses as stored (SpikingJelly additionally mirrors both axes: use the ``flip_x`` / ``flip_y``
transforms to match it). No split is published: give ``--test-fraction`` for a seeded stratified one.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from spikedata.datasets.shared.declaration import Dataset, EncodeRun
from spikedata.datasets.shared.event_folder import EventFolder, scan_folder
from spikedata.datasets.shared.options import (
    BINNING,
    CHUNK,
    EVENT_CHECKS,
    SEEDED_SPLIT,
    SOURCE,
    EventChecks,
    SplitSelection,
)
from spikedata.errors import DatasetError
from spikedata.manifest import load_manifest


def find_cifar10dvs(source: str | os.PathLike) -> EventFolder:
    """The CIFAR10-DVS recordings under `source` (one split, ``train``); AEDAT 2.0 and 4.0 files may not mix."""
    source = Path(source)
    classes = tuple(load_manifest("cifar10dvs").classes or ())
    folder = scan_folder(source, extensions=(".aedat", ".aedat4"), classes=classes)
    if set(folder.splits) != {"train"}:
        raise FileNotFoundError(f"{source}: expected <class>/cifar10_<class>_N.aedat[4] folders, found split "
                                f"folders {sorted(folder.splits)}")  # fmt: skip
    split = folder.splits["train"]
    kinds = {f.lower().endswith(".aedat4") for f in split.files}
    if len(kinds) > 1:
        raise DatasetError(f"{source}: both .aedat (AEDAT 2.0) and .aedat4 files; keep one release")
    options = () if kinds == {True} else (("layout", "dvs128"),)
    release = "aedat4" if kinds == {True} else "aedat2"
    return replace(folder, splits={"train": replace(split, read_options=options)}, notes={"release": release})


def encode(dataset: Dataset, run: EncodeRun, source: Path, binning: dict, events: EventChecks,
           splits: SplitSelection, chunk: int) -> Path:
    """Bin the CIFAR10-DVS recordings under `source` on the manifest's 128 x 128 sensor."""
    from spikedata.datasets.shared.event_encoding import encode_with_layout, note_unsplit

    folder = find_cifar10dvs(source)
    note_unsplit(run, "CIFAR10-DVS", splits)
    return encode_with_layout(dataset, run, folder, binning, events, splits, chunk)


DATASET = Dataset(
    "cifar10dvs",
    "CIFAR10-DVS (AEDAT 2.0 or 4.0); no published split (use --test-fraction, e.g. 0.1).",
    encode,
    options=(SOURCE, BINNING, EVENT_CHECKS, SEEDED_SPLIT, CHUNK),
    manifest="cifar10dvs",
    reader=find_cifar10dvs,
    preset="cifar10dvs-mlp",
)
