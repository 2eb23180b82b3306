"""Learning-curve and confusion-matrix figures: titles, labelled axes and colorbar, counts in the cells."""

import numpy as np

from hm2bp.train.metrics import COUNTS_UP_TO, confusion_matrix, plot_confusion, plot_learning_curve


def _record(epoch, valid, test, best_epoch):
    return {"epoch": epoch, "lr": 1e-3, "train_loss": 50.0 / (epoch + 1), "train_accuracy": 0.5 + 0.1 * epoch,
            "valid_accuracy": valid, "test_accuracy": test, "best_epoch": best_epoch, "best_split": "valid"}


def test_learning_curve_shows_every_split_and_the_selected_epoch(tmp_path):
    records = [_record(0, 0.6, 0.58, 0), _record(1, 0.7, 0.69, 1), _record(2, 0.68, 0.71, 1)]
    fig = plot_learning_curve(records, tmp_path / "c.png", title="preset 'demo', store m5k.zarr")
    assert fig._suptitle.get_text() == "preset 'demo', store m5k.zarr"
    loss, acc = fig.axes
    assert loss.get_ylabel() == "train cost (spikes² per sample)"  # units, no section numbers
    labels = [line.get_label() for line in acc.get_lines()]
    assert labels == ["train", "validation", "test", "best.pt: epoch 2 (chosen on validation)"]
    assert list(acc.get_lines()[1].get_xdata()) == [1, 2, 3]  # epochs counted from 1
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_confusion_colorbar_and_counts(tmp_path):
    rng = np.random.default_rng(0)
    for n in (COUNTS_UP_TO, COUNTS_UP_TO + 1):
        labels = rng.integers(0, n, 400)
        cm = confusion_matrix(labels, np.where(rng.random(400) < 0.7, labels, rng.integers(0, n, 400)), n)
        fig = plot_confusion(cm, [f"c{k}" for k in range(n)], tmp_path / f"cm{n}.png", title="test: 70 %")
        ax, bar = fig.axes
        counts = sorted(int(t.get_text()) for t in ax.texts)
        assert bar.get_ylabel().startswith("fraction of the true class")
        assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
        if n <= COUNTS_UP_TO:
            assert counts == sorted(int(v) for v in cm[cm > 0])
        else:
            assert counts == []
