"""ASL-DVS: 100,800 DAVIS240C recordings (about 100 ms each) of 24 American Sign Language letters, one `.mat` each.

Layout: every `.mat` file under ``--source``; its class is the letter of the folder that holds it -- a folder named
by the letter (``a/``), or whose name ends in the letter after a separator (``Yin Bi - a/``), as the per-letter
archives unpack. Classes a-y without j (the manifest's order, label = position). macOS archive leftovers
(``__MACOSX/``, ``._*``) are skipped; a `.mat` file in any other folder is an error naming it. Each file holds the
column vectors ``ts`` (µs), ``x``, ``y``, ``pol`` (`spikedata.io.mat_events`, MATLAB level 5 or v7.3). Coordinates
are kept as stored (tonic mirrors y: ``--transform flip_y`` matches it). No split is published: a seeded stratified
one, by default the 80 / 20 that papers use (``--test-fraction``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from spikedata.datasets.shared.declaration import Dataset, EncodeRun
from spikedata.datasets.shared.event_folder import EventFolder, EventSplit, natural_key
from spikedata.datasets.shared.options import (
    BINNING,
    CHUNK,
    EVENT_CHECKS,
    SEEDED_SPLIT,
    SOURCE,
    TEST_FRACTION,
    EventChecks,
    SplitSelection,
)
from spikedata.errors import DatasetError
from spikedata.io.mat_events import read_mat_events
from spikedata.manifest import load_manifest

#: The test fraction of the split papers use (80 / 20), the default of --test-fraction.
DEFAULT_TEST_FRACTION = 0.2
_LETTER_FOLDER = re.compile(r"^(?:.*[^0-9a-z])?([a-z])$")


def _skipped(rel: Path) -> bool:
    """macOS archive leftovers: resource forks (``._name``) and the ``__MACOSX`` folder."""
    return rel.name.startswith("._") or "__MACOSX" in rel.parts


def letter_of(folder: str) -> str | None:
    """The letter a folder name stands for (``a``, ``Yin Bi - a``, ``asl_a`` -> "a"), or None."""
    m = _LETTER_FOLDER.match(folder.strip().lower())
    return m.group(1) if m else None


def find_asldvs(source: str | os.PathLike) -> EventFolder:
    """The ASL-DVS recordings under `source` as one split, ``train`` (ordered by letter, then natural path)."""
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such directory")
    classes = tuple(load_manifest("asldvs").classes or ())
    index = {c: i for i, c in enumerate(classes)}
    found: list[tuple[int, str]] = []
    for path in source.rglob("*"):
        rel = path.relative_to(source)
        if path.suffix.lower() != ".mat" or _skipped(rel) or not path.is_file():
            continue
        letter = letter_of(path.parent.name) if path.parent != source else None
        if letter not in index:
            raise DatasetError(f"{path}: not in a letter folder of ASL-DVS (a-y without j, e.g. a/ or 'Yin Bi - "
                               f"a/'); its folder is {path.parent.name!r}")
        found.append((index[letter], rel.as_posix()))
    if not found:
        raise FileNotFoundError(f"{source}: no ASL-DVS recordings (<letter>/*.mat) found")
    found.sort(key=lambda lf: (lf[0], natural_key(lf[1])))
    split = EventSplit(str(source), "train", tuple(f for _, f in found), tuple(label for label, _ in found),
                       reader=read_mat_events)
    return EventFolder(source, classes, {"train": split})


def encode(dataset: Dataset, run: EncodeRun, source: Path, binning: dict, events: EventChecks,
           splits: SplitSelection, chunk: int) -> Path:
    """Bin the ASL-DVS recordings under `source` on the manifest's 240 x 180 sensor, split by `splits`."""
    from spikedata.datasets.shared.event_encoding import encode_with_layout, note_unsplit

    folder = find_asldvs(source)
    note_unsplit(run, "ASL-DVS", splits)
    return encode_with_layout(dataset, run, folder, binning, events, splits, chunk)


DATASET = Dataset(
    "asldvs",
    "ASL-DVS (.mat per recording, 24 letters); no published split: a seeded stratified one (--test-fraction).",
    encode,
    options=(
        SOURCE.but(help="Directory holding the letter folders of .mat files (every .mat under it is read)."),
        BINNING, EVENT_CHECKS,
        SEEDED_SPLIT.but(test_fraction=TEST_FRACTION.but(
            default=DEFAULT_TEST_FRACTION, help="Seeded stratified test split of this fraction (default: the papers' "
            "80 / 20).")),
        CHUNK,
    ),
    manifest="asldvs",
    reader=find_asldvs,
    preset="asldvs-mlp",
)
