"""`spikedata encode nmnist|events|dvsgesture|ncars|ncaltech101|cifar10dvs`: bin event-camera recordings into a
spike store (docs/events.md)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import typer

from spikedata.cli.app import encode_app
from spikedata.cli.common import (
    OUT,
    OVERWRITE,
    QUIET,
    WORKERS,
    check_new_output,
    error_text,
    fail,
    note,
    note_first_compilation,
    reported_errors,
    say,
)

_DT = typer.Option(None, "--dt-us", min=1, help="Bin width in µs (one time step).")
_STEPS = typer.Option(None, "--steps", min=1, help="Time steps kept per sample.")
_ROUNDING = typer.Option(None, "--rounding", help="Step of an event: 'floor' or 'ceil' of (t - t_start) / dt.")
_SHIFT = typer.Option(None, "--time-shift", help="Steps added to every event's step (the reference adds 1).")
_CROP = typer.Option(None, "--crop", help="Keep only the box X0,Y0,WIDTH,HEIGHT (pixels, after stabilisation).")
_DOWN = typer.Option(None, "--downsample", min=1, help="Spatial downsampling factor (x // f, y // f).")
_POLARITY = typer.Option(None, "--polarity", help="'split' (two channels, default) or 'merge' (one).")
_ORDER = typer.Option(None, "--unit-order", help="'pyx' (polarity x height x width) or 'pxy' (reference).")
_CHUNK = typer.Option(256, "--chunk", min=1, help="Samples per work unit.")
_TRANSFORM = typer.Option(None, "--transform", help="Event transform before binning, NAME[:key=value,...] "
                          "(repeatable, applied in order), e.g. denoise:filter_time_us=10000, refractory_period:"
                          "refractory_us=1000, center_crop:width=100,height=100, flip_x (docs/events.md).")
_DROP_OUTSIDE = typer.Option(False, "--drop-outside", help="Drop events outside the sensor (counted) instead of "
                             "failing.")
_TEST_FRACTION = typer.Option(None, "--test-fraction", min=0.0, max=1.0, help="Seeded stratified test split of "
                              "this fraction (data sets without a published split).")
_SPLIT_SEED = typer.Option(0, "--split-seed", help="Seed of --test-fraction and --max-* (and seeded transforms).")
_MAX_TRAIN = typer.Option(None, "--max-train", min=1, help="Encode a seeded stratified subset of N train samples.")
_MAX_TEST = typer.Option(None, "--max-test", min=1, help="Encode a seeded stratified subset of N test samples.")



def _parse_ints(text: str | None, n: int, what: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise typer.BadParameter(f"{what}: expected {n} integers separated by commas, got {text!r}") from None
    if len(values) != n:
        raise typer.BadParameter(f"{what}: expected {n} integers separated by commas, got {text!r}")
    return values


def _options(base, dt_us, steps, rounding, time_shift, crop, downsample, polarity, unit_order, **more):
    """`base` BinningOptions with every option the user gave replaced (BadParameter on a bad value)."""
    changes = {
        "dt_us": dt_us, "n_steps": steps, "rounding": rounding, "time_shift": time_shift,
        "crop": _parse_ints(crop, 4, "--crop"), "downsample": (downsample, downsample) if downsample else None,
        "polarity": polarity, "unit_order": unit_order, **more,
    }  # fmt: skip
    try:
        return replace(base, **{k: v for k, v in changes.items() if v is not None})
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _prep(sensor_size, transforms: list[str] | None, drop_outside: bool, seed: int):
    """EventPrep from the command line (BadParameter on a bad --transform)."""
    from spikedata.datasets.event_folder import EventPrep
    from spikedata.transforms import TransformSpec

    try:
        specs = tuple(TransformSpec.parse(t) for t in transforms or ())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return EventPrep(tuple(sensor_size), specs, drop_outside, int(seed))


def _select(folder, test_fraction, split_seed, max_train, max_test, published=False):
    from spikedata.datasets.event_folder import select_splits
    from spikedata.errors import DatasetError

    try:
        return select_splits(folder, test_fraction, split_seed, {"train": max_train, "test": max_test}, published)
    except (DatasetError, ValueError) as exc:
        fail(str(exc))


def _run(dataset: str, folder, options, out: Path, workers: int, chunk: int, overwrite: bool, quiet: bool,
         prep=None) -> None:  # fmt: skip
    from spikedata import store
    from spikedata.datasets.event_folder import split_jobs, store_attrs
    from spikedata.encoders import event_binning
    from spikedata.pipeline import encode_to_store

    note_first_compilation(event_binning, store)
    if prep is not None and tuple(options.sensor_size) != tuple(prep.output_size):
        options = replace(options, sensor_size=prep.output_size)
    started = time.perf_counter()
    jobs = split_jobs(folder, options, chunk=chunk, prep=prep)
    with reported_errors(FileNotFoundError):
        path = encode_to_store(out, store_attrs(dataset, folder, options, prep=prep), jobs, workers=workers,
                               progress=not quiet, overwrite=overwrite)  # fmt: skip
    seconds = time.perf_counter() - started
    n = sum(job.n_samples for job in jobs.values())
    from spikedata.store import open_store

    store = open_store(path)
    for name in store.splits:
        stats = store[name].attrs.get("encode_stats", {})
        for key in ("dropped_outside", "segments_past_end", "empty_segments"):
            if stats.get(key):
                note(f"split {name}: {key.replace('_', ' ')}: {stats[key]}")
    say(
        f"wrote {path}: {dataset}, splits {', '.join(f'{k} ({v.n_samples})' for k, v in jobs.items())}, "
        f"unit_shape {list(options.unit_shape)}, T = {options.n_steps} x {options.dt_us} µs; "
        f"{n / seconds:.0f} samples/s")


@encode_app.command("nmnist")
def encode_nmnist(
    source: Path = typer.Option(..., "--source", help="Directory holding Train/<digit>/*.bin and Test/<digit>/."),
    out: Path = OUT,
    preset: str = typer.Option("reference", "--preset", help="'reference' (HM2-BP conversion, algorithm.md §2.2), "
                               "'reference-exact' (also the reference's channel order) or 'plain'."),
    dt_us: int = _DT, steps: int = _STEPS, rounding: str = _ROUNDING, time_shift: int = _SHIFT,
    stabilize: bool = typer.Option(None, "--stabilize/--no-stabilize", help="Undo the three saccades."),
    crop: str = _CROP, downsample: int = _DOWN, polarity: str = _POLARITY, unit_order: str = _ORDER,
    transform: list[str] = _TRANSFORM, drop_outside: bool = _DROP_OUTSIDE, split_seed: int = _SPLIT_SEED,
    max_train: int = _MAX_TRAIN, max_test: int = _MAX_TEST,
    workers: int = WORKERS, chunk: int = _CHUNK, overwrite: bool = OVERWRITE, quiet: bool = QUIET,
) -> None:  # fmt: skip
    """N-MNIST from its unzipped .bin files, 600 µs bins, 540 steps, 2 x 34 x 34 units by default."""
    from spikedata.datasets.nmnist import PRESETS, expected_counts, find_nmnist
    from spikedata.manifest import ManifestError

    if preset not in PRESETS:
        raise typer.BadParameter(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    check_new_output(out, overwrite)
    options = _options(PRESETS[preset], dt_us, steps, rounding, time_shift, crop, downsample, polarity,
                       unit_order, stabilize=stabilize)  # fmt: skip
    try:
        folder = find_nmnist(source)
    except (FileNotFoundError, ValueError, ManifestError) as exc:
        fail(str(exc))
    for split, n in expected_counts().items():
        have = len(folder.splits[split]) if split in folder.splits else 0
        if have != n:
            note(f"split {split}: {have} files (the full set has {n})")
    folder = _select(folder, None, split_seed, max_train, max_test, published=True)
    prep = _prep(options.sensor_size, transform, drop_outside, split_seed)
    _run("nmnist", folder, options, out, workers, chunk, overwrite, quiet, prep)


@encode_app.command("events")
def encode_events(
    source: Path = typer.Option(..., "--source", help="Folder of event files: <class>/<file> or "
                                "<split>/<class>/<file>, or any layout with --labels."),
    out: Path = OUT,
    labels: Path = typer.Option(None, "--labels", help="CSV with columns file,label[,split] (paths relative "
                                "to --source)."),
    sensor_size: str = typer.Option(None, "--sensor-size", help="WIDTH,HEIGHT (default: as the files state)."),
    dt_us: int = typer.Option(1000, "--dt-us", min=1, help="Bin width in µs (one time step)."),
    steps: int = typer.Option(..., "--steps", min=1, help="Time steps kept per sample."),
    t_start: str = typer.Option("first", "--t-start", help="Time origin: 'first' (each sample's first event) "
                                "or 'zero' (the file's time 0)."),
    rounding: str = _ROUNDING, time_shift: int = _SHIFT, crop: str = _CROP, downsample: int = _DOWN,
    polarity: str = _POLARITY, unit_order: str = _ORDER, extensions: str = typer.Option(
        ".bin,.bs2,.aedat,.aedat4,.dat,.raw,.hdf5,.h5", "--extensions", help="File name endings to read (comma "
        "separated; add .csv / .txt for text event files)."),
    transform: list[str] = _TRANSFORM, drop_outside: bool = _DROP_OUTSIDE, test_fraction: float = _TEST_FRACTION,
    split_seed: int = _SPLIT_SEED, max_train: int = _MAX_TRAIN, max_test: int = _MAX_TEST,
    workers: int = WORKERS, chunk: int = _CHUNK, overwrite: bool = OVERWRITE, quiet: bool = QUIET,
) -> None:  # fmt: skip
    """A generic folder of event files (ATIS .bin, AEDAT 2/3.1/4, Prophesee EVT 2.0/2.1/3.0, DAT, HDF5, text /
    CSV), labels from sub-folders or a CSV."""
    from spikedata.datasets.event_folder import probe_sensor_size, scan_folder
    from spikedata.encoders.event_binning import BinningOptions
    from spikedata.io.events import EventFileError

    if t_start not in ("first", "zero"):
        raise typer.BadParameter(f"--t-start must be 'first' or 'zero', got {t_start!r}")
    check_new_output(out, overwrite)
    exts = tuple(e.strip().lower() for e in extensions.split(",") if e.strip())
    try:
        folder = scan_folder(source, extensions=exts, labels_csv=labels)
        size = _parse_ints(sensor_size, 2, "--sensor-size")
        if size is None:
            size, fmt = probe_sensor_size(folder)
            if size is None:
                fail(f"{fmt} files do not state the sensor size; pass --sensor-size WIDTH,HEIGHT")
    except (FileNotFoundError, ValueError, EventFileError) as exc:
        fail(error_text(exc))
    base = BinningOptions(sensor_size=size, dt_us=dt_us, n_steps=steps, t_start_us=None if t_start == "first"
                          else 0)  # fmt: skip
    options = _options(base, None, None, rounding, time_shift, crop, downsample, polarity, unit_order)
    folder = _select(folder, test_fraction, split_seed, max_train, max_test)
    _run("events", folder, options, out, workers, chunk, overwrite, quiet,
         _prep(size, transform, drop_outside, split_seed))  # fmt: skip


def _dataset_options(manifest_name: str, sensor_size, dt_us, steps, rounding, time_shift, crop, downsample,
                     polarity, unit_order, prep):  # fmt: skip
    """BinningOptions from the manifest's defaults (dt_us, n_steps, downsample) and the user's options."""
    from spikedata.encoders.event_binning import BinningOptions
    from spikedata.manifest import load_manifest

    layout = load_manifest(manifest_name).layout
    base = BinningOptions(sensor_size=tuple(prep.output_size), dt_us=int(layout.get("dt_us", 1000)),
                          n_steps=int(layout.get("n_steps", 1000)),
                          t_start_us=None if layout.get("t_start") == "first" else 0,
                          downsample=int(layout.get("downsample", 1)))  # fmt: skip
    return _options(base, dt_us, steps, rounding, time_shift, crop, downsample, polarity, unit_order)


_SOURCE_HELP = "Directory holding the data set (layout in docs/events.md)."


@encode_app.command("dvsgesture")
def encode_dvsgesture(
    source: Path = typer.Option(..., "--source", help=_SOURCE_HELP), out: Path = OUT,
    overlap: str = typer.Option("keep", "--overlap", help="Overlapping label rows: 'keep' (each row as given) or "
                                "'clip' (a row ends where the next starts)."),
    dt_us: int = _DT, steps: int = _STEPS, rounding: str = _ROUNDING, time_shift: int = _SHIFT, crop: str = _CROP,
    downsample: int = _DOWN, polarity: str = _POLARITY, unit_order: str = _ORDER, transform: list[str] = _TRANSFORM,
    drop_outside: bool = _DROP_OUTSIDE, split_seed: int = _SPLIT_SEED, max_train: int = _MAX_TRAIN,
    max_test: int = _MAX_TEST, workers: int = WORKERS, chunk: int = _CHUNK, overwrite: bool = OVERWRITE,
    quiet: bool = QUIET,
) -> None:  # fmt: skip
    """IBM DVS128 Gesture: one sample per labelled segment, published split; 5 ms bins, 300 steps, 2 x 32 x 32."""
    from spikedata.datasets.dvsgesture import find_dvsgesture
    from spikedata.errors import DatasetError

    check_new_output(out, overwrite)
    try:
        folder = find_dvsgesture(source, overlap=overlap)
    except (FileNotFoundError, ValueError, DatasetError) as exc:
        fail(str(exc))
    if folder.notes.get("overlapping_label_rows"):
        note(f"{folder.notes['overlapping_label_rows']} label row(s) overlap the next row of their file "
             f"(--overlap {overlap})")  # fmt: skip
    folder = _select(folder, None, split_seed, max_train, max_test, published=True)
    prep = _prep((128, 128), transform, drop_outside, split_seed)
    options = _dataset_options("dvsgesture", None, dt_us, steps, rounding, time_shift, crop, downsample, polarity,
                               unit_order, prep)  # fmt: skip
    _run("dvsgesture", folder, options, out, workers, chunk, overwrite, quiet, prep)


@encode_app.command("ncars")
def encode_ncars(
    source: Path = typer.Option(..., "--source", help=_SOURCE_HELP), out: Path = OUT,
    dt_us: int = _DT, steps: int = _STEPS, rounding: str = _ROUNDING, time_shift: int = _SHIFT, crop: str = _CROP,
    downsample: int = _DOWN, polarity: str = _POLARITY, unit_order: str = _ORDER, transform: list[str] = _TRANSFORM,
    drop_outside: bool = _DROP_OUTSIDE, split_seed: int = _SPLIT_SEED, max_train: int = _MAX_TRAIN,
    max_test: int = _MAX_TEST, workers: int = WORKERS, chunk: int = _CHUNK, overwrite: bool = OVERWRITE,
    quiet: bool = QUIET,
) -> None:  # fmt: skip
    """Prophesee N-CARS (.dat), published split; 120 x 100 sensor, 1 ms bins, 100 steps."""
    from spikedata.datasets.ncars import find_ncars
    from spikedata.manifest import load_manifest

    check_new_output(out, overwrite)
    try:
        folder = find_ncars(source)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    folder = _select(folder, None, split_seed, max_train, max_test, published=True)
    prep = _prep(tuple(load_manifest("ncars").layout["sensor_size"]), transform, drop_outside, split_seed)
    options = _dataset_options("ncars", None, dt_us, steps, rounding, time_shift, crop, downsample, polarity,
                               unit_order, prep)  # fmt: skip
    _run("ncars", folder, options, out, workers, chunk, overwrite, quiet, prep)


@encode_app.command("ncaltech101")
def encode_ncaltech101(
    source: Path = typer.Option(..., "--source", help=_SOURCE_HELP), out: Path = OUT,
    sensor_size: str = typer.Option(None, "--sensor-size", help="WIDTH,HEIGHT (default: the largest extent of "
                                    "the files, scanned first)."),
    dt_us: int = _DT, steps: int = _STEPS, rounding: str = _ROUNDING, time_shift: int = _SHIFT, crop: str = _CROP,
    downsample: int = _DOWN, polarity: str = _POLARITY, unit_order: str = _ORDER, transform: list[str] = _TRANSFORM,
    drop_outside: bool = _DROP_OUTSIDE, test_fraction: float = _TEST_FRACTION, split_seed: int = _SPLIT_SEED,
    max_train: int = _MAX_TRAIN, max_test: int = _MAX_TEST, workers: int = WORKERS, chunk: int = _CHUNK,
    overwrite: bool = OVERWRITE, quiet: bool = QUIET,
) -> None:  # fmt: skip
    """N-Caltech101 (ATIS .bin), sensor size from the data; no published split (use --test-fraction)."""
    from dataclasses import replace as _replace

    from spikedata.datasets.ncaltech101 import find_ncaltech101, scan_extent

    check_new_output(out, overwrite)
    try:
        folder = find_ncaltech101(source)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    size = _parse_ints(sensor_size, 2, "--sensor-size")
    observed = scan_extent(folder) if size is None else None
    if size is None:
        size = observed
        say(f"sensor size from the data: {size[0]} x {size[1]}")
    folder = _replace(folder, notes={**folder.notes, "sensor_size_observed": observed and list(observed)})
    if test_fraction is None:
        note("N-Caltech101 publishes no split: every sample goes to 'train' (give --test-fraction for a test split)")
    folder = _select(folder, test_fraction, split_seed, max_train, max_test)
    prep = _prep(size, transform, drop_outside, split_seed)
    options = _dataset_options("ncaltech101", None, dt_us, steps, rounding, time_shift, crop, downsample, polarity,
                               unit_order, prep)  # fmt: skip
    _run("ncaltech101", folder, options, out, workers, chunk, overwrite, quiet, prep)


@encode_app.command("cifar10dvs")
def encode_cifar10dvs(
    source: Path = typer.Option(..., "--source", help=_SOURCE_HELP), out: Path = OUT,
    dt_us: int = _DT, steps: int = _STEPS, rounding: str = _ROUNDING, time_shift: int = _SHIFT, crop: str = _CROP,
    downsample: int = _DOWN, polarity: str = _POLARITY, unit_order: str = _ORDER, transform: list[str] = _TRANSFORM,
    drop_outside: bool = _DROP_OUTSIDE, test_fraction: float = _TEST_FRACTION, split_seed: int = _SPLIT_SEED,
    max_train: int = _MAX_TRAIN, max_test: int = _MAX_TEST, workers: int = WORKERS, chunk: int = _CHUNK,
    overwrite: bool = OVERWRITE, quiet: bool = QUIET,
) -> None:  # fmt: skip
    """CIFAR10-DVS (AEDAT 2.0 or 4.0), 128 x 128; no published split (use --test-fraction, e.g. 0.1)."""
    from spikedata.datasets.cifar10dvs import find_cifar10dvs
    from spikedata.errors import DatasetError

    check_new_output(out, overwrite)
    try:
        folder = find_cifar10dvs(source)
    except (FileNotFoundError, ValueError, DatasetError) as exc:
        fail(str(exc))
    if test_fraction is None:
        note("CIFAR10-DVS publishes no split: every sample goes to 'train' (give --test-fraction for a test split)")
    folder = _select(folder, test_fraction, split_seed, max_train, max_test)
    prep = _prep((128, 128), transform, drop_outside, split_seed)
    options = _dataset_options("cifar10dvs", None, dt_us, steps, rounding, time_shift, crop, downsample, polarity,
                               unit_order, prep)  # fmt: skip
    _run("cifar10dvs", folder, options, out, workers, chunk, overwrite, quiet, prep)
