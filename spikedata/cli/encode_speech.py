"""`spikedata encode ti46|fsdd`: audio -> 12.5 kHz -> Lyon's passive ear -> BSA spikes, into a spike store."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
# The front-end options both commands take: name -> (type, option); `with_front_end` adds them to a command.
FRONT_END_OPTIONS = {
    "steps": (int, typer.Option(1000, "--steps", min=1,
                                help="BSA steps per sample (one step = decimation/rate/hold s).")),
    "sample_rate": (int, typer.Option(12500, "--sample-rate", min=1,
                                      help="Model sample rate in Hz (audio is resampled to it).")),
    "decimation": (int, typer.Option(200, "--decimation", min=1,
                                     help="Lyon decimation: audio samples per cochleagram frame.")),
    "ear_q": (float, typer.Option(8.0, "--ear-q", min=0.51, help="Lyon ear Q (smaller = broader filters).")),
    "step_factor": (float | None, typer.Option(None, "--step-factor", min=0.0,
                                               help="Lyon channel spacing; default ear_q / 32.")),
    "differ": (bool, typer.Option(True, "--differ/--no-differ", help="Lyon channel difference stage.")),
    "agc": (bool, typer.Option(True, "--agc/--no-agc", help="Lyon automatic gain control.")),
    "tau_factor": (float, typer.Option(3.0, "--tau-factor", min=0.0,
                                       help="Lyon decimation low-pass time constant, in frames.")),
    "hold": (int, typer.Option(10, "--hold", min=1, help="BSA steps per cochleagram frame.")),
    "scale": (float, typer.Option(2000.0, "--scale", help="BSA input scale.")),
    "taps": (int, typer.Option(24, "--taps", min=1, help="BSA Gaussian FIR kernel length.")),
    "threshold": (float, typer.Option(0.6, "--threshold", help="BSA threshold.")),
    "res_type": (str, typer.Option("soxr_hq", "--res-type", help="librosa resampling method.")),
}


def with_front_end(command: Callable) -> Callable:
    """Give `command` (which takes `front_end`) the options of `FRONT_END_OPTIONS` instead, defined once here:
    typer reads the signature, the wrapper builds the `SpeechFrontEnd` from them."""
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.name != "front_end"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
             for name, (kind, option) in FRONT_END_OPTIONS.items()]

    @functools.wraps(command)
    def run(**kwargs: Any) -> None:
        front_end = _front_end(**{name: kwargs.pop(name) for name in FRONT_END_OPTIONS})
        command(**kwargs, front_end=front_end)

    run.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in run.__signature__.parameters.values()}
    return run


def _front_end(**kwargs):
    from spikedata.encoders.speech import SpeechFrontEnd

    try:
        return SpeechFrontEnd(**kwargs)
    except ValueError as exc:
        fail(str(exc))


def _run(dataset: str, root: Path, utterances, classes, front_end, out: Path, workers: int, overwrite: bool,
         quiet: bool, extras: dict | None = None, expected: dict | None = None) -> None:
    from spikedata import store
    from spikedata.datasets.speech import speech_jobs
    from spikedata.encoders import bsa, lyon
    from spikedata.errors import DatasetError
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
    except (DatasetError, FileExistsError, OSError) as exc:
        fail(str(exc))
    say(f"wrote {path} in {time.perf_counter() - started:.1f} s")


@encode_app.command("ti46")
@with_front_end
def encode_ti46(
    source: Path = _SOURCE,
    out: Path = OUT,
    subset: str = typer.Option("ti_alpha", "--subset", help="ti_alpha (26 letters) or ti20 (20 words)."),
    pattern: str = typer.Option(
        None, "--pattern", help="Regex with named groups label, speaker, split, searched in each file's path "
        "relative to --source (instead of the TI46 layout)."
    ),
    workers: int = WORKERS,
    overwrite: bool = OVERWRITE,
    quiet: bool = QUIET,
    front_end: Any = None,
) -> None:
    """Encode TI46 (LDC93S9, obtained by the user; see data_manifests/ti46.toml) spoken letters into a store."""
    from spikedata.datasets.ti46 import scan_ti46
    from spikedata.errors import DatasetError

    check_new_output(out, overwrite)
    try:
        utterances, classes, ignored = scan_ti46(source, subset, pattern)
    except DatasetError as exc:
        fail(str(exc))
    if ignored:
        note(f"{ignored} audio files under {source} do not match and are ignored")
    expected = None
    if pattern is None:
        from spikedata.manifest import load_manifest

        splits = load_manifest("ti46").splits
        expected = {s: spec[f"n_{subset}"] for s, spec in splits.items() if f"n_{subset}" in spec}
    _run(f"ti46-{subset}" if pattern is None else "ti46", source, utterances, classes, front_end, out, workers,
         overwrite, quiet, expected=expected)


@encode_app.command("fsdd")
@with_front_end
def encode_fsdd(
    source: Path = _SOURCE,
    out: Path = OUT,
    workers: int = WORKERS,
    overwrite: bool = OVERWRITE,
    quiet: bool = QUIET,
    front_end: Any = None,
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
