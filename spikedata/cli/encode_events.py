"""`spikedata encode nmnist|events`: bin event-camera recordings into a spike store."""

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


def _run(dataset: str, folder, options, out: Path, workers: int, chunk: int, overwrite: bool, quiet: bool) -> None:
    from spikedata.datasets.event_folder import split_jobs, store_attrs
    from spikedata.pipeline import encode_to_store

    started = time.perf_counter()
    jobs = split_jobs(folder, options, chunk=chunk)
    with reported_errors(FileNotFoundError):
        path = encode_to_store(out, store_attrs(dataset, folder, options), jobs, workers=workers,
                               progress=not quiet, overwrite=overwrite)  # fmt: skip
    seconds = time.perf_counter() - started
    n = sum(job.n_samples for job in jobs.values())
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
    _run("nmnist", folder, options, out, workers, chunk, overwrite, quiet)


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
        ".bin,.bs2,.aedat,.aedat4,.dat", "--extensions", help="File name endings to read (comma separated)."),
    workers: int = WORKERS, chunk: int = _CHUNK, overwrite: bool = OVERWRITE, quiet: bool = QUIET,
) -> None:  # fmt: skip
    """A generic folder of event files (ATIS .bin, AEDAT 2/3.1/4), labels from sub-folders or a CSV."""
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
    _run("events", folder, options, out, workers, chunk, overwrite, quiet)
