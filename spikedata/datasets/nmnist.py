"""N-MNIST: its folder layout and its binning presets (from the manifest); parsing lives in `spikedata.io.atis`.

After unzipping the two official archives the source directory holds ``Train/<digit>/<id>.bin`` and
``Test/<digit>/<id>.bin`` (`data_manifests/nmnist.toml`). Samples are ordered by digit, then by file id.

Presets (`PRESETS`), all with the sensor, bin and length of the manifest's `[layout]` (34 x 34, 600 µs, 540 steps):
* ``reference`` -- the HM2-BP reference conversion (algorithm.md §2.2): saccade stabilisation, step
  ``ceil(t / 600 µs) + 1`` kept when < 540, unit order polarity x height x width;
* ``reference-exact`` -- the same with the reference's channel numbering, polarity x X x Y (`unit_order="pxy"`):
  `NMNIST_REFERENCE`, the reference converter (``NMNIST_Converter('Train', 1, 600)`` followed by the C++ reader's
  +1 shift and ``t + 1 >= END_TIME`` cut) reproduced exactly;
* ``plain`` -- step ``floor(t / 600 µs)``, no stabilisation (`NMNIST_PLAIN`).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from spikedata.datasets.shared.declaration import Dataset, EncodeRun, Option
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
from spikedata.encoders.event_binning import BinningOptions
from spikedata.manifest import load_manifest


def _presets() -> dict[str, BinningOptions]:
    layout = load_manifest("nmnist").layout
    common = {"sensor_size": tuple(layout["sensor_size"]), "dt_us": int(layout["dt_us"]),
              "n_steps": int(layout["n_steps"])}
    exact = BinningOptions(**common, t_start_us=0, rounding="ceil", time_shift=1, stabilize=True, unit_order="pxy")
    return {"reference": replace(exact, unit_order="pyx"), "reference-exact": exact, "plain": BinningOptions(**common)}


PRESETS: dict[str, BinningOptions] = _presets()
#: The HM2-BP reference's N-MNIST conversion (algorithm.md §2.2), reproduced exactly (channel order included).
NMNIST_REFERENCE = PRESETS["reference-exact"]
#: N-MNIST without the reference's quirks: floor(t / 600), no shift, no stabilisation, polarity x height x width.
NMNIST_PLAIN = PRESETS["plain"]


def find_nmnist(source: str | os.PathLike) -> EventFolder:
    """The N-MNIST splits under `source` (``Train/`` and/or ``Test/`` with digit folders of ``.bin`` files)."""
    manifest = load_manifest("nmnist")
    source = Path(source)
    dirs = manifest.layout.get("split_dirs", {"train": "Train", "test": "Test"})
    present = [d for d in dirs.values() if (source / d).is_dir()]
    if not present:
        zips = [f.name for f in manifest.files if f.extract == "zip" and (source / f.name).is_file()]
        hint = f"; found {', '.join(zips)}: unzip them there first (`spikedata fetch nmnist` does)" if zips else ""
        raise FileNotFoundError(
            f"{source}: no N-MNIST split folders ({', '.join(dirs.values())}/<digit>/*.bin){hint}"
        )
    return scan_folder(source, extensions=(".bin",), classes=tuple(manifest.classes or ()))


def expected_counts() -> dict[str, int]:
    """Samples per split of the full data set (manifest); a partial copy is allowed but worth a warning."""
    manifest = load_manifest("nmnist")
    return {s: int(spec["n_samples"]) for s, spec in manifest.splits.items() if "n_samples" in spec}


def encode(dataset: Dataset, run: EncodeRun, source: Path, preset: str, stabilize: bool | None,
           binning: dict, events: EventChecks, splits: SplitSelection, chunk: int) -> Path:
    """Bin the N-MNIST files under `source` with the binning `preset` changed by the user's options."""
    from spikedata.datasets.shared.event_encoding import encode_event_folder

    folder = find_nmnist(source)
    for split, n in expected_counts().items():
        have = len(folder.splits[split]) if split in folder.splits else 0
        if have != n:
            run.report.note(f"split {split}: {have} files (the full set has {n})")
    base = PRESETS[preset]
    changes = {**binning, "stabilize": stabilize} if stabilize is not None else binning
    return encode_event_folder(dataset, run, folder, base.sensor_size, base, changes, events, splits, chunk,
                               published=True)


DATASET = Dataset(
    "nmnist",
    "N-MNIST from its unzipped .bin files, binned as the HM2-BP reference by default (--preset).",
    encode,
    options=(
        SOURCE.but(help="Directory holding Train/<digit>/*.bin and Test/<digit>/."),
        Option("preset", str, "reference", "'reference' (HM2-BP conversion, algorithm.md §2.2), 'reference-exact' "
               "(also the reference's channel order) or 'plain'.", choices=tuple(PRESETS)),
        Option("stabilize", bool, None, "Undo the three saccades (default: as the preset).", negatable=True),
        BINNING, EVENT_CHECKS, SPLIT_SELECTION, CHUNK,
    ),
    manifest="nmnist",
    reader=find_nmnist,
    preset="nmnist-mlp",
)
