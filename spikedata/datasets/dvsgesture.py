"""IBM DVS128 Gesture: AEDAT 3.1 recordings cut into one sample per labelled segment.

Layout (the ``DvsGesture/`` folder of the original archive, or its content)::

    userNN_<lighting>.aedat           AEDAT 3.1 (cAER), DVS128, 128 x 128, polarity events
    userNN_<lighting>_labels.csv      header ``class,startTime_usec,endTime_usec``; class 1-11
    trials_to_train.txt, trials_to_test.txt   one recording file name per line: the published split

Sample = the events of one CSV row, ``start <= t < end`` µs, times made relative to ``start``; label = class - 1
(11 classes, `CLASSES`). Samples are ordered by recording (natural order of the trial lists), then by row, so
the segments of one file are encoded one after another and the file is read once per worker.

The data set's quirks, handled explicitly (counted in the store's ``source`` and ``encode_stats``):

* label rows that overlap (a row starting before the previous row of the same file ends): ``overlap="keep"``
  (default, what the published labels say and SpikingJelly does) cuts each row as given, so events in the
  overlap belong to both samples; ``overlap="clip"`` ends a row where the next one starts;
* segments that run past the end of the recording are cut at its last event (``segments_past_end``; a segment
  that starts after it gives an empty sample, ``empty_segments``);
* a row with end <= start, or a class outside 1-11, is an error naming the file and line.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from spikedata.datasets.shared.declaration import Dataset, EncodeRun, Option
from spikedata.datasets.shared.event_folder import EventFolder, EventSplit, natural_key
from spikedata.datasets.shared.options import (
    BINNING,
    CHUNK,
    EVENT_CHECKS,
    SOURCE,
    SPLIT_SELECTION,
    EventChecks,
    SplitSelection,
)
from spikedata.errors import DatasetError
from spikedata.manifest import load_manifest

CLASSES = (
    "hand_clap", "right_hand_wave", "left_hand_wave", "right_arm_clockwise", "right_arm_counter_clockwise",
    "left_arm_clockwise", "left_arm_counter_clockwise", "arm_roll", "air_drums", "air_guitar", "other_gestures",
)  # fmt: skip
TRIAL_LISTS = {"train": "trials_to_train.txt", "test": "trials_to_test.txt"}
OVERLAP_POLICIES = ("keep", "clip")


def _root(source: Path) -> Path:
    for candidate in (source, source / "DvsGesture"):
        if all((candidate / f).is_file() for f in TRIAL_LISTS.values()):
            return candidate
    raise FileNotFoundError(
        f"{source}: no DVS128 Gesture trial lists ({', '.join(TRIAL_LISTS.values())}) here or in DvsGesture/"
    )


def read_labels(path: Path) -> list[tuple[int, int, int, int]]:
    """(label 0-10, start µs, end µs, CSV line) of every row of a ``*_labels.csv``."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if header[:3] != ["class", "startTime_usec", "endTime_usec"]:
            raise DatasetError(f"{path}:1: expected the header class,startTime_usec,endTime_usec, got {header}")
        for line, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            try:
                c, start, end = (int(float(v)) for v in row[:3])
            except ValueError:
                raise DatasetError(f"{path}:{line}: expected three integers, got {row}") from None
            if not 1 <= c <= len(CLASSES):
                raise DatasetError(f"{path}:{line}: class {c} outside 1-{len(CLASSES)}")
            if end <= start:
                raise DatasetError(f"{path}:{line}: segment end {end} <= start {start}")
            rows.append((c - 1, start, end, line))
    return rows


def find_dvsgesture(source: str | os.PathLike, overlap: str = "keep") -> EventFolder:
    """The published train / test splits of DVS128 Gesture under `source`, one sample per label row."""
    if overlap not in OVERLAP_POLICIES:
        raise ValueError(f"overlap must be one of {OVERLAP_POLICIES}, got {overlap!r}")
    root = _root(Path(source))
    manifest = load_manifest("dvsgesture")
    classes = tuple(manifest.classes or CLASSES)
    splits = {}
    n_overlaps = n_clipped = 0
    for split, list_name in TRIAL_LISTS.items():
        names = [ln.strip() for ln in (root / list_name).read_text(encoding="utf-8").splitlines() if ln.strip()]
        files, labels, segments = [], [], []
        for name in sorted(names, key=natural_key):
            rec = root / name
            if not rec.is_file():
                raise DatasetError(f"{root / list_name}: lists {name}, which is not in {root}")
            csv_path = rec.with_name(rec.stem + "_labels.csv")
            if not csv_path.is_file():
                raise DatasetError(f"{rec}: no labels file {csv_path.name} beside it")
            rows = read_labels(csv_path)
            for k, (label, start, end, _) in enumerate(rows):
                nxt = rows[k + 1][1] if k + 1 < len(rows) else None
                if nxt is not None and nxt < end:
                    n_overlaps += 1
                    if overlap == "clip":
                        end = max(nxt, start + 1)
                        n_clipped += 1
                files.append(name)
                labels.append(label)
                segments.append((start, end))
        splits[split] = EventSplit(str(root), split, tuple(files), tuple(labels), tuple(segments))
    notes = {"overlapping_label_rows": n_overlaps, "overlap_policy": overlap, "clipped_rows": n_clipped}
    return EventFolder(root, classes, splits, notes=notes, split_info={"kind": "published"})


def encode(dataset: Dataset, run: EncodeRun, source: Path, overlap: str, binning: dict, events: EventChecks,
           splits: SplitSelection, chunk: int) -> Path:
    """Bin the labelled segments of the DVS128 Gesture recordings under `source` (published split)."""
    from spikedata.datasets.shared.event_encoding import encode_with_layout

    folder = find_dvsgesture(source, overlap=overlap)
    if folder.notes.get("overlapping_label_rows"):
        run.report.note(f"{folder.notes['overlapping_label_rows']} label row(s) overlap the next row of their file "
                        f"(`overlap` {overlap})")
    return encode_with_layout(dataset, run, folder, binning, events, splits, chunk, published=True)


DATASET = Dataset(
    "dvsgesture",
    "IBM DVS128 Gesture: one sample per labelled segment, published split.",
    encode,
    options=(
        SOURCE,
        Option("overlap", str, "keep", "Overlapping label rows: 'keep' (each row as given) or 'clip' (a row ends "
               "where the next starts)."),
        BINNING, EVENT_CHECKS, SPLIT_SELECTION, CHUNK,
    ),
    manifest="dvsgesture",
    reader=find_dvsgesture,
    preset="dvsgesture-mlp",
)
