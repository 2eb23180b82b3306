"""Training metrics: the per-epoch `metrics.jsonl`, learning-curve and confusion-matrix plots, accuracies.

All files are replaced atomically (`hm2bp.checkpoint.atomic_write_*`), so a killed run never leaves a torn file.
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

from hm2bp.checkpoint import atomic_write_bytes, atomic_write_text


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


def plot_learning_curve(records: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> None:
    """PNG with the train cost (left) and train / test accuracy in % (right) per epoch."""
    fig = Figure(figsize=(9, 3.6))
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in records]
    ax_loss.plot(epochs, [r["train_loss"] for r in records], "o-", color="tab:red", ms=3)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("train cost (dead-zone count loss, mean per sample)")
    ax_loss.grid(alpha=0.3)
    ax_acc.plot(epochs, [100 * r["train_accuracy"] for r in records], "o-", label="train", ms=3)
    test = [(r["epoch"], 100 * r["test_accuracy"]) for r in records if r.get("test_accuracy") is not None]
    if test:
        ax_acc.plot(*zip(*test, strict=True), "s-", label="test", ms=3)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    _save_figure(fig, path)


def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> None:
    """PNG of a confusion matrix, rows normalised to the fraction of each true class."""
    n = len(classes)
    fig = Figure(figsize=(1.2 + 0.45 * n, 1.0 + 0.45 * n))
    ax = fig.subplots()
    totals = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, totals, out=np.zeros(cm.shape), where=totals > 0)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), [str(c) for c in classes], rotation=90 if n > 12 else 0)
    ax.set_yticks(range(n), [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if frac[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title)
    _save_figure(fig, path)
