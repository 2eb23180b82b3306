"""Free Spoken Digit Dataset (FSDD): `{digit}_{speaker}_{take}.wav`, 8 kHz mono 16-bit (data_manifests/fsdd.toml).

The dataset's usual split: takes 0-4 of every (digit, speaker) are the test set, the others the training set.
Encoded with the paper's speech front end (:class:`spikedata.encoders.speech.SpeechFrontEnd`).
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

if TYPE_CHECKING:
    from spikedata.encoders.speech import SpeechFrontEnd

__all__ = ["FSDD_CLASSES", "TEST_TAKES", "scan_fsdd", "parse_fsdd_name"]

FSDD_CLASSES = [str(d) for d in range(10)]
TEST_TAKES = range(0, 5)
_NAME = re.compile(r"^(?P<digit>[0-9])_(?P<speaker>[A-Za-z]+)_(?P<take>[0-9]+)\.wav$", re.IGNORECASE)


def parse_fsdd_name(name: str) -> tuple[int, str, int] | None:
    """(digit, speaker, take) of an FSDD file name, or None when the name does not follow the pattern."""
    m = _NAME.match(name)
    if m is None:
        return None
    return int(m["digit"]), m["speaker"].lower(), int(m["take"])


def scan_fsdd(source: str | os.PathLike) -> tuple[list[Utterance], list[int]]:
    """Recordings under `source` (searched recursively; sorted by split, digit, speaker, take) and their takes."""
    root = Path(source)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory (expected FSDD recordings, see data_manifests/fsdd.toml)")
    rows = []
    for path in root.rglob("*"):
        parsed = parse_fsdd_name(path.name)
        if parsed is None or not path.is_file():
            continue
        digit, speaker, take = parsed
        split = "test" if take in TEST_TAKES else "train"
        rows.append((SPLITS.index(split), digit, speaker, take, path))
    if not rows:
        raise DatasetError(f"{root}: no FSDD recordings named {{digit}}_{{speaker}}_{{take}}.wav found")
    rows.sort(key=lambda r: r[:4])
    utterances = [
        Utterance(path, str(digit), speaker, SPLITS[s], path.relative_to(root).as_posix())
        for s, digit, speaker, _take, path in rows
    ]
    return utterances, [r[3] for r in rows]


def encode(dataset: Dataset, run: EncodeRun, source: Path, front_end: SpeechFrontEnd) -> Path:
    """Encode the FSDD recordings under `source` (takes 0-4 = test)."""
    from spikedata.datasets.shared.speech import encode_speech

    utterances, takes = scan_fsdd(source)
    return encode_speech("fsdd", run, source, utterances, FSDD_CLASSES, front_end, {"take": [int(t) for t in takes]})


DATASET = Dataset(
    "fsdd",
    "Encode the Free Spoken Digit Dataset (takes 0-4 = test) into a store; speaker and take kept per sample.",
    encode,
    options=(SOURCE.but(help="Directory holding the recordings."), speech_front_end()),
    manifest="fsdd",
    reader=scan_fsdd,
    preset="fsdd-mlp",
)
