"""N-TIDIGITS: the adult TIDIGITS utterances played to a 64-channel silicon cochlea, one HDF5 file (h5py).

Layout of ``n-tidigits.hdf5`` (`--source` is the file or the directory holding it)::

    train_labels, test_labels          utterance keys (bytes), the published order
    train_addresses/<key>              channel of each event, 0 <= channel < 64
    train_timestamps/<key>             time of each event, float seconds (test_* alike)

A key is ``<group>-<speaker>-<production>-<digits>``, e.g. ``man-im-a-7557``: the digits come from ``o123456789z``
(oh, one ... nine, zero). The classification task is the single digits: splits ``train`` and ``test`` hold the
utterances of one digit, labelled by it (classes in the manifest's order: o, 1-9, z). The multi-digit sequences are
kept as the extra splits ``train_sequences`` / ``test_sequences`` with ``--sequences``: a store holds one class per
sample, so a sequence is labelled by its first digit; its whole sequence is the ``digits`` extra (the target of a
sequence model). Every sample keeps ``key``, ``speaker``, ``group``, ``production`` and ``digits``.

Binning (`spikedata.encoders.event_binning.bin_unit_events`): times are taken from each utterance's first event
(the file's times do not all start at 0), step = floor((t - t_first) · 10^6 / dt_us); events at steps >= n_steps are
dropped and counted; events of one channel within one step collapse into one. Every problem (a missing group or
dataset, a key that does not parse, addresses and times of different lengths, a channel >= 64, a time that is not
finite) is a `DatasetError` naming the file and the key; the file is read once in a child process first
(`spikedata.datasets.shared.heidelberg.vet_file`), so that a damaged file that crashes libhdf5 crashes only that.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spikedata.datasets.shared.declaration import Dataset, EncodeRun, Option
from spikedata.datasets.shared.heidelberg import open_hdf5, vet_file
from spikedata.datasets.shared.heidelberg_encoding import SPIKE_BINNING, report_binned
from spikedata.datasets.shared.options import CHUNK, SOURCE, SPLIT_SELECTION, SplitSelection
from spikedata.encoders.event_binning import bin_unit_events
from spikedata.errors import DatasetError
from spikedata.manifest import load_manifest
from spikedata.store import EventBlock

N_CHANNELS = 64
FILE_NAME = "n-tidigits.hdf5"
SPLITS = ("train", "test")
_KEY = re.compile(r"^(?P<group>[a-z]+)-(?P<speaker>[a-z0-9]+)-(?P<production>[a-z])-(?P<digits>[o1-9z]+)$")
_EXTRAS = ("key", "speaker", "group", "production", "digits")


def parse_key(key: str) -> dict[str, str] | None:
    """{group, speaker, production, digits} of an utterance key (``man-im-a-7557``), or None if it does not parse."""
    m = _KEY.match(key)
    return m.groupdict() if m else None


def find_ntidigits(source: str | os.PathLike) -> Path:
    """The N-TIDIGITS file: `source` itself, or ``n-tidigits.hdf5`` in the directory `source` (case ignored)."""
    source = Path(source)
    if source.is_file():
        return source
    if source.is_dir():
        for path in source.iterdir():
            if path.name.lower() == FILE_NAME and path.is_file():
                return path
        raise DatasetError(f"{source}: no {FILE_NAME} (see data_manifests/ntidigits.toml)")
    raise DatasetError(f"{source}: no such file or directory")


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_keys(f, split: str, where: str) -> list[str]:
    """The utterance keys of `split` in the file's order (each parsed and unique; DatasetError naming the key)."""
    import h5py

    name = f"{split}_labels"
    if not isinstance(f.get(name), h5py.Dataset):
        raise DatasetError(f"{where}: dataset {name!r} is missing (has {sorted(f.keys())}); not an N-TIDIGITS file")
    for group in (f"{split}_addresses", f"{split}_timestamps"):
        if not isinstance(f.get(group), h5py.Group):
            raise DatasetError(f"{where}: group {group!r} is missing; not an N-TIDIGITS file")
    try:
        keys = [_text(k) for k in np.atleast_1d(f[name][()])]
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        raise DatasetError(f"{where}: cannot read {name} ({exc}); the file is damaged") from None
    for i, key in enumerate(keys):
        if parse_key(key) is None:
            raise DatasetError(f"{where}: {name}[{i}] = {key!r} is not an utterance key "
                               "<group>-<speaker>-<production>-<digits>")
    if len(set(keys)) != len(keys):
        repeated = next(k for k in keys if keys.count(k) > 1)
        raise DatasetError(f"{where}: {name} lists {repeated!r} more than once")
    return keys


def read_utterance(f, split: str, key: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(times float64 s, channels int64) of one utterance, checked."""
    try:
        t = np.asarray(f[f"{split}_timestamps"][key][()], dtype=np.float64).reshape(-1)
        a = np.asarray(f[f"{split}_addresses"][key][()]).reshape(-1)
    except KeyError:
        raise DatasetError(f"{where}: utterance {key!r} of {split}_labels has no {split}_timestamps / "
                           f"{split}_addresses dataset") from None
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        raise DatasetError(f"{where}: cannot read utterance {key!r} ({exc}); the file is damaged") from None
    if t.shape != a.shape:
        raise DatasetError(f"{where}: utterance {key!r} has {len(t)} timestamps but {len(a)} addresses")
    if a.dtype.kind not in "iu" or (len(a) and (int(a.min()) < 0 or int(a.max()) >= N_CHANNELS)):
        bad = a.min() if len(a) and a.min() < 0 else (a.max() if len(a) else a.dtype)
        raise DatasetError(f"{where}: utterance {key!r}: address {bad} is not a channel 0-{N_CHANNELS - 1}")
    if not np.all(np.isfinite(t)):
        raise DatasetError(f"{where}: utterance {key!r}: a time stamp is not finite")
    return t, a.astype(np.int64)


def _longest_us(path: str, where: str) -> float:
    """Read every utterance once (vet_file runs it in a child); the longest utterance in µs (last - first event)."""
    longest = 0.0
    with open_hdf5(Path(path), where) as f:
        for split in SPLITS:
            for key in read_keys(f, split, where):
                t, _ = read_utterance(f, split, key, where)
                if len(t):
                    longest = max(longest, (float(t.max()) - float(t.min())) * 1e6)
    return longest


@dataclass(frozen=True)
class UtteranceRange:
    """Picklable `encode_range` for the pipeline: reads and bins utterances [start, stop) of `keys` (of the file's
    `split`). Stats: `events_read`, `spikes`, `collapsed`, `dropped_time`, `truncated` (samples)."""

    path: str
    where: str
    split: str
    keys: tuple[str, ...]
    dt_us: int
    n_steps: int
    classes: tuple[str, ...]

    def __call__(self, start: int, stop: int) -> EventBlock:
        keys = self.keys[start:stop]
        times, channels = [], []
        with open_hdf5(Path(self.path), self.where) as f:
            for key in keys:
                t, a = read_utterance(f, self.split, key, self.where)
                times.append(t - (t.min() if len(t) else 0.0))
                channels.append(a)
        counts = np.array([len(t) for t in times], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        block = bin_unit_events(indptr, np.concatenate(times) if times else np.zeros(0),
                                np.concatenate(channels) if channels else np.zeros(0, np.int64), N_CHANNELS,
                                self.dt_us, self.n_steps)
        parsed = [parse_key(k) for k in keys]
        labels = np.array([self.classes.index(p["digits"][0]) for p in parsed], dtype=np.int16)
        extras = {"key": np.array(keys, dtype=str), **{name: np.array([p[name] for p in parsed], dtype=str)
                                                        for name in _EXTRAS[1:]}}
        stats = {"events_read": int(indptr[-1]), "spikes": int(block.indptr[-1]), "collapsed": block.n_collapsed,
                 "dropped_time": block.n_dropped_time, "truncated": block.n_truncated}
        return EventBlock(block.indptr, block.times, block.units, labels, extras, stats)


def select(keys: list[str], classes: tuple[str, ...], limit: int | None, seed: int) -> tuple[list[str], dict | None]:
    """`keys` cut to a seeded stratified subset of at most `limit` (its record, or None when nothing was cut)."""
    from spikedata.splits import stratified_subset, subset_record

    if limit is None or limit >= len(keys):
        return keys, None
    labels = np.array([classes.index(parse_key(k)["digits"][0]) for k in keys])
    keep = stratified_subset(labels, keys, int(limit), seed)
    return [keys[i] for i in keep], subset_record(len(keep), len(keys), seed)


def ntidigits_jobs(path: Path, dt_us: int, n_steps: int, splits: SplitSelection, sequences: bool,
                   chunk: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """Root attributes, one `SplitJob` per split and the single-digit counts per split before any subset."""
    from spikedata.checksum import file_digests
    from spikedata.pipeline import SplitJob
    from spikedata.store import root_attributes

    classes = tuple(load_manifest("ntidigits").classes or ())
    where = str(path)
    with open_hdf5(path, where) as f:
        keys = {split: read_keys(f, split, where) for split in SPLITS}
    jobs, split_info, counts = {}, {"kind": "published"}, {}
    for split in SPLITS:
        single = [k for k in keys[split] if len(parse_key(k)["digits"]) == 1]
        counts[split] = len(single)
        single, record = select(single, classes, splits.max_samples.get(split), splits.seed)
        if record is not None:
            split_info.setdefault("subsets", {})[split] = record
        jobs[split] = SplitJob(len(single), UtteranceRange(str(path), where, split, tuple(single), dt_us, n_steps,
                                                           classes), chunk)
    for split in SPLITS if sequences else ():
        several = tuple(k for k in keys[split] if len(parse_key(k)["digits"]) > 1)
        jobs[f"{split}_sequences"] = SplitJob(len(several), UtteranceRange(str(path), where, split, several, dt_us,
                                                                           n_steps, classes), chunk)
    digests = file_digests(path, ("sha256", "md5"))
    params = {"dt_us": int(dt_us), "n_steps": int(n_steps), "rounding": "floor", "t_start_us": None}
    source = {"files": {path.name: digests["sha256"]}, "md5": {path.name: digests["md5"]}, "sequences": sequences}
    attrs = root_attributes("ntidigits", "spike_binning", params, [N_CHANNELS], int(n_steps), int(dt_us), classes,
                            int(splits.seed), source, split=split_info)
    return attrs, jobs, counts


def encode(dataset: Dataset, run: EncodeRun, source: Path, sequences: bool, binning: dict[str, Any],
           splits: SplitSelection, chunk: int) -> Path:
    """Bin the single digits of the N-TIDIGITS file (and with `sequences` the multi-digit utterances) into the
    store of `run` (`binning`: dt_us, steps N / "auto" / None for the manifest's)."""
    from spikedata.pipeline import encode_to_store

    started = time.perf_counter()
    path = find_ntidigits(source)
    layout = dataset.layout()
    dt = int(binning["dt_us"] or layout["dt_us"])
    longest = vet_file(path, str(path), reader=_longest_us)  # a damaged file crashes a child process, not this one
    steps = binning["steps"]
    n_steps = int(longest // dt) + 1 if steps == "auto" else int(steps or layout["n_steps"])
    attrs, jobs, counts = ntidigits_jobs(path, dt, n_steps, splits, sequences, chunk)
    run.report.say(f"ntidigits: {', '.join(f'{s} {j.n_samples}' for s, j in jobs.items())} utterances, "
                   f"{len(attrs['classes'])} classes, {N_CHANNELS} channels, {n_steps} steps of {dt} µs")
    for split, spec in load_manifest("ntidigits").splits.items():
        if counts.get(split) != spec.get("n_samples"):
            run.report.note(f"{split}: {counts.get(split)} single-digit utterances, the published file has "
                            f"{spec.get('n_samples')}")
    out = encode_to_store(run.out, attrs, jobs, workers=run.workers, progress=run.progress, overwrite=run.overwrite)
    report_binned(run, out, n_steps, started, samples="utterances", spikes="events")
    return out


DATASET = Dataset(
    "ntidigits",
    "N-TIDIGITS (HDF5, 64 cochlea channels): the single digits, 11 classes, published split; the digit sequences "
    "with --sequences.",
    encode,
    options=(
        SOURCE.but(help=f"The {FILE_NAME} file, or the directory holding it."),
        Option("sequences", bool, False, "Also store the multi-digit utterances, as the splits train_sequences and "
               "test_sequences (label: the first digit; the whole sequence: the `digits` extra)."),
        SPIKE_BINNING, SPLIT_SELECTION, CHUNK,
    ),
    manifest="ntidigits",
    reader=find_ntidigits,
    preset="ntidigits-mlp",
)
