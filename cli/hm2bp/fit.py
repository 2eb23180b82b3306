"""`hm2bp fit STORE (--preset NAME | --config FILE)`: train a network on a spike store.

Runs unchanged under `torchrun` (data-parallel, `hm2bp.train.distributed`, `docs/scaling.md`): rank 0 prints and writes
the run directory, the other ranks print only errors.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hm2bp.cli.app import app as hm2bp_app
from hm2bp.cli.device import BACKEND, DEVICE, check_backend, check_device
from spikedata.cli.common import console, echo, error_text, fail, note, note_first_compilation, say
from spikedata.errors import PicklableError


def _pct(acc: float | None) -> str:
    return "-" if acc is None else f"{100 * acc:.2f} %"


class RichProgress:
    """Progress bar per epoch (fits 80 columns): `epoch k/N`, samples, samples/s, running loss and accuracy, time
    left; then one summary line per epoch. Epochs are shown counted from 1; metrics.jsonl counts them from 0."""

    def __init__(self, show: bool):
        self.show = show
        self.bar: Progress | None = None
        self.task = None

    def epoch_start(self, epoch: int, n_epochs: int, n_samples: int, lr: float) -> None:
        self.n_seen = self.loss = self.correct = 0
        self.epoch, self.n_epochs = epoch, n_epochs
        if not self.show:
            return
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=None), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>5.0f}/s"), TextColumn("loss {task.fields[loss]:5.1f}"),
            TextColumn("acc {task.fields[acc]:5.1f}%"), TimeRemainingColumn(compact=True), console=console,
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task(f"epoch {epoch + 1}/{n_epochs}", total=n_samples, rate=0.0, loss=0.0, acc=0.0)

    def batch_end(self, n_samples: int, loss_sum: float, n_correct: int) -> None:
        self.n_seen += n_samples
        self.loss += loss_sum
        self.correct += n_correct
        if self.bar is not None:
            speed = self.bar.tasks[0].speed or 0.0
            self.bar.update(self.task, advance=n_samples, rate=speed, loss=self.loss / self.n_seen,
                            acc=100 * self.correct / self.n_seen)

    def evaluating(self, split: str, n_samples: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=f"epoch {self.epoch + 1}/{self.n_epochs} {split}")

    def epoch_end(self, record: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        valid = f"  valid {_pct(record.get('valid_accuracy'))}" if record.get("valid_accuracy") is not None else ""
        echo(
            f"epoch {record['epoch'] + 1:>3}/{self.n_epochs}  lr {record['lr']:.3g}  loss {record['train_loss']:.3f}  "
            f"train {_pct(record['train_accuracy'])}{valid}  test {_pct(record['test_accuracy'])}  "
            f"{record['seconds']:.1f} s, {record['samples_per_s']:.1f} samples/s")


@hm2bp_app.command("fit")
def fit(
    store: str = typer.Argument(..., help="Spike store: a directory written by `spikedata encode`, or an fsspec "
                                "URL (s3://..., https://...)."),
    preset: str | None = typer.Option(None, "--preset", help="Shipped network preset (e.g. mnist-mlp, demo)."),
    config: Path | None = typer.Option(None, "--config", help="Network config TOML file."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Total epochs (overrides train.epochs)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Overrides train.batch_size."),
    lr: float | None = typer.Option(None, "--lr", help="Base learning rate (overrides train.lr)."),
    seed: int | None = typer.Option(None, "--seed", min=0, help="Seed of weights and shuffling (train.seed)."),
    device: str = DEVICE,
    out: Path | None = typer.Option(None, "--out", help="Run directory (default runs/<store>-<preset|config>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run that --out already holds."),
    max_train: int | None = typer.Option(None, "--max-train", min=1,
                                         help="Train on a seeded, stratified subset of N train samples."),
    max_test: int | None = typer.Option(None, "--max-test", min=1, help="Test on only the first N test samples."),
    shuffle_buffer: int = typer.Option(
        4096, "--shuffle-buffer", min=1,  # = hm2bp.train.loader.DEFAULT_BUFFER (not imported here: keeps --help fast)
        help="Samples shuffled together (a split that fits gets a full permutation per epoch; memory ~ buffer).",
    ),
    train_split: str = typer.Option("train", "--train-split", help="Split to train on."),
    augment: bool | None = typer.Option(
        None, "--augment/--no-augment",
        help="Turn the config's [augment] image augmentation on/off (on: needs the store's `images` extra).",
    ),
    test_split: str = typer.Option("test", "--test-split", help="Split to test on after each epoch ('none': no test)."),
    val_fraction: float | None = typer.Option(
        None, "--val-fraction",
        help="Hold out this seeded, stratified fraction of the training samples for validation; best.pt is chosen "
        "on it.",
    ),
    valid_split: str = typer.Option(
        "auto", "--valid-split",
        help="Validation split of the store ('auto': its own valid/val split if it has one; 'none': none).",
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar (epoch summaries only)."),
    backend: str = BACKEND,
    device_data: float = typer.Option(
        0.25, "--device-data", min=0.0, max=1.0,  # = hm2bp.train.device_data.DEFAULT_RESIDENT_FRACTION
        help="On CUDA: share of the GPU's free memory the training events may take to stay on it (0: stream them).",
    ),
    report_every: int | None = typer.Option(
        None, "--report-every", min=1,
        help="Steps between read-backs of loss and accuracy for the progress bar (default: 1 on CPU, 50 on CUDA).",
    ),
    dist_timeout: float | None = typer.Option(
        None, "--dist-timeout", min=1.0,
        help="Under torchrun: seconds a rank waits for the others before failing (default $HM2BP_DIST_TIMEOUT or 300).",
    ),
) -> None:
    """Train a spiking network with HM2-BP; writes metrics.jsonl, learning_curve.png, last.pt and best.pt."""
    from hm2bp.train.distributed import DistributedError, init_world, shutdown
    from hm2bp.train.run import run_fit, start_fit

    device = check_device(device)
    backend = check_backend(backend)
    if (preset is None) == (config is None):
        raise typer.BadParameter("give exactly one of --preset NAME or --config FILE")
    try:
        world, dev = init_world(device, dist_timeout)  # joins torchrun's process group when launched by it
    except DistributedError as exc:
        fail(str(exc))

    def fail_rank(message: str) -> None:  # with several ranks, say which one failed
        fail(f"rank {world.rank}: {message}" if world.is_distributed and not message.startswith("rank ") else message)

    overrides = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr), ("seed", seed))
                 if v is not None}
    try:
        run = start_fit(
            store, preset=preset, config_file=config, overrides=overrides, augment=augment, out=out, resume=resume,
            overwrite=overwrite, device=str(dev), max_train=max_train, max_test=max_test, train_split=train_split,
            shuffle_buffer=shuffle_buffer, test_split=None if test_split.lower() == "none" else test_split,
            valid_split=None if valid_split.lower() == "none" else valid_split, val_fraction=val_fraction,
            command=shlex.join(["hm2bp", *sys.argv[1:]]), world=world, backend=backend,
            resident_fraction=device_data, report_every=report_every,
        )
    except (PicklableError, KeyError, ValueError, OSError) as exc:  # every project error, and bad files
        fail_rank(error_text(exc))
    trainer, t = run.trainer, run.trainer.train
    first = trainer.state.epoch + 1
    if world.is_main:
        note_validation(trainer)
        echo(run_header(run, resume))
        note_first_compilation(*trainer.net.jit_modules())
    if first >= t.epochs:
        if world.is_main:
            echo(f"nothing to do: {t.epochs} epochs already done")
        shutdown(world)
        return
    try:
        run_fit(trainer, RichProgress(show=not quiet and console.is_terminal) if world.is_main else None)
    except (PicklableError, OSError) as exc:  # e.g. a store chunk found damaged at its first read
        fail_rank(error_text(exc))
    except KeyboardInterrupt:
        say(f"interrupted; resume with --resume --out {run.run_dir}")
        raise typer.Exit(130) from None
    shutdown(world)
    if world.is_main:
        echo(summary_line(trainer.state, t.epochs) + f"; run directory {run.run_dir}")


def run_header(run, resume: bool) -> str:
    """One line: the network, the training settings, the data, the device and kernels, the run directory."""
    trainer, cfg = run.trainer, run.config
    t, world = trainer.train, trainer.world
    ranks = f", {world.world_size} ranks ({world.backend}, global batch {trainer.loader.global_batch})" \
        if world.is_distributed else ""
    return (f"{run.source}: {' -> '.join([str(trainer.train_split.n_units)] + [s.describe() for s in cfg.layers])}, "
            f"T {cfg.steps}, {t.optimizer} lr {t.lr:g} ({t.lr_schedule}, batch scaling {t.lr_batch_scaling}), "
            f"batch {t.batch_size}, {trainer.loader.n} train samples, device {trainer.device} "
            f"({trainer.net.backend} kernels), run dir {run.run_dir}"
            + ranks + (f", resuming at epoch {trainer.state.epoch + 2}/{t.epochs}" if resume else ""))


def note_validation(trainer) -> None:
    """Say which split `best.pt` is chosen on, plainly when it is the test split."""
    if trainer.selection == "valid":
        say(f"model selection: best.pt is the epoch with the best accuracy on the validation split "
            f"{trainer.valid_split.name!r} ({len(trainer.valid_split)} samples)")
    elif trainer.selection == "test":
        note('no validation split: "best" (best.pt) is chosen on the test split, as the paper did; its test accuracy '
             "is optimistic. Hold out a validation split with --val-fraction F")
    else:
        note('no validation or test split: "best" (best.pt) is chosen on the training accuracy')


def summary_line(state, n_epochs: int) -> str:
    """Final-epoch figures and the best epoch's (selection split, its test accuracy), one line."""
    final = state.history[-1]
    where = {"valid": "validation", "test": "test", "train": "training"}[state.best_split or "train"]
    text = (f"final epoch {final['epoch'] + 1}/{n_epochs}: train {_pct(final['train_accuracy'])}"
            + (f", validation {_pct(final['valid_accuracy'])}" if final.get("valid_accuracy") is not None else "")
            + f", test {_pct(final['test_accuracy'])}; best {where} accuracy {_pct(state.best_accuracy)} at epoch "
            f"{state.best_epoch + 1} (best.pt)")
    if state.best_split == "valid":
        text += f", test accuracy there {_pct(state.test_at_best)}"
    return text
