"""DVS-Lip: event recordings of the lips of speakers saying 100 words, 128 x 128, one `.npy` per utterance.

Layout: ``[DVS-Lip/]train/<word>/<n>.npy`` and ``[DVS-Lip/]test/<word>/<n>.npy`` (the archive unpacked; the
``DVS-Lip/`` level is optional), the published split. Classes: the 100 words in the manifest's (alphabetical)
order, as the authors' loader and tonic number them; a word folder outside the list is an error. Each file holds a
structured array with the fields ``t`` (µs), ``x``, ``y``, ``p`` (`spikedata.io.npy_events`). The authors' code
keeps the central 96 x 96 pixels (x, y in [16, 112)): ``--transform center_crop:width=96,height=96`` does the same.
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
    SOURCE,
    SPLIT_SELECTION,
    EventChecks,
    SplitSelection,
)
from spikedata.io.npy_events import read_npy_events
from spikedata.manifest import load_manifest


def find_dvslip(source: str | os.PathLike) -> EventFolder:
    """The published splits of DVS-Lip under `source` (a missing split folder leaves that split out)."""
    source = Path(source)
    root = source / "DVS-Lip" if (source / "DVS-Lip").is_dir() else source
    if not any((root / s).is_dir() for s in ("train", "test")):
        raise FileNotFoundError(f"{root}: no DVS-Lip folders train/ or test/ (each with one folder of .npy files "
                                "per word)")
    folder = scan_folder(root, extensions=(".npy",), classes=tuple(load_manifest("dvslip").classes or ()))
    unexpected = sorted(set(folder.splits) - {"train", "test"})
    if unexpected:
        raise FileNotFoundError(f"{root}: split folders {unexpected} besides train/ and test/; DVS-Lip has only "
                                "those two")
    splits = {name: replace(split, reader=read_npy_events) for name, split in folder.splits.items()}
    return replace(folder, splits=splits, split_info={"kind": "published"})


def encode(dataset: Dataset, run: EncodeRun, source: Path, binning: dict, events: EventChecks,
           splits: SplitSelection, chunk: int) -> Path:
    """Bin the DVS-Lip utterances under `source` (published split) on the manifest's 128 x 128 sensor."""
    from spikedata.datasets.shared.event_encoding import encode_with_layout

    folder = find_dvslip(source)
    for missing in sorted({"train", "test"} - set(folder.splits)):
        run.report.note(f"no {missing}/ folder under {folder.root}: the store gets no {missing!r} split")
    return encode_with_layout(dataset, run, folder, binning, events, splits, chunk, published=True)


DATASET = Dataset(
    "dvslip",
    "DVS-Lip (.npy per utterance, 100 words), published split.",
    encode,
    options=(SOURCE.but(help="Directory holding DVS-Lip/ (or its train/ and test/ folders)."), BINNING,
             EVENT_CHECKS, SPLIT_SELECTION, CHUNK),
    manifest="dvslip",
    reader=find_dvslip,
    preset="dvslip-mlp",
)
