"""`hm2bp eval STORE --checkpoint FILE`: accuracy, per-class accuracy and confusion matrix of a trained network."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from hm2bp.cli.app import app as hm2bp_app
from hm2bp.cli.device import BACKEND, DEVICE, check_backend, check_device
from spikedata.cli.common import error_text, fail, warn
from spikedata.errors import PicklableError


@hm2bp_app.command("eval")
def evaluate_cmd(
    store: str = typer.Argument(..., help="Spike store to evaluate on: a directory or an fsspec URL (https://...)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Checkpoint written by `hm2bp fit` (best.pt, last.pt)."),
    split: str = typer.Option("test", "--split", help="Split to evaluate."),
    batch_size: int = typer.Option(128, "--batch-size", min=1, help="Samples per forward pass."),
    device: str = DEVICE,
    backend: str = BACKEND,
    max_n: int | None = typer.Option(None, "--max-n", min=1, help="Evaluate only the first N samples."),
    plot: Path | None = typer.Option(None, "--plot", help="Confusion-matrix PNG (default: beside the checkpoint)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write accuracy and confusion matrix as JSON."),
) -> None:
    """Evaluate a checkpoint: prints accuracy, per-class accuracy and the confusion matrix (text and PNG)."""
    from hm2bp.train.evaluate import evaluate
    from hm2bp.train.metrics import format_confusion, per_class_accuracy, plot_confusion
    from hm2bp.train.run import start_eval

    device = check_device(device)
    backend = check_backend(backend)
    try:
        run = start_eval(store, checkpoint, split, device, backend)
        ckpt, data = run.checkpoint, run.split
        if not run.same_store:
            warn(f"{store} is not the store {checkpoint} was trained on ({ckpt['store'].get('path')}; "
                 "fingerprints differ)")
        res = evaluate(run.network, data, batch_size, run.device, max_n)
    except (PicklableError, ValueError, KeyError, OSError) as exc:
        fail(error_text(exc))
    classes = data.classes
    cm = res.confusion(len(classes))
    acc = per_class_accuracy(cm)
    n = len(res.labels)
    print(f"{split}: accuracy {100 * res.accuracy:.2f} % ({int((res.labels == res.predictions).sum())}/{n}), "
          f"checkpoint epoch {ckpt['epoch'] + 1}, {n / max(res.seconds, 1e-9):.1f} samples/s")
    print("per-class accuracy: " + ", ".join(f"{c} {100 * a:.1f} %" for c, a in zip(classes, acc, strict=True)
                                             if a == a))
    print(format_confusion(cm, classes))
    plot = plot or checkpoint.with_name(f"{checkpoint.stem}_{split}_confusion.png")
    try:
        name = str(store).rstrip("/").rsplit("/", 1)[-1]
        plot_confusion(cm, classes, plot, title=f"{name}, split {split} ({n} samples): accuracy "
                       f"{100 * res.accuracy:.2f} %\n{checkpoint.name}, epoch {ckpt['epoch'] + 1} of "
                       f"{ckpt['config']['train']['epochs']}")
        print(f"confusion matrix plot: {plot}")
    except OSError as exc:
        warn(f"could not write {plot}: {exc}")
    if json_out is not None:
        json_out.write_text(json.dumps({"split": split, "accuracy": res.accuracy, "n": n,
                                        "per_class_accuracy": [None if a != a else float(a) for a in acc],
                                        "confusion": cm.tolist(), "classes": list(classes)}, indent=1))

