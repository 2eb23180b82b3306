"""Checkpoint files (atomic, validated) and metric helpers."""

import json
import os

import numpy as np
import pytest
import torch

from hm2bp.checkpoint import CheckpointError, atomic_write_bytes, load_checkpoint, save_checkpoint
from hm2bp.metrics import confusion_matrix, format_confusion, per_class_accuracy, read_metrics, write_metrics


def test_round_trip(tmp_path):
    payload = {"epoch": 3, "weights": {"output": torch.arange(6.0).reshape(2, 3)}, "history": [{"epoch": 0}],
               "boost": torch.ones(4, dtype=torch.float64), "rng": {"torch": torch.get_rng_state()}}
    save_checkpoint(tmp_path / "last.pt", payload)
    back = load_checkpoint(tmp_path / "last.pt")
    assert back["epoch"] == 3 and back["history"] == [{"epoch": 0}]
    assert torch.equal(back["weights"]["output"], payload["weights"]["output"])
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1})

    def crash(f):
        f.write(b"partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write_bytes(path, crash)
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]  # no temp file left


def test_unreadable_or_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an hm2bp checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    save_checkpoint(tmp_path / "ok.pt", {"epoch": 0})
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "torn.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "torn.pt")


def test_confusion_and_per_class_accuracy():
    labels = np.array([0, 0, 1, 1, 1, 2])
    preds = np.array([0, 1, 1, 1, 0, 2])
    cm = confusion_matrix(labels, preds, 4)
    np.testing.assert_array_equal(cm, [[1, 1, 0, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    acc = per_class_accuracy(cm)
    np.testing.assert_allclose(acc[:3], [0.5, 2 / 3, 1.0])
    assert np.isnan(acc[3])
    text = format_confusion(cm, ["a", "b", "c", "d"])
    assert "66.67" in text and "100.00" in text


def test_metrics_jsonl(tmp_path):
    records = [{"epoch": 0, "train_loss": 1.5, "test_accuracy": None}, {"epoch": 1, "train_loss": 0.5}]
    write_metrics(tmp_path / "m.jsonl", records)
    assert read_metrics(tmp_path / "m.jsonl") == records
    assert json.loads((tmp_path / "m.jsonl").read_text().splitlines()[1])["epoch"] == 1
