"""N-MNIST: its folder layout (from the manifest) and its binning presets; parsing lives in `spikedata.io.atis`.

After unzipping the two official archives the source directory holds ``Train/<digit>/<id>.bin`` and
``Test/<digit>/<id>.bin`` (`data_manifests/nmnist.toml`). Samples are ordered by digit, then by file id.

Presets (`PRESETS`):
* ``reference`` -- the HM2-BP reference conversion (algorithm.md §2.2): saccade stabilisation, step
  ``ceil(t / 600 µs) + 1`` kept when < 540, unit order polarity x height x width (the reference's channel
  numbering, polarity x X x Y, is `unit_order="pxy"`);
* ``plain`` -- step ``floor(t / 600 µs)``, no stabilisation.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from spikedata.datasets.event_folder import EventFolder, scan_folder
from spikedata.encoders.event_binning import NMNIST_PLAIN, NMNIST_REFERENCE, BinningOptions
from spikedata.manifest import load_manifest

PRESETS: dict[str, BinningOptions] = {
    "reference": replace(NMNIST_REFERENCE, unit_order="pyx"),
    "reference-exact": NMNIST_REFERENCE,
    "plain": NMNIST_PLAIN,
}


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
