"""Binning the samples of an event folder into a spike store: the work of every event-camera dataset.

Before binning, every sample's events are checked against the declared sensor (`EventPrep`: an error naming the
file, with counts and the observed extent, or dropped and counted with ``drop_outside``) and run through the
`spikedata.transforms` of the encode. A sample that is a time segment of a file is cut to it, its times made
relative to its start; the file is read once per worker for all its segments. `encode_event_folder` is the encode
of every event dataset once it has found its samples and chosen its sensor and binning defaults.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from spikedata.datasets.shared.declaration import Dataset, EncodeRun
from spikedata.datasets.shared.event_folder import EventFolder, EventSplit, select_splits
from spikedata.datasets.shared.options import EventChecks, SplitSelection
from spikedata.encoders.event_binning import BinningOptions, bin_events
from spikedata.errors import DatasetError, OptionError
from spikedata.io.events import read_events_with_info
from spikedata.pipeline import SplitJob, encode_to_store
from spikedata.store import EventBlock, open_store, root_attributes
from spikedata.transforms import TransformSpec, apply_transforms, check_inside, drop_outside


@dataclass(frozen=True)
class EventPrep:
    """What happens to a sample's events between the reader and the binning: the check against the declared
    `sensor_size` (width, height; events outside it are an error unless `drop_outside`), then `transforms` in
    order (seeded ones from (seed, sample index))."""

    sensor_size: tuple[int, int]
    transforms: tuple[TransformSpec, ...] = ()
    drop_outside: bool = False
    seed: int = 0

    @property
    def output_size(self) -> tuple[int, int]:
        """Sensor size (width, height) after the transforms: what the binning sees."""
        size = tuple(self.sensor_size)
        for spec in self.transforms:
            size = spec.output_size(size)
        return size

    def record(self) -> dict[str, Any]:
        return {"sensor_size": list(self.sensor_size), "outside_sensor": "drop" if self.drop_outside else "error",
                "transforms": [t.to_dict() for t in self.transforms], "transform_seed": self.seed}  # fmt: skip


@dataclass(frozen=True)
class BinnedRange:
    """Picklable `encode_range` for the pipeline: reads and bins samples [start, stop) of one split."""

    split: EventSplit
    options: BinningOptions
    prep: EventPrep | None = None

    def __call__(self, start: int, stop: int) -> EventBlock:
        return encode_files(self.split, start, stop, self.options, self.prep)


@functools.lru_cache(maxsize=2)
def _read_cached(path: str, options: tuple, reader=None) -> tuple[np.ndarray, Any]:
    """Segments of one recording come one after another: read the file once per worker, not once per segment."""
    return (reader or read_events_with_info)(path, **dict(options))


def _segment(events: np.ndarray, start: int, end: int, stats: dict) -> np.ndarray:
    t = events["t"]
    if len(t) and end > int(t[-1]) + 1:
        stats["segments_past_end"] += 1
    lo, hi = np.searchsorted(t, start, "left"), np.searchsorted(t, end, "left")
    if hi <= lo:
        stats["empty_segments"] += 1
    out = events[lo:hi].copy()
    out["t"] -= start
    return out


def prepare_events(events: np.ndarray, prep: EventPrep, where: str, index: int, stats: dict) -> np.ndarray:
    """A sample's events after the sensor check (or drop) and the transforms of `prep`."""
    if prep.drop_outside:
        events, n = drop_outside(events, prep.sensor_size)
        stats["dropped_outside"] += n
    else:
        check_inside(events, prep.sensor_size, where)
    if prep.transforms:
        events, _ = apply_transforms(events, prep.transforms, prep.sensor_size, seed=(prep.seed << 32) + index)
    return events


def encode_files(
    split: EventSplit, start: int, stop: int, options: BinningOptions, prep: EventPrep | None = None
) -> EventBlock:
    """EventBlock of samples [start, stop): read every file (cut to its segment), check and transform its events
    (`prep`), bin them, concatenate; stats summed."""
    root = Path(split.root)
    times, units = [], []
    counts = np.zeros(stop - start, dtype=np.int64)
    stats = dict.fromkeys(
        ("events_read", "skipped_records", "collapsed", "dropped_time", "dropped_space", "spikes"), 0
    )
    if prep is not None:
        stats["dropped_outside"] = 0
    if split.segments is not None:
        stats.update(segments_past_end=0, empty_segments=0)
    segment_us = np.zeros((stop - start, 2), dtype=np.int64) if split.segments is not None else None
    for k, i in enumerate(range(start, stop)):
        path = root / split.files[i]
        # Files that state no sensor size (ATIS, DAT) are checked against the encoder's, unless the transforms step
        # does that check (it says how many events fall outside and can drop them).
        bound = () if prep is not None else (("sensor_size", tuple(options.sensor_size)),)
        if split.segments is not None:
            events, info = _read_cached(str(path), tuple(split.read_options) + bound, split.reader)
            a, b_ = split.segments[i]
            segment_us[k] = (a, b_)
            where = f"{path} [{a}, {b_}) µs"
            events = _segment(events, a, b_, stats)
        else:
            events, info = (split.reader or read_events_with_info)(path, **dict(tuple(split.read_options) + bound))
            where = str(path)
        if prep is not None:
            events = prepare_events(events, prep, where, i, stats)
        b = bin_events(events, options)
        times.append(b.times)
        units.append(b.units)
        counts[k] = b.times.shape[0]
        stats["events_read"] += info.n_events if split.segments is None else 0
        stats["skipped_records"] += info.skipped_records if split.segments is None else 0
        stats["collapsed"] += b.n_collapsed
        stats["dropped_time"] += b.n_dropped_time
        stats["dropped_space"] += b.n_dropped_space
        stats["spikes"] += b.times.shape[0]
    indptr = np.zeros(stop - start + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return EventBlock(
        indptr=indptr,
        times=np.concatenate(times) if times else np.empty(0, np.uint32),
        units=np.concatenate(units) if units else np.empty(0, np.uint32),
        labels=np.asarray(split.labels[start:stop], dtype=np.int16),
        extras={} if segment_us is None else {"segment_us": segment_us},
        stats=stats,
    )


def split_jobs(
    folder: EventFolder, options: BinningOptions, chunk: int = 256, prep: EventPrep | None = None
) -> dict[str, SplitJob]:
    """Pipeline jobs for every split of `folder` (train first, then test, then the rest by name)."""
    order = sorted(folder.splits, key=lambda s: ({"train": 0, "test": 1}.get(s, 2), s))
    return {s: SplitJob(len(folder.splits[s]), BinnedRange(folder.splits[s], options, prep), chunk) for s in order}


@functools.lru_cache(maxsize=4)
def _probe(path: str) -> tuple[tuple[int, int] | None, str]:
    _, info = read_events_with_info(path)
    return info.sensor_size, info.format


def probe_sensor_size(folder: EventFolder) -> tuple[tuple[int, int] | None, str]:
    """(sensor size stated by the first file, its format); size None when the format does not state it."""
    first = next(iter(folder.splits.values()))
    return _probe(str(Path(first.root) / first.files[0]))


def store_attrs(
    dataset: str, folder: EventFolder, options: BinningOptions, encoder: str = "event_binning",
    prep: EventPrep | None = None,
) -> dict:
    """Root attributes of the store (docs/store.md) for `folder` binned with `options`.

    Source checksums: sha256 of every file would cost a full extra read of the data set, so `source` records
    the folder, its file count and total size instead; the per-sample order is fixed by `scan_folder`.
    """
    paths = sorted({os.path.join(s.root, f) for s in folder.splits.values() for f in s.files})
    n_files = len(paths)
    size = sum(os.path.getsize(p) for p in paths)
    source: dict[str, Any] = {"files": {}, "folder": str(folder.root), "n_files": n_files, "total_bytes": size}
    source.update(folder.notes)
    events = {"events": prep.record()} if prep is not None else {}
    return root_attributes(dataset, encoder, options.params(), options.unit_shape, options.n_steps, options.dt_us,
                           folder.classes, 0 if prep is None else prep.seed, source,
                           split=folder.split_info or {"kind": "folders"}, **events)


def layout_binning(layout: dict[str, Any], sensor_size: tuple[int, int]) -> BinningOptions:
    """A dataset's default binning from its manifest's `[layout]`: `dt_us` and `n_steps` (required), `downsample`
    and `t_start` ("first": each sample's first event; else the file's time 0), for a `sensor_size` (w, h) px."""
    missing = [k for k in ("dt_us", "n_steps") if k not in layout]
    if missing:
        raise DatasetError(f"the manifest's [layout] lacks the encoding default(s) {missing}")
    return BinningOptions(sensor_size=tuple(sensor_size), dt_us=int(layout["dt_us"]), n_steps=int(layout["n_steps"]),
                          t_start_us=None if layout.get("t_start") == "first" else 0,
                          downsample=int(layout.get("downsample", 1)))


def encode_with_layout(dataset: Dataset, run: EncodeRun, folder: EventFolder, binning: dict[str, Any],
                       events: EventChecks, splits: SplitSelection, chunk: int, published: bool = False,
                       sensor_size: tuple[int, int] | None = None) -> Path:
    """`encode_event_folder` with the binning defaults of the dataset's manifest (`layout_binning`), on its
    `sensor_size` (default: the manifest's)."""
    layout = dataset.layout()
    size = tuple(sensor_size or layout["sensor_size"])
    return encode_event_folder(dataset, run, folder, size, layout_binning(layout, size), binning, events, splits,
                               chunk, published)


def encode_event_folder(dataset: Dataset, run: EncodeRun, folder: EventFolder, sensor_size: tuple[int, int],
                        base: BinningOptions, binning: dict[str, Any], events: EventChecks, splits: SplitSelection,
                        chunk: int, published: bool = False) -> Path:
    """Encode the samples of `folder` into the store of `run`: the split selection first (`published`: the
    dataset has its own test split), then every sample checked against `sensor_size` (w, h px), transformed
    (`events`) and binned with `base` changed by the user's `binning`. Reports what was dropped or cut."""
    from spikedata.encoders import event_binning
    from spikedata.store import format as store_format

    folder = select_splits(folder, splits.test_fraction, splits.seed, splits.max_samples, published)
    prep = EventPrep(tuple(sensor_size), events.transforms, events.drop_outside, int(splits.seed))
    try:
        options = replace(base, sensor_size=prep.output_size, **binning)
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    run.report.compiling(event_binning, store_format)
    started = time.perf_counter()
    jobs = split_jobs(folder, options, chunk=chunk, prep=prep)
    path = encode_to_store(run.out, store_attrs(dataset.name, folder, options, prep=prep), jobs,
                           workers=run.workers, progress=run.progress, overwrite=run.overwrite)
    seconds = time.perf_counter() - started
    store = open_store(path)
    for name in store.splits:
        stats = store[name].attrs.get("encode_stats", {})
        for key in ("dropped_outside", "segments_past_end", "empty_segments"):
            if stats.get(key):
                run.report.note(f"split {name}: {key.replace('_', ' ')}: {stats[key]}")
    n = sum(job.n_samples for job in jobs.values())
    counts = ", ".join(f"{k} ({v.n_samples})" for k, v in jobs.items())
    run.report.say(f"wrote {path}: {dataset.name}, splits {counts}, "
                   f"unit_shape {list(options.unit_shape)}, T = {options.n_steps} x {options.dt_us} µs; "
                   f"{n / seconds:.0f} samples/s")
    return path


def note_unsplit(run: EncodeRun, title: str, splits: SplitSelection) -> None:
    """Tell the user of a dataset that publishes no split that, without `test_fraction`, all goes to 'train'."""
    if splits.test_fraction is None:
        run.report.note(f"{title} publishes no split: every sample goes to 'train' (give `test_fraction` for a test "
                        "split)")
