"""A store through the public `hm2bp` command line, as a user would: `hm2bp fit --preset` for one short epoch, then
`hm2bp eval` of the checkpoint it wrote (the end-to-end tests of the datasets share it)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hm2bp.cli import app as hm2bp_app


def fit_and_eval(store: Path, preset: str, out: Path, *more: str) -> dict:
    """`hm2bp fit STORE --preset PRESET --epochs 1 --batch-size 2` into `out`, then `hm2bp eval` of its last.pt;
    asserts both succeed and returns the epoch's metrics."""
    runner = CliRunner()
    r = runner.invoke(hm2bp_app, ["fit", str(store), "--preset", preset, "--epochs", "1", "--batch-size", "2",
                                  "--out", str(out), "--device", "cpu", "--quiet", *more])  # fmt: skip
    assert r.exit_code == 0, r.output
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and 0.0 <= metrics[0]["test_accuracy"] <= 1.0
    r = runner.invoke(hm2bp_app, ["eval", str(store), "--checkpoint", str(out / "last.pt"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "accuracy" in r.output.lower()
    return metrics[0]
