"""The Heidelberg spike files (`spikedata.datasets.shared.heidelberg`) binned into a spike store: the encode of SHD
and SSC.

Binning (:func:`spikedata.encoders.event_binning.bin_unit_events`): step = floor(t · 10^6 / dt_us); spikes at
steps >= n_steps are dropped and counted (`dropped_time`, samples `truncated`); spikes of one channel within one
step collapse into one (`collapsed`). `--steps auto` sizes the samples to the longest one of every file.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spikedata.datasets.shared.declaration import Dataset, EncodeRun, Option, OptionGroup
from spikedata.datasets.shared.heidelberg import (
    N_UNITS,
    check_layout,
    default_dt_us,
    default_steps,
    expected_counts,
    find_files,
    heidelberg_manifest,
    longest_time_us,
    open_hdf5,
    read_block,
    unpacked,
    vet_file,
)
from spikedata.datasets.shared.options import DT_US
from spikedata.encoders.event_binning import bin_unit_events
from spikedata.errors import DatasetError, OptionError
from spikedata.store import EventBlock, root_attributes


@dataclass(frozen=True)
class HeidelbergRange:
    """Picklable `encode_range` for the pipeline: reads and bins samples [start, stop) of one plain HDF5 file.

    `where` names the file in messages (the published name, not a temporary copy); `speaker`: store
    extra/speaker. Stats: `events_read`, `spikes`, `collapsed`, `dropped_time`, `truncated` (samples)."""

    path: str
    where: str
    dt_us: int
    n_steps: int
    n_classes: int
    speaker: bool

    def __call__(self, start: int, stop: int) -> EventBlock:
        with open_hdf5(Path(self.path), self.where) as f:
            indptr, t, u = read_block(f, start, stop, self.where)
            try:
                labels = np.asarray(f["labels"][start:stop], dtype=np.int64)
                extras = {}
                if self.speaker:
                    speaker = np.asarray(f["extra/speaker"][start:stop])
                    extras["speaker"] = (speaker.astype(str) if speaker.dtype.kind in "OSU"
                                         else speaker.astype(np.int64))
            except (OSError, RuntimeError, ValueError, TypeError, KeyError) as exc:
                raise DatasetError(f"{self.where}: cannot read labels/speakers of samples [{start}, {stop}) "
                                   f"({exc})") from None
        try:
            block = bin_unit_events(indptr, t, u, N_UNITS, self.dt_us, self.n_steps)
        except ValueError as exc:  # names the sample within the block: make it the file's sample
            sample, _, rest = str(exc).partition(",")
            number = int(sample.split()[-1]) + start if sample.startswith("sample ") else None
            raise DatasetError(f"{self.where}: sample {number},{rest}" if number is not None
                               else f"{self.where}: {exc}") from None
        bad = np.flatnonzero((labels < 0) | (labels >= self.n_classes))
        if len(bad):
            raise DatasetError(f"{self.where}: sample {start + int(bad[0])}: label {int(labels[bad[0]])} outside "
                               f"the {self.n_classes} classes")
        stats = {"events_read": int(indptr[-1]), "spikes": int(block.indptr[-1]), "collapsed": block.n_collapsed,
                 "dropped_time": block.n_dropped_time, "truncated": block.n_truncated}
        return EventBlock(block.indptr, block.times, block.units, labels.astype(np.int16), extras, stats)


def heidelberg_jobs(
    dataset: str,
    files: dict[str, Path],
    plain: dict[str, Path],
    dt_us: int,
    n_steps: int,
    chunk: int = 256,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Root attributes and one `SplitJob` per split for `spikedata.pipeline.encode_to_store`.

    `files`: split -> the file as given (named in messages, hashed for `source`); `plain`: split -> its plain HDF5
    file (the same, or the temporary copy of :func:`unpacked`). Class names come from the files' extra/keys (they
    must agree), else from the manifest.
    """
    from spikedata.checksum import file_digests
    from spikedata.pipeline import SplitJob

    infos = {}
    for split, path in plain.items():
        vet_file(path, str(files[split]))  # a damaged file crashes a child process, not this one
        with open_hdf5(path, str(files[split])) as f:
            infos[split] = check_layout(f, str(files[split]))
    named = {split: info.classes for split, info in infos.items() if info.classes is not None}
    if named:
        first_split, classes = next(iter(named.items()))
        for split, other in named.items():
            if other != classes:
                raise DatasetError(f"{files[split]}: extra/keys {other} differ from {files[first_split]}'s {classes}")
    else:
        classes = list(heidelberg_manifest(dataset).classes or ())
    for split, info in infos.items():
        if info.max_label >= len(classes):
            raise DatasetError(f"{files[split]}: label {info.max_label} but {dataset} has {len(classes)} classes")
    jobs = {
        split: SplitJob(
            n_samples=info.n_samples,
            encode_range=HeidelbergRange(str(plain[split]), str(files[split]), int(dt_us), int(n_steps),
                                         len(classes), info.has_speaker),
            chunk=chunk,
        )
        for split, info in infos.items()
    }
    digests = {split: file_digests(path, ("sha256", "md5")) for split, path in files.items()}
    params = {"dt_us": int(dt_us), "n_steps": int(n_steps), "rounding": "floor", "t_start_us": 0}
    source = {
        "files": {files[s].name: d["sha256"] for s, d in digests.items()},
        "md5": {files[s].name: d["md5"] for s, d in digests.items()},
        "class_names_from": "extra/keys" if named else f"data_manifests/{dataset}.toml",
    }
    attrs = root_attributes(dataset, "spike_binning", params, [N_UNITS], int(n_steps), int(dt_us), classes, 0, source)
    return attrs, jobs


def _steps_value(text: str | None) -> int | str | None:
    """--steps: a positive integer, "auto" or None (OptionError otherwise)."""
    if text is None or text.strip().lower() == "auto":
        return None if text is None else "auto"
    try:
        steps = int(text)
    except ValueError:
        steps = 0
    if steps < 1:
        raise OptionError(f"`steps` must be a positive integer or 'auto', got {text!r}")
    return steps


#: The bin and the length of the binned samples: --dt-us (default: the manifest's) and --steps (N, or "auto").
SPIKE_BINNING = OptionGroup("binning", (
    DT_US,
    Option("steps", str, None, "Time steps per sample: N, or 'auto' for the longest sample (default: the "
           "manifest's cut-off)."),
), lambda values: {"dt_us": values["dt_us"], "steps": _steps_value(values["steps"])})


def _resolve_steps(steps: int | str | None, dataset: str, plain: dict[str, Path], dt_us: int,
                   files: dict[str, Path]) -> int:
    """The manifest's cut-off (None), the longest sample of every file ("auto") or `steps`."""
    if steps is None:
        return default_steps(dataset)
    if steps == "auto":
        for s, p in plain.items():
            vet_file(p, str(files[s]))  # a damaged file crashes a child process, not this one
        latest = max(longest_time_us(p, str(files[s])) for s, p in plain.items())
        return int(latest // dt_us) + 1
    return int(steps)


def encode_heidelberg(dataset: Dataset, run: EncodeRun, source: Path, binning: dict[str, Any], chunk: int) -> Path:
    """Bin the split files of SHD or SSC under `source` into the store of `run` (`binning`: dt_us, steps)."""
    from spikedata.pipeline import encode_to_store

    name = dataset.name
    started = time.perf_counter()
    files, missing = find_files(source, name)
    for split in missing:
        run.report.note(f"no {name}_{split}.h5[.gz] in {source}: the store gets no {split!r} split")
    dt = binning["dt_us"] or default_dt_us(name)
    Path(run.out).parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:  # temporary unpacked copies live beside the store until the end
        plain = {s: stack.enter_context(unpacked(p, Path(run.out).parent)) for s, p in files.items()}
        n_steps = _resolve_steps(binning["steps"], name, plain, dt, files)
        attrs, jobs = heidelberg_jobs(name, files, plain, dt, n_steps, chunk=chunk)
        run.report.say(f"{name}: {', '.join(f'{s} {j.n_samples}' for s, j in jobs.items())} samples, "
                       f"{len(attrs['classes'])} classes, {N_UNITS} channels, {n_steps} steps of {dt} µs")
        for split, n in expected_counts(name).items():
            if split in jobs and jobs[split].n_samples != n:
                run.report.note(f"{split}: {jobs[split].n_samples} samples, the published file has {n}")
        path = encode_to_store(run.out, attrs, jobs, workers=run.workers, progress=run.progress,
                               overwrite=run.overwrite)
    report_binned(run, path, n_steps, started)
    return path


def report_binned(run: EncodeRun, path: Path, n_steps: int, started: float, samples: str = "samples",
                  spikes: str = "spikes") -> None:
    """Tell the user of a store binned by `bin_unit_events` what was cut at `n_steps` and collapsed, per split, and
    how long the encode took since `started` (a `time.perf_counter()`); `samples` and `spikes` name what the
    dataset calls them."""
    from spikedata.store import open_store

    store = open_store(path)
    for split in store.splits:
        st = store[split].attrs["encode_stats"]
        if st["truncated"]:
            run.report.note(f"{split}: {st['truncated']} {samples} outlast {n_steps} steps ({st['dropped_time']} "
                            f"{spikes} dropped); `steps` auto keeps every one")
        run.report.say(f"  {split}: {st['events_read']:,} {spikes} read, {st['spikes']:,} stored, "
                       f"{st['collapsed']:,} collapsed into an earlier one of the same channel and step")
    run.report.say(f"wrote {path} in {time.perf_counter() - started:.1f} s")
