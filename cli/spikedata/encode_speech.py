"""`spikedata encode ti46|fsdd|shd|ssc`: speech corpora into spike stores.

TI46 and FSDD are audio: 12.5 kHz -> Lyon's passive ear -> BSA spikes, with the front-end options of
:func:`front_end_options` (one definition, built from :class:`spikedata.encoders.speech.SpeechFrontEnd`'s fields).
SHD and SSC are published as spikes already (700 cochlea channels): they are binned to `--dt-us` steps.
"""

from __future__ import annotations

import functools
import inspect
import time
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, fields
from pathlib import Path

import typer

from spikedata.cli.app import encode_app
from spikedata.cli.common import (
    OUT,
    OVERWRITE,
    QUIET,
    WORKERS,
    check_new_output,
    fail,
    note,
    note_first_compilation,
    say,
)

_SOURCE = typer.Option(..., "--source", help="Directory holding the recordings.")


def front_end_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give `command` one `--option` per :class:`SpeechFrontEnd` field (default and help from the field) in place
    of its `front_end` parameter, and call it with the front end they describe (a bad value is one error line)."""
    from spikedata.encoders.speech import SpeechFrontEnd

    hints = typing.get_type_hints(SpeechFrontEnd)
    own = inspect.signature(command, eval_str=True)
    params = [p for p in own.parameters.values() if p.name != "front_end"]
    names = []
    for f in fields(SpeechFrontEnd):
        if not f.init:
            continue
        kind = hints[f.name]
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            kind = next(a for a in typing.get_args(kind) if a is not type(None))  # "float | None": a float option
        flag = "--" + f.name.replace("_", "-")
        decls = (f"{flag}/--no-{flag[2:]}",) if kind is bool else (flag,)
        low = f.metadata.get("min")
        option = typer.Option(f.default if f.default is not MISSING else ..., *decls, help=f.metadata["doc"],
                              **({"min": low} if low is not None else {}))
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind))
        names.append(f.name)
    signature = own.replace(parameters=params)

    @functools.wraps(command)
    def run(**kwargs):
        settings = {n: kwargs.pop(n) for n in names}
        try:
            front_end = SpeechFrontEnd(**settings)
        except ValueError as exc:
            fail(str(exc))
        return command(**kwargs, front_end=front_end)

    run.__signature__ = signature
    run.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}  # typer's type hints
    return run


def _run(dataset: str, root: Path, utterances, classes, front_end, out: Path, workers: int, overwrite: bool,
         quiet: bool, extras: dict | None = None, expected: dict | None = None) -> None:
    from spikedata import store
    from spikedata.datasets.speech import speech_jobs
    from spikedata.encoders import bsa, lyon
    from spikedata.errors import SpikedataError
    from spikedata.pipeline import encode_to_store

    note_first_compilation(lyon, bsa, store)
    counts = {s: sum(u.split == s for u in utterances) for s in ("train", "test")}
    say(
        f"{dataset}: {counts['train']} train + {counts['test']} test recordings, {len(classes)} classes, "
        f"{front_end.n_channels} channels, {front_end.steps} steps of {front_end.dt_us:g} µs")
    for split, n in (expected or {}).items():
        if counts.get(split) != n:
            note(f"{split}: {counts.get(split)} recordings, the corpus has {n}")
    started = time.perf_counter()
    try:
        attrs, jobs = speech_jobs(dataset, root, utterances, classes, front_end, extras)
        path = encode_to_store(out, attrs, jobs, workers=workers, progress=not quiet, overwrite=overwrite)
    except (SpikedataError, FileExistsError, OSError) as exc:
        fail(str(exc))
    from spikedata.store import open_store

    store = open_store(path)
    assumed = sum(store[s].attrs["encode_stats"].get("byte_order_assumed", 0) for s in store.splits)
    if assumed:
        note(f"{assumed} SPHERE files state no sample_byte_format: read little-endian, as libsndfile does")
    say(f"wrote {path} in {time.perf_counter() - started:.1f} s")


@encode_app.command("ti46")
@front_end_options
def encode_ti46(
    source: Path = _SOURCE,
    out: Path = OUT,
    subset: str = typer.Option("ti_alpha", "--subset", help="ti_alpha (26 letters) or ti20 (10 digits and 10 "
                               "command words)."),
    pattern: str = typer.Option(
        None, "--pattern", help="Regex with named groups label, speaker, split (and optionally take), searched in "
        "each file's path relative to --source (instead of the TI46 layout)."
    ),
    workers: int = WORKERS,
    overwrite: bool = OVERWRITE,
    quiet: bool = QUIET,
    front_end=None,
) -> None:
    """Encode TI46 (LDC93S9, obtained by the user; any of its layouts, see data_manifests/ti46.toml) into a store;
    speaker, session, token and path kept per sample."""
    from spikedata.datasets.ti46 import expected_counts, scan_ti46
    from spikedata.errors import DatasetError

    check_new_output(out, overwrite)
    try:
        copy = scan_ti46(source, subset, pattern)
    except DatasetError as exc:
        fail(str(exc))
    if copy.ignored:
        note(f"{copy.ignored} audio files under {source} do not match and are ignored, e.g. {copy.ignored_example}")
    _run(f"ti46-{subset}", source, copy.utterances, copy.classes, front_end, out, workers, overwrite, quiet,
         extras=copy.extras, expected=expected_counts(subset))


@encode_app.command("fsdd")
@front_end_options
def encode_fsdd(
    source: Path = _SOURCE,
    out: Path = OUT,
    workers: int = WORKERS,
    overwrite: bool = OVERWRITE,
    quiet: bool = QUIET,
    front_end=None,
) -> None:
    """Encode the Free Spoken Digit Dataset (takes 0-4 = test) into a store; speaker and take kept per sample."""
    from spikedata.datasets.fsdd import FSDD_CLASSES, scan_fsdd
    from spikedata.errors import DatasetError

    check_new_output(out, overwrite)
    try:
        utterances, takes = scan_fsdd(source)
    except DatasetError as exc:
        fail(str(exc))
    _run("fsdd", source, utterances, FSDD_CLASSES, front_end, out, workers, overwrite, quiet,
         extras={"take": [int(t) for t in takes]})


def _steps(text: str | None, dataset: str, plain: dict, dt_us: int, where: dict) -> int:
    """--steps: an integer, `auto` (the longest sample of every file) or absent (the manifest's cut-off)."""
    from spikedata.datasets.heidelberg import default_steps, longest_time_us, vet_file

    if text is None:
        return default_steps(dataset)
    if text.strip().lower() == "auto":
        for s, p in plain.items():
            vet_file(p, str(where[s]))  # a damaged file crashes a child process, not this one
        latest = max(longest_time_us(p, str(where[s])) for s, p in plain.items())
        return int(latest // dt_us) + 1
    try:
        steps = int(text)
    except ValueError:
        raise typer.BadParameter(f"--steps must be a positive integer or 'auto', got {text!r}") from None
    if steps < 1:
        raise typer.BadParameter(f"--steps must be a positive integer or 'auto', got {text!r}")
    return steps


def _encode_heidelberg(dataset: str, source: Path, out: Path, dt_us: int | None, steps: str | None, workers: int,
                       chunk: int, overwrite: bool, quiet: bool) -> None:
    import contextlib

    from spikedata.datasets.heidelberg import default_dt_us, expected_counts, find_files, heidelberg_jobs, unpacked
    from spikedata.errors import SpikedataError
    from spikedata.pipeline import encode_to_store
    from spikedata.store import open_store

    check_new_output(out, overwrite)
    started = time.perf_counter()
    try:
        files, missing = find_files(source, dataset)
        for split in missing:
            note(f"no {dataset}_{split}.h5[.gz] in {source}: the store gets no {split!r} split")
        dt = dt_us or default_dt_us(dataset)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:  # temporary unpacked copies live beside the store until the end
            plain = {s: stack.enter_context(unpacked(p, Path(out).parent)) for s, p in files.items()}
            n_steps = _steps(steps, dataset, plain, dt, files)
            attrs, jobs = heidelberg_jobs(dataset, files, plain, dt, n_steps, chunk=chunk)
            say(f"{dataset}: {', '.join(f'{s} {j.n_samples}' for s, j in jobs.items())} samples, "
                f"{len(attrs['classes'])} classes, 700 channels, {n_steps} steps of {dt} µs")
            for split, n in expected_counts(dataset).items():
                if split in jobs and jobs[split].n_samples != n:
                    note(f"{split}: {jobs[split].n_samples} samples, the published file has {n}")
            path = encode_to_store(out, attrs, jobs, workers=workers, progress=not quiet, overwrite=overwrite)
    except (SpikedataError, FileExistsError, OSError) as exc:
        fail(str(exc))
    store = open_store(path)
    for split in store.splits:
        st = store[split].attrs["encode_stats"]
        if st["truncated"]:
            note(f"{split}: {st['truncated']} samples outlast {n_steps} steps ({st['dropped_time']} spikes dropped); "
                 "--steps auto keeps every spike")
        say(f"  {split}: {st['events_read']:,} spikes read, {st['spikes']:,} stored, {st['collapsed']:,} collapsed "
            f"into an earlier spike of the same channel and step")
    say(f"wrote {path} in {time.perf_counter() - started:.1f} s")


def _heidelberg_command(dataset: str, summary: str) -> None:
    def command(
        source: Path = typer.Option(..., "--source", help=f"Directory holding the {dataset}_<split>.h5 files (or "
                                    ".h5.gz, as published)."),
        out: Path = OUT,
        dt_us: int = typer.Option(None, "--dt-us", min=1, help=f"Bin width in µs (default: data_manifests/"
                                  f"{dataset}.toml, 1000)."),
        steps: str = typer.Option(None, "--steps", help="Time steps per sample: N, or 'auto' for the longest "
                                  f"sample (default: the cut-off of data_manifests/{dataset}.toml)."),
        workers: int = WORKERS,
        chunk: int = typer.Option(256, "--chunk", min=1, help="Samples per work unit."),
        overwrite: bool = OVERWRITE,
        quiet: bool = QUIET,
    ) -> None:
        _encode_heidelberg(dataset, source, out, dt_us, steps, workers, chunk, overwrite, quiet)

    command.__doc__ = summary
    command.__name__ = f"encode_{dataset}"
    encode_app.command(dataset)(command)


_heidelberg_command("shd", "Spiking Heidelberg Digits (HDF5, 700 channels, 20 classes) binned into a store; speaker "
                    "kept per sample.")
_heidelberg_command("ssc", "Spiking Speech Commands (HDF5, 700 channels, 35 classes; train, valid and test) binned "
                    "into a store; speaker kept per sample.")
