"""Google Speech Commands v0.02: 105,829 one-second 16 kHz WAV utterances of 35 words (data_manifests/gsc.toml).

Layout under ``--source`` (the unpacked archive): ``<word>/<speaker>_nohash_<n>.wav``, ``validation_list.txt`` and
``testing_list.txt`` (paths relative to the corpus directory, one per line). The published split: the listed files
are the ``valid`` and ``test`` splits, every other utterance is ``train``. ``_background_noise_/`` (long noise
recordings for augmentation) is not read. Classes: the 35 words of the manifest, alphabetical; a folder of WAV files
named by no word is an error (a v0.01 copy has 30 of the words: the missing ones are pointed out by the counts).

Encoded with the paper's speech front end (:class:`spikedata.encoders.speech.SpeechFrontEnd`: resampled to 12.5 kHz,
Lyon, BSA); `--steps` defaults to the manifest's 640 (1.024 s: a whole clip fits). Per sample the store keeps
`speaker`, `utterance` (the ``_nohash_<n>`` number) and `path`. The store's `source` records the sha256 of the two
lists, the number of files and their total size (the sha256 of 105,829 files would cost a second read of the corpus
and 10 MB of attributes).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from spikedata.datasets.shared.declaration import Dataset, EncodeRun
from spikedata.datasets.shared.options import SOURCE, speech_front_end
from spikedata.datasets.shared.speech import SPLITS, Utterance
from spikedata.errors import DatasetError
from spikedata.manifest import load_manifest

if TYPE_CHECKING:
    from spikedata.encoders.speech import SpeechFrontEnd

__all__ = ["LISTS", "scan_gsc"]

#: The published lists: split -> file under the corpus directory.
LISTS = {"valid": "validation_list.txt", "test": "testing_list.txt"}
NOISE = "_background_noise_"
_NAME = re.compile(r"^(?P<speaker>[0-9a-f]+)_nohash_(?P<n>[0-9]+)\.wav$", re.IGNORECASE)


def read_list(root: Path, split: str) -> set[str]:
    """The utterances a published list names (posix paths relative to `root`)."""
    path = root / LISTS[split]
    if not path.is_file():
        raise DatasetError(f"{root}: no {LISTS[split]}: not the Speech Commands corpus directory (it holds the "
                           "word folders and the two lists)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the list ({exc})") from None
    return {line.strip().replace("\\", "/") for line in lines if line.strip()}


def scan_gsc(source: str | os.PathLike) -> tuple[list[Utterance], list[int], dict[str, int]]:
    """The utterances under `source` (sorted by split, word, path), their ``_nohash_`` numbers, and what the lists
    name that is not there (per split)."""
    root = Path(source)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory (expected the Speech Commands corpus, see "
                           "data_manifests/gsc.toml)")
    words = list(load_manifest("gsc").classes or ())
    listed = {split: read_list(root, split) for split in LISTS}
    both = listed["valid"] & listed["test"]
    if both:
        raise DatasetError(f"{root}: {len(both)} file(s) are in both lists, e.g. {sorted(both)[0]}")
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != NOISE):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file())
        if files and folder.name not in words:
            raise DatasetError(f"{folder}: a folder of WAV files named by none of the 35 words of Speech Commands "
                               "v0.02")
        for path in files:
            m = _NAME.match(path.name)
            if m is None:
                raise DatasetError(f"{path}: not named <speaker>_nohash_<n>.wav")
            rel = f"{folder.name}/{path.name}"
            split = next((s for s, names in listed.items() if rel in names), "train")
            rows.append((SPLITS.index(split), words.index(folder.name), rel, m["speaker"].lower(), int(m["n"]), path))
    if not rows:
        raise DatasetError(f"{root}: no <word>/<speaker>_nohash_<n>.wav files")
    rows.sort(key=lambda r: r[:3])
    present = {r[2] for r in rows}
    absent = {split: len(names - present) for split, names in listed.items()}
    utterances = [Utterance(path, words[w], speaker, SPLITS[s], rel) for s, w, rel, speaker, _, path in rows]
    return utterances, [r[4] for r in rows], absent


def encode(dataset: Dataset, run: EncodeRun, source: Path, front_end: SpeechFrontEnd) -> Path:
    """Encode the Speech Commands utterances under `source` (published split)."""
    from spikedata.checksum import file_digests
    from spikedata.datasets.shared.speech import encode_speech

    root = Path(source)
    utterances, numbers, absent = scan_gsc(root)
    for split, n in absent.items():
        if n:
            run.report.note(f"{LISTS[split]} names {n} file(s) that are not under {root}")
    manifest = load_manifest("gsc")
    record = {"folder": str(root), "n_files": len(utterances),
              "total_bytes": sum(os.path.getsize(u.path) for u in utterances),
              "files": {name: file_digests(root / name)["sha256"] for name in LISTS.values()}}
    return encode_speech("gsc", run, root, utterances, list(manifest.classes or ()), front_end,
                         {"utterance": numbers}, {s: int(spec["n_samples"]) for s, spec in manifest.splits.items()},
                         source=record)


def _front_end_options():
    group = speech_front_end()
    steps = next(o for o in group.options if o.name == "steps")
    return group.but(steps=steps.but(default=int(load_manifest("gsc").layout["n_steps"])))


DATASET = Dataset(
    "gsc",
    "Encode Google Speech Commands v0.02 (WAV, 35 words; published validation and test lists) with the Lyon + BSA "
    "front end; speaker and utterance number kept per sample.",
    encode,
    options=(SOURCE.but(help="The corpus directory: the word folders, validation_list.txt and testing_list.txt."),
             _front_end_options()),
    manifest="gsc",
    reader=scan_gsc,
    preset="gsc-mlp",
)
