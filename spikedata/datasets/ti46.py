"""TI46 spoken letters (LDC93S9, licensed: never downloaded here) and the reference speech front end.

Layout (`data_manifests/ti46.toml`; names' case varies between copies, so matching ignores case)::

    TI46/ti_alpha/train/<spk>/<code><spk>set<k>.wav     k = 0-9   enrollment tokens
    TI46/ti_alpha/test/<spk>/<code><spk>s<k>t<j>.wav    k = 1-8 sessions, j = 0, 1
    TI46/ti20/...                                       the same for the 20-word subset

`<spk>` is f1-f8 / m1-m8; `<code>` is the prompt code, `0a`-`0z` for the letters (class names "a"-"z"), `00`-`09`
for the digits. The files are NIST SPHERE despite the `.wav` suffix. Any other copy can be described by a regular
expression with named groups `label`, `speaker` and `split` (searched, ignoring case, in each file's path
relative to the source directory, with `/` separators).

The front end (:class:`SpeechFrontEnd`) is the paper's: audio -> 12.5 kHz -> `lyon_passive_ear(decimation=200)`
(78 channels, one frame per 16 ms) -> `bsa_encode` (one frame = `hold` steps). Shared by FSDD.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spikedata.encoders.bsa import bsa_encode
from spikedata.encoders.lyon import design_lyon_filters, lyon_passive_ear
from spikedata.io.audio import read_audio, resample

__all__ = [
    "DatasetError",
    "Utterance",
    "SpeechFrontEnd",
    "scan_ti46",
    "ti46_classes",
    "encode_utterances",
    "sha256_files",
]

SPLITS = ("train", "test")
SUBSETS = ("ti_alpha", "ti20")



def layout_pattern(subset: str) -> str:
    """The regular expression of the real TI46 layout for `subset` (from data_manifests/ti46.toml)."""
    from spikedata.manifest import load_manifest

    return load_manifest("ti46").layout["pattern"].replace("{subset}", re.escape(subset))


class DatasetError(ValueError):
    """Dataset files are missing or do not follow the expected layout; the message says which and where."""


@dataclass(frozen=True)
class Utterance:
    """One recording: its path, class name, speaker, split and its path relative to the source (posix)."""

    path: Path
    label: str
    speaker: str
    split: str
    name: str


def _class_name(code: str) -> str:
    """TI46 prompt code -> class name: `0a` -> `a`, `03` -> `3`; anything else stays as it is (lowercase)."""
    code = code.lower()
    if len(code) == 2 and code[0] == "0":
        return code[1]
    return code


def ti46_classes(labels: list[str]) -> list[str]:
    """Class names in label order: the 26 letters when every label is a letter, else the sorted labels found."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    found = sorted(set(labels))
    if found and all(lab in letters for lab in found):
        return letters
    return found


def _walk(root: Path) -> list[str]:
    names = []
    for dirpath, _dirs, files in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for f in files:
            names.append(f if rel_dir == "." else f"{rel_dir}/{f}")
    return sorted(names)


def scan_ti46(
    source: str | os.PathLike, subset: str = "ti_alpha", pattern: str | None = None
) -> tuple[list[Utterance], list[str], int]:
    """Utterances of TI46 under `source` (sorted by split, then relative path), the class names, and how many
    `.wav` files did not match (ignored).

    Without `pattern`, the real layout of `subset` ("ti_alpha" or "ti20") is matched; `source` may be the TI46
    directory, its parent or the subset directory itself. With `pattern`, a regular expression with named groups
    `label`, `speaker`, `split` is searched in each file's path relative to `source`.
    """
    root = Path(source)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory (expected the TI46 corpus, see data_manifests/ti46.toml)")
    if pattern is None:
        if subset not in SUBSETS:
            raise DatasetError(f"unknown TI46 subset {subset!r}; expected one of {SUBSETS}")
        regex = re.compile(layout_pattern(subset), re.IGNORECASE)
        prefix = root.resolve().name + "/"  # lets `source` be the subset directory itself
    else:
        try:
            regex = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise DatasetError(f"--pattern is not a valid regular expression: {exc}") from None
        missing = {"label", "speaker", "split"} - set(regex.groupindex)
        if missing:
            raise DatasetError(f"--pattern lacks the named group(s) {sorted(missing)}; e.g. (?P<label>...)")
        prefix = ""
    found: list[Utterance] = []
    ignored = 0
    for name in _walk(root):
        m = regex.search(prefix + name)
        if m is None:
            ignored += name.lower().endswith((".wav", ".sph", ".flac"))
            continue
        split = m["split"].lower()
        if split not in SPLITS:
            raise DatasetError(f"{root / name}: split {m['split']!r} from --pattern is not one of {SPLITS}")
        found.append(Utterance(root / name, _class_name(m["label"]), m["speaker"].lower(), split, name))
    if not found:
        what = f"pattern {pattern!r}" if pattern else f"the TI46 layout <{subset}>/train|test/<spk>/<code><spk>..."
        raise DatasetError(f"{root}: no recordings match {what} (see data_manifests/ti46.toml)")
    found.sort(key=lambda u: (SPLITS.index(u.split), u.name.lower()))
    return found, ti46_classes([u.label for u in found]), ignored


@dataclass(frozen=True)
class SpeechFrontEnd:
    """Audio -> cochleagram -> BSA spikes, with every parameter (defaults: the paper's TI46 front end).

    `sample_rate` Hz is the model's rate (audio is resampled to it with librosa `res_type`); Lyon parameters as
    :func:`spikedata.lyon_passive_ear`; BSA parameters as :func:`spikedata.bsa_encode`; `steps` per sample.
    """

    sample_rate: int = 12500
    decimation: int = 200
    ear_q: float = 8.0
    step_factor: float | None = None
    differ: bool = True
    agc: bool = True
    tau_factor: float = 3.0
    steps: int = 1000
    hold: int = 10
    scale: float = 2000.0
    taps: int = 24
    threshold: float = 0.6
    res_type: str = "soxr_hq"
    n_channels: int = field(init=False)

    def __post_init__(self) -> None:
        for name in ("sample_rate", "decimation", "steps", "hold", "taps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        step_factor = self.ear_q / 32.0 if self.step_factor is None else self.step_factor
        object.__setattr__(self, "step_factor", float(step_factor))
        sections, _ = design_lyon_filters(self.sample_rate, self.ear_q, self.step_factor)
        object.__setattr__(self, "n_channels", sections.shape[0] - 2)

    @property
    def dt_us(self) -> float:
        """One BSA step in µs: a Lyon frame (decimation / sample_rate s) spans `hold` steps."""
        return self.decimation / self.sample_rate / self.hold * 1e6

    def params(self) -> dict[str, Any]:
        """Every parameter, for the store's `encoder.params`."""
        return {k: v for k, v in asdict(self).items() if k != "n_channels"} | {"n_channels": self.n_channels}

    def cochleagram(self, audio: np.ndarray, rate: int) -> np.ndarray:
        """float64 [frames, channels] of mono `audio` sampled at `rate` Hz."""
        x = resample(audio, rate, self.sample_rate, self.res_type)
        return lyon_passive_ear(x, self.sample_rate, self.decimation, self.ear_q, self.step_factor, self.differ,
                                self.agc, self.tau_factor)

    def encode(self, audio: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
        """Spikes bool [steps, channels] and the number of Lyon frames of mono `audio` at `rate` Hz."""
        coch = self.cochleagram(audio, rate)
        spikes = bsa_encode(coch.T, self.steps, self.hold, self.scale, self.taps, self.threshold)
        return spikes, coch.shape[0]


def encode_utterances(
    start: int,
    stop: int,
    *,
    paths: tuple[str, ...],
    labels: np.ndarray,
    extras: dict[str, np.ndarray],
    front_end: SpeechFrontEnd,
):
    """EncodedBlock of recordings [start, stop) of `paths` (picklable through functools.partial).

    Stats: `frames` (Lyon frames), `audio_s` (seconds), `spikes`, `truncated` (samples whose frames * hold
    exceed steps - 1, so their end was cut).
    """
    from spikedata.pipeline import EncodedBlock

    times, units, counts = [], [], []
    n_frames = 0
    audio_s = 0.0
    truncated = 0
    for i in range(start, stop):
        try:
            audio, rate = read_audio(paths[i])
        except ValueError as exc:
            raise DatasetError(str(exc)) from None
        spikes, frames = front_end.encode(audio, rate)
        t, u = np.nonzero(spikes)  # row-major: sorted by (time, unit)
        times.append(t)
        units.append(u)
        counts.append(len(t))
        n_frames += frames
        audio_s += len(audio) / rate
        truncated += frames * front_end.hold > front_end.steps - 1
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    cat = (lambda parts: np.concatenate(parts)) if counts else (lambda parts: np.zeros(0, np.int64))
    return EncodedBlock(
        indptr=indptr,
        times=cat(times).astype(np.uint32),
        units=cat(units).astype(np.uint32),
        labels=np.asarray(labels[start:stop], dtype=np.int16),
        extras={k: v[start:stop] for k, v in extras.items()},
        stats={"frames": n_frames, "audio_s": audio_s, "spikes": int(indptr[-1]), "truncated": int(truncated)},
    )


def sha256_files(root: Path, names: list[str]) -> dict[str, str]:
    """sha256 of every file `root / name`, keyed by name (the store's `source.files`)."""
    out = {}
    for name in names:
        h = hashlib.sha256()
        with open(root / name, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
        out[name] = h.hexdigest()
    return out


def speech_jobs(
    dataset: str,
    root: Path,
    utterances: list[Utterance],
    classes: list[str],
    front_end: SpeechFrontEnd,
    extras: dict[str, list] | None = None,
    chunk: int = 64,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Root attributes and one `SplitJob` per split present, for `spikedata.pipeline.encode_to_store`.

    `extras` are per-utterance lists (same order as `utterances`); the speaker is always stored.
    """
    from functools import partial

    from spikedata.pipeline import SplitJob

    index = {c: i for i, c in enumerate(classes)}
    columns = {"speaker": [u.speaker for u in utterances], **(extras or {})}
    jobs = {}
    for split in SPLITS:
        rows = [i for i, u in enumerate(utterances) if u.split == split]
        if not rows:
            continue
        fn = partial(
            encode_utterances,
            paths=tuple(str(utterances[i].path) for i in rows),
            labels=np.array([index[utterances[i].label] for i in rows], dtype=np.int16),
            extras={k: np.asarray([v[i] for i in rows]) for k, v in columns.items()},
            front_end=front_end,
        )
        jobs[split] = SplitJob(n_samples=len(rows), encode_range=fn, chunk=chunk)
    dt_us = front_end.dt_us
    attrs = {
        "dataset": dataset,
        "encoder": {"name": "lyon+bsa", "params": front_end.params()},
        "n_units": front_end.n_channels,
        "unit_shape": [front_end.n_channels],
        "n_steps": front_end.steps,
        "dt_us": int(dt_us) if float(dt_us).is_integer() else dt_us,
        "classes": list(classes),
        "seed": 0,
        "source": {"files": sha256_files(root, [u.name for u in utterances])},
        # unit u = Lyon channel u: pole centre frequency in Hz, highest first
        "channel_cf_hz": [round(float(f), 3) for f in design_lyon_filters(
            front_end.sample_rate, front_end.ear_q, front_end.step_factor)[1]],
    }
    return attrs, jobs
