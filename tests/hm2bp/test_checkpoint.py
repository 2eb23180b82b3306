"""Checkpoint files (atomic, validated) and metric helpers."""

import hashlib
import json
import os

import numpy as np
import pytest
import torch

from hm2bp.train.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    atomic_write_bytes,
    check_against_network,
    load_checkpoint,
    save_checkpoint,
)
from hm2bp.train.metrics import confusion_matrix, format_confusion, per_class_accuracy, read_metrics, write_metrics


def payload(epoch=3, n_train=4):
    """A complete checkpoint payload of a 3-input, 2-output dense network trained with Adam."""
    w = torch.arange(6.0).reshape(2, 3)
    return {
        "epoch": epoch, "weights": {"output": w}, "config": {"steps": 10, "layers": [
            {"name": "output", "size": 2, "threshold": 1.0}]},
        "n_inputs": 3, "input_shape": [3], "classes": ["a", "b"],
        "optimizer": {"kind": "adam", "steps": 5, "m": {"output": torch.zeros(2, 3)},
                      "v": {"output": torch.zeros(2, 3)}, "beta1_power": {"output": 0.5},
                      "beta2_power": {"output": 0.9}},
        "boost": torch.ones(n_train, dtype=torch.float64), "rng": {"torch": torch.get_rng_state(), "seed": 0},
        "store": {"path": "s.zarr", "fingerprint": "f" * 64, "n_train": n_train}, "history": [{"epoch": 0}],
        "best": {"epoch": 0, "accuracy": 0.5},
    }  # fmt: skip


def test_round_trip(tmp_path):
    data = payload()
    save_checkpoint(tmp_path / "last.pt", data)
    back = load_checkpoint(tmp_path / "last.pt")
    assert back["epoch"] == 3 and back["history"] == [{"epoch": 0}]
    assert back["format_version"] == FORMAT_VERSION == 2
    assert torch.equal(back["weights"]["output"], data["weights"]["output"])
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]
    # the outer file is plain torch: its payload and the payload's sha256
    outer = torch.load(tmp_path / "last.pt", weights_only=True)
    assert hashlib.sha256(outer["payload"].numpy().tobytes()).hexdigest() == outer["payload_sha256"]


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, payload(epoch=1))

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
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an hm2bp checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save({"format": "hm2bp.checkpoint", "format_version": 1, **payload()}, tmp_path / "v1.pt")
    with pytest.raises(CheckpointError, match="format version 1.*no checksum"):
        load_checkpoint(tmp_path / "v1.pt")
    save_checkpoint(tmp_path / "ok.pt", payload())
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "torn.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "torn.pt")


def test_flipped_bytes_fail_the_checksum(tmp_path):
    """torch does not check its zip CRCs: a flipped byte inside the weights loads as a different value. The payload
    checksum catches every such flip."""
    save_checkpoint(tmp_path / "ok.pt", payload())
    data = (tmp_path / "ok.pt").read_bytes()
    body = torch.load(tmp_path / "ok.pt", weights_only=True)["payload"].numpy().tobytes()
    start = data.index(body)  # stored verbatim
    rng = np.random.default_rng(0)
    for pos in rng.integers(start, start + len(body), 20):
        bad = bytearray(data)
        bad[int(pos)] ^= 1 << int(rng.integers(8))
        (tmp_path / "bad.pt").write_bytes(bytes(bad))
        with pytest.raises(CheckpointError, match="checksum mismatch|not a readable"):
            load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("weights"), "lacks the key.*weights"),
    (lambda d: d.pop("optimizer"), "lacks the key.*optimizer"),
    (lambda d: d.update(epoch="3"), "'epoch' is a str, expected int"),
    (lambda d: d["weights"]["output"].__setitem__((0, 1), float("nan")), r"non-finite.*weights\.output"),
    (lambda d: d["optimizer"]["v"]["output"].__setitem__((1, 1), float("inf")), r"non-finite.*optimizer\.v\.output"),
    (lambda d: d["boost"].__setitem__(0, float("nan")), "non-finite.*boost"),
    (lambda d: d.update(boost=torch.ones(2, 2, dtype=torch.float64)), "boost must be a 1-d"),
    (lambda d: d["weights"].update(output=torch.ones(2, 3, dtype=torch.int64)), "not a floating-point"),
])  # fmt: skip
def test_payload_problems_are_named(tmp_path, change, message):
    data = payload()
    change(data)
    save_checkpoint(tmp_path / "c.pt", data)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(tmp_path / "c.pt")
    assert str(tmp_path / "c.pt") in str(err.value)


def test_check_against_network(tmp_path):
    data = payload(n_train=4)
    check_against_network(data, "c.pt", {"output": torch.zeros(2, 3)}, n_train=4)
    with pytest.raises(CheckpointError, match=r"layer 'output' have shape \[2, 3\], the network needs \[2, 4\]"):
        check_against_network(data, "c.pt", {"output": torch.zeros(2, 4)})
    with pytest.raises(CheckpointError, match=r"layers \['output'\] in the checkpoint, the network has \['hidden'"):
        check_against_network(data, "c.pt", {"hidden": torch.zeros(2, 3), "output": torch.zeros(2, 3)})
    with pytest.raises(CheckpointError, match="4 boost weights, the run has 5 training samples"):
        check_against_network(data, "c.pt", {"output": torch.zeros(2, 3)}, n_train=5)


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
