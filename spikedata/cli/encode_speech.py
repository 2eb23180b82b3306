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
from spikedata.cli.common import OUT, OVERWRITE, QUIET, WORKERS, check_new_output, fail, note, say

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
    from spikedata.datasets.speech import speech_jobs
    from spikedata.errors import SpikedataError
    from spikedata.pipeline import encode_to_store

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
