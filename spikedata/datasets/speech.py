"""Corpora of recordings (TI46, FSDD, ...): one :class:`Utterance` per file, encoded with a
:class:`~spikedata.encoders.speech.SpeechFrontEnd` into a spike store (speaker and other per-recording facts kept
as extra arrays)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spikedata.checksum import files_sha256
from spikedata.encoders.lyon import design_lyon_filters
from spikedata.encoders.speech import SpeechFrontEnd
from spikedata.io.audio import read_audio_with_info
from spikedata.store import EventBlock

__all__ = ["SPLITS", "Utterance", "encode_utterances", "speech_jobs"]

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Utterance:
    """One recording: its path, class name, speaker, split and its path relative to the source (posix)."""

    path: Path
    label: str
    speaker: str
    split: str
    name: str


def encode_utterances(
    start: int,
    stop: int,
    *,
    paths: tuple[str, ...],
    labels: np.ndarray,
    extras: dict[str, np.ndarray],
    front_end: SpeechFrontEnd,
) -> EventBlock:
    """EventBlock of recordings [start, stop) of `paths` (picklable through functools.partial).

    Stats: `frames` (Lyon frames), `audio_s` (seconds), `spikes`, `truncated` (samples whose frames * hold
    exceed steps - 1, so their end was cut), `byte_order_assumed` (SPHERE files without `sample_byte_format`,
    read little-endian: see :mod:`spikedata.io.audio`). A file that cannot be read raises its `AudioError`.
    """

    times, units, counts = [], [], []
    n_frames = 0
    audio_s = 0.0
    truncated = 0
    assumed = 0
    for i in range(start, stop):
        audio, info = read_audio_with_info(paths[i])
        rate = info.sample_rate
        assumed += bool(info.notes)
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
    return EventBlock(
        indptr=indptr,
        times=cat(times).astype(np.uint32),
        units=cat(units).astype(np.uint32),
        labels=np.asarray(labels[start:stop], dtype=np.int16),
        extras={k: v[start:stop] for k, v in extras.items()},
        stats={"frames": n_frames, "audio_s": audio_s, "spikes": int(indptr[-1]), "truncated": int(truncated),
               "byte_order_assumed": assumed},
    )



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

    `extras` are per-utterance lists (same order as `utterances`); the speaker and the path relative to `root`
    (`path`) are always stored.
    """
    from functools import partial

    from spikedata.pipeline import SplitJob

    index = {c: i for i, c in enumerate(classes)}
    columns = {"speaker": [u.speaker for u in utterances], "path": [u.name for u in utterances], **(extras or {})}
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
        "source": {"files": files_sha256([u.name for u in utterances], root)},
        # unit u = Lyon channel u: pole centre frequency in Hz, highest first
        "channel_cf_hz": [round(float(f), 3) for f in design_lyon_filters(
            front_end.sample_rate, front_end.ear_q, front_end.step_factor)[1]],
    }
    return attrs, jobs
