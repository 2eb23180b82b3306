"""`spikedata encode ti46|fsdd`: audio -> 12.5 kHz -> Lyon's passive ear -> BSA spikes, into a spike store."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from cli.apps import encode_app

console = Console(stderr=True)

_SOURCE = typer.Option(..., "--source", help="Directory holding the recordings.")
_OUT = typer.Option(..., "--out", help="Path of the spike store to write (a directory, e.g. ti46.zarr).")
_WORKERS = typer.Option(1, "--workers", min=1, help="Encoding processes (the store is the same for any number).")
_STEPS = typer.Option(1000, "--steps", min=1, help="BSA steps per sample (one step = decimation/rate/hold s).")
_RATE = typer.Option(12500, "--sample-rate", min=1, help="Model sample rate in Hz (audio is resampled to it).")
_DECIM = typer.Option(200, "--decimation", min=1, help="Lyon decimation: audio samples per cochleagram frame.")
_EAR_Q = typer.Option(8.0, "--ear-q", min=0.51, help="Lyon ear Q (smaller = broader filters).")
_STEP_FACTOR = typer.Option(None, "--step-factor", min=0.0, help="Lyon channel spacing; default ear_q / 32.")
_DIFFER = typer.Option(True, "--differ/--no-differ", help="Lyon channel difference stage.")
_AGC = typer.Option(True, "--agc/--no-agc", help="Lyon automatic gain control.")
_TAU = typer.Option(3.0, "--tau-factor", min=0.0, help="Lyon decimation low-pass time constant, in frames.")
_HOLD = typer.Option(10, "--hold", min=1, help="BSA steps per cochleagram frame.")
_SCALE = typer.Option(2000.0, "--scale", help="BSA input scale.")
_TAPS = typer.Option(24, "--taps", min=1, help="BSA Gaussian FIR kernel length.")
_THRESHOLD = typer.Option(0.6, "--threshold", help="BSA threshold.")
_RES_TYPE = typer.Option("soxr_hq", "--res-type", help="librosa resampling method.")
_OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing store at --out.")
_QUIET = typer.Option(False, "--quiet", help="No progress bar.")


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _front_end(**kwargs):
    from spikedata.datasets.ti46 import SpeechFrontEnd

    try:
        return SpeechFrontEnd(**kwargs)
    except ValueError as exc:
        _fail(str(exc))


def _run(dataset: str, root: Path, utterances, classes, front_end, out: Path, workers: int, overwrite: bool,
         quiet: bool, extras: dict | None = None, expected: dict | None = None) -> None:
    from spikedata.datasets.ti46 import DatasetError, speech_jobs
    from spikedata.pipeline import encode_to_store

    counts = {s: sum(u.split == s for u in utterances) for s in ("train", "test")}
    console.print(
        f"{dataset}: {counts['train']} train + {counts['test']} test recordings, {len(classes)} classes, "
        f"{front_end.n_channels} channels, {front_end.steps} steps of {front_end.dt_us:g} µs",
        highlight=False,
    )
    for split, n in (expected or {}).items():
        if counts.get(split) != n:
            console.print(f"[yellow]note:[/yellow] {split}: {counts.get(split)} recordings, the corpus has {n}")
    started = time.perf_counter()
    try:
        attrs, jobs = speech_jobs(dataset, root, utterances, classes, front_end, extras)
        path = encode_to_store(out, attrs, jobs, workers=workers, progress=not quiet, overwrite=overwrite)
    except (DatasetError, FileExistsError, OSError) as exc:
        _fail(str(exc))
    console.print(f"wrote {path} in {time.perf_counter() - started:.1f} s", highlight=False)


@encode_app.command("ti46")
def encode_ti46(
    source: Path = _SOURCE,
    out: Path = _OUT,
    subset: str = typer.Option("ti_alpha", "--subset", help="ti_alpha (26 letters) or ti20 (20 words)."),
    pattern: str = typer.Option(
        None, "--pattern", help="Regex with named groups label, speaker, split, searched in each file's path "
        "relative to --source (instead of the TI46 layout)."
    ),
    workers: int = _WORKERS,
    steps: int = _STEPS,
    sample_rate: int = _RATE,
    decimation: int = _DECIM,
    ear_q: float = _EAR_Q,
    step_factor: float = _STEP_FACTOR,
    differ: bool = _DIFFER,
    agc: bool = _AGC,
    tau_factor: float = _TAU,
    hold: int = _HOLD,
    scale: float = _SCALE,
    taps: int = _TAPS,
    threshold: float = _THRESHOLD,
    res_type: str = _RES_TYPE,
    overwrite: bool = _OVERWRITE,
    quiet: bool = _QUIET,
) -> None:
    """Encode TI46 (LDC93S9, obtained by the user; see data_manifests/ti46.toml) spoken letters into a store."""
    from spikedata.datasets.ti46 import DatasetError, scan_ti46

    if out.exists() and not overwrite:
        _fail(f"{out} already exists; pass --overwrite to replace it")
    front_end = _front_end(sample_rate=sample_rate, decimation=decimation, ear_q=ear_q, step_factor=step_factor,
                           differ=differ, agc=agc, tau_factor=tau_factor, steps=steps, hold=hold, scale=scale,
                           taps=taps, threshold=threshold, res_type=res_type)
    try:
        utterances, classes, ignored = scan_ti46(source, subset, pattern)
    except DatasetError as exc:
        _fail(str(exc))
    if ignored:
        console.print(f"[yellow]note:[/yellow] {ignored} audio files under {source} do not match and are ignored")
    expected = None
    if pattern is None:
        from spikedata.manifest import load_manifest

        splits = load_manifest("ti46").splits
        expected = {s: spec[f"n_{subset}"] for s, spec in splits.items() if f"n_{subset}" in spec}
    _run(f"ti46-{subset}" if pattern is None else "ti46", source, utterances, classes, front_end, out, workers,
         overwrite, quiet, expected=expected)


@encode_app.command("fsdd")
def encode_fsdd(
    source: Path = _SOURCE,
    out: Path = _OUT,
    workers: int = _WORKERS,
    steps: int = _STEPS,
    sample_rate: int = _RATE,
    decimation: int = _DECIM,
    ear_q: float = _EAR_Q,
    step_factor: float = _STEP_FACTOR,
    differ: bool = _DIFFER,
    agc: bool = _AGC,
    tau_factor: float = _TAU,
    hold: int = _HOLD,
    scale: float = _SCALE,
    taps: int = _TAPS,
    threshold: float = _THRESHOLD,
    res_type: str = _RES_TYPE,
    overwrite: bool = _OVERWRITE,
    quiet: bool = _QUIET,
) -> None:
    """Encode the Free Spoken Digit Dataset (takes 0-4 = test) into a store; speaker and take kept per sample."""
    from spikedata.datasets.fsdd import FSDD_CLASSES, scan_fsdd
    from spikedata.datasets.ti46 import DatasetError

    if out.exists() and not overwrite:
        _fail(f"{out} already exists; pass --overwrite to replace it")
    front_end = _front_end(sample_rate=sample_rate, decimation=decimation, ear_q=ear_q, step_factor=step_factor,
                           differ=differ, agc=agc, tau_factor=tau_factor, steps=steps, hold=hold, scale=scale,
                           taps=taps, threshold=threshold, res_type=res_type)
    try:
        utterances, takes = scan_fsdd(source)
    except DatasetError as exc:
        _fail(str(exc))
    _run("fsdd", source, utterances, FSDD_CLASSES, front_end, out, workers, overwrite, quiet,
         extras={"take": [int(t) for t in takes]})
