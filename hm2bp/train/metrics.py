"""Training metrics: the per-epoch `metrics.jsonl`, learning-curve and confusion-matrix plots, accuracies.

All files are replaced atomically (`hm2bp.train.checkpoint.atomic_write_*`), so a killed run never leaves a torn file.
Plots use matplotlib's object API (no pyplot state, no display needed).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hm2bp.train.checkpoint import atomic_write_bytes, atomic_write_text


def write_metrics(path: str | Path, records: Sequence[dict[str, Any]]) -> None:
    """Replace `path` with one JSON object per line (one per epoch)."""
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=False) + "\n" for r in records))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file (blank lines ignored)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """int64 [n_classes, n_classes]: row = true class, column = predicted class."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    flat = np.bincount(labels * n_classes + predictions, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """float64 [n_classes]: diagonal / row sum (NaN for a class without samples)."""
    totals = cm.sum(axis=1)
    return np.divide(np.diag(cm), totals, out=np.full(len(cm), np.nan), where=totals > 0)


def format_confusion(cm: np.ndarray, classes: Sequence[str]) -> str:
    """Text table of a confusion matrix (rows: true class, columns: predicted), with per-class accuracy."""
    names = [str(c) for c in classes]
    width = max(max(len(n) for n in names), len(str(int(cm.max()) if cm.size else 0)), 4)
    acc = per_class_accuracy(cm)
    head = " " * (width + 1) + " ".join(n.rjust(width) for n in names) + "   acc %"
    lines = ["true \\ predicted", head]
    for i, name in enumerate(names):
        row = " ".join(str(int(v)).rjust(width) for v in cm[i])
        a = "    -" if np.isnan(acc[i]) else f"{100 * acc[i]:6.2f}"
        lines.append(f"{name.rjust(width)} {row}  {a}")
    return "\n".join(lines)


def _save_figure(fig: Figure, path: str | Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))


def plot_learning_curve(records: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Figure:
    """PNG with the train cost (left) and the train / validation / test accuracy in % (right) per epoch (counted
    from 1), the epoch `best.pt` holds marked with the split it was chosen on. Returns the figure."""
    fig = Figure(figsize=(10, 3.8))
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [r["epoch"] + 1 for r in records]
    ax_loss.plot(epochs, [r["train_loss"] for r in records], "o-", color="tab:red", ms=3)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("train cost (spikes² per sample)")
    ax_loss.set_title("dead-zone squared count error, epoch mean", fontsize=9)
    ax_loss.grid(alpha=0.3)
    for key, name, style in (("train_accuracy", "train", "o-"), ("valid_accuracy", "validation", "^-"),
                             ("test_accuracy", "test", "s-")):
        points = [(r["epoch"] + 1, 100 * r[key]) for r in records if r.get(key) is not None]
        if points:
            ax_acc.plot(*zip(*points, strict=True), style, label=name, ms=3)
    last = records[-1] if records else {}
    if last.get("best_epoch", -1) >= 0:
        where = {"valid": "validation", "test": "test", "train": "train"}.get(last.get("best_split"), "test")
        ax_acc.axvline(last["best_epoch"] + 1, color="0.4", ls="--", lw=0.8,
                       label=f"best.pt: epoch {last['best_epoch'] + 1} (chosen on {where})")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(fontsize=8)
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save_figure(fig, path)
    return fig


#: Largest number of classes whose confusion-matrix cells carry their counts.
COUNTS_UP_TO = 30


def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> Figure:
    """PNG of a confusion matrix (rows: true class, columns: predicted), coloured by the fraction of each true
    class, with the sample count in every non-empty cell for up to `COUNTS_UP_TO` classes. Returns the figure."""
    n = len(classes)
    fig = Figure(figsize=(2.2 + 0.42 * n, 1.6 + 0.42 * n))
    ax = fig.subplots()
    totals = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, totals, out=np.zeros(cm.shape), where=totals > 0)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    long_names = n > 12 and max(len(str(c)) for c in classes) > 2
    ax.set_xticks(range(n), [str(c) for c in classes], rotation=90 if long_names else 0)
    ax.set_yticks(range(n), [str(c) for c in classes])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= COUNTS_UP_TO:
        size = 8 if n <= 12 else 7
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=size,
                            color="white" if frac[i, j] > 0.5 else "black")
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("fraction of the true class" + (" (cells: sample counts)" if n <= COUNTS_UP_TO else ""))
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save_figure(fig, path)
    return fig
