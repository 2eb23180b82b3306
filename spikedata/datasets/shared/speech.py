"""Corpora of recordings (TI46, FSDD, ...): one :class:`Utterance` per file, encoded with a
:class:`~spikedata.encoders.speech.SpeechFrontEnd` into a spike store (speaker and other per-recording facts kept
as extra arrays). `encode_speech` is the encode of every speech corpus once it has found its recordings."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spikedata.checksum import files_sha256
from spikedata.datasets.shared.declaration import EncodeRun
from spikedata.encoders.lyon import design_lyon_filters
from spikedata.encoders.speech import SpeechFrontEnd
from spikedata.io.audio import read_audio_with_info
from spikedata.store import EventBlock, root_attributes

__all__ = ["SPLITS", "Utterance", "encode_speech", "encode_utterances", "speech_jobs"]

#: The splits a corpus may have, in store order (TI46 and FSDD have no `valid`; Speech Commands has all three).
SPLITS = ("train", "valid", "test")


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
    source: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Root attributes and one `SplitJob` per split present, for `spikedata.pipeline.encode_to_store`.

    `extras` are per-utterance lists (same order as `utterances`); the speaker and the path relative to `root`
    (`path`) are always stored. `source` is the store's record of the files (default: the sha256 of every file,
    which costs a second read of the corpus; a large corpus records less).
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
    # unit u = Lyon channel u: pole centre frequency in Hz, highest first
    centres = design_lyon_filters(front_end.sample_rate, front_end.ear_q, front_end.step_factor)[1]
    attrs = root_attributes(dataset, "lyon+bsa", front_end.params(), [front_end.n_channels], front_end.steps,
                            int(dt_us) if float(dt_us).is_integer() else dt_us, classes, 0,
                            source or {"files": files_sha256([u.name for u in utterances], root)},
                            channel_cf_hz=[round(float(f), 3) for f in centres])
    return attrs, jobs


def encode_speech(dataset: str, run: EncodeRun, root: Path, utterances: list[Utterance], classes: list[str],
                  front_end: SpeechFrontEnd, extras: dict[str, list] | None = None,
                  expected: dict[str, int] | None = None, source: dict[str, Any] | None = None) -> Path:
    """Encode the recordings `utterances` (found under `root`) into the store of `run` as dataset `dataset`;
    `expected` recordings per split of the full corpus (a partial copy is pointed out); `source` as in
    `speech_jobs`."""
    from spikedata.encoders import bsa, lyon
    from spikedata.pipeline import encode_to_store
    from spikedata.store import format as store_format
    from spikedata.store import open_store

    run.report.compiling(lyon, bsa, store_format)
    counts = {s: sum(u.split == s for u in utterances) for s in SPLITS}
    shown = " + ".join(f"{counts[s]} {s}" for s in SPLITS if counts[s] or s != "valid")
    run.report.say(f"{dataset}: {shown} recordings, {len(classes)} classes, {front_end.n_channels} channels, "
                   f"{front_end.steps} steps of {front_end.dt_us:g} µs")
    for split, n in (expected or {}).items():
        if counts.get(split) != n:
            run.report.note(f"{split}: {counts.get(split)} recordings, the corpus has {n}")
    started = time.perf_counter()
    attrs, jobs = speech_jobs(dataset, root, utterances, classes, front_end, extras, source=source)
    path = encode_to_store(run.out, attrs, jobs, workers=run.workers, progress=run.progress, overwrite=run.overwrite)
    store = open_store(path)
    assumed = sum(store[s].attrs["encode_stats"].get("byte_order_assumed", 0) for s in store.splits)
    if assumed:
        run.report.note(f"{assumed} SPHERE files state no sample_byte_format: read little-endian, as libsndfile does")
    run.report.say(f"wrote {path} in {time.perf_counter() - started:.1f} s")
    return path
