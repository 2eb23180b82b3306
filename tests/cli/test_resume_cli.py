"""Ctrl-C and `hm2bp fit --resume --out DIR` as a user runs them: a real `python -m hm2bp fit` gets SIGINT in its
first epoch and in a later one, prints how to resume, and `--resume --out DIR` alone (the store, the config and
every option taken from run.json) finishes it with the weights and metrics of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hm2bp.train.checkpoint import load_checkpoint
from hm2bp.train.metrics import read_metrics
from tests.hm2bp.synthetic import make_store, tiny_network_toml

REPO = Path(__file__).resolve().parents[2]
CONFIG = tiny_network_toml(hidden=24, batch_size=2, epochs=9)
#: Every option that shapes the run differs from its default, so that a resume that forgot one would differ.
OPTIONS = ("--epochs", "3", "--seed", "3", "--batch-size", "1", "--max-train", "240", "--val-fraction", "0.25",
           "--device", "cpu", "--backend", "numba", "--quiet")


def _start(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "hm2bp", "fit", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _interrupt_after(proc: subprocess.Popen, marker: str) -> tuple[str, str]:
    """SIGINT to `proc` as soon as a line of its stdout starts with `marker`; (stdout, stderr) once it ended."""
    seen = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(marker):
            proc.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline
    out, err = proc.communicate(timeout=60)
    return "".join(seen) + out, err


def _strip(records: list[dict]) -> list[dict]:
    timing = ("seconds", "samples_per_s", "test_seconds", "valid_seconds")
    return [{k: v for k, v in r.items() if k not in timing} for r in records]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    make_store(root / "s.zarr", n_train=600, n_test=60)
    (root / "tiny.toml").write_text(CONFIG)
    common = ("s.zarr", "--config", "tiny.toml", *OPTIONS)
    full = _start(*common, "--out", "full", cwd=root)
    early = _start(*common, "--out", "early", cwd=root)
    late = _start(*common, "--out", "late", cwd=root)
    interrupted = {"early": _interrupt_after(early, "config "),  # the header: training is about to start
                   "late": _interrupt_after(late, "epoch   1/3")}  # epoch 1 done: SIGINT lands in epoch 2
    out, err = full.communicate(timeout=120)
    assert full.returncode == 0, err
    return root, interrupted, {"early": early.returncode, "late": late.returncode}


def test_ctrl_c_says_how_to_resume_and_exits_130(runs):
    root, interrupted, codes = runs
    assert codes == {"early": 130, "late": 130}
    for name, (_, err) in interrupted.items():
        lines = [line for line in err.splitlines() if line.startswith("interrupted")]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert f"resume with `hm2bp fit --resume --out {name}`" in lines[0]
    early, late = interrupted["early"][1], interrupted["late"][1]
    assert "interrupted in epoch 1/3" in early and "no epoch had finished, so it starts again from epoch 1" in early
    assert not (root / "early" / "last.pt").exists()  # the hint does not point to a checkpoint that is not there
    done = load_checkpoint(root / "late" / "last.pt")["epoch"] + 1
    assert f"interrupted in epoch {done + 1}/3" in late and f"it continues after epoch {done} (last.pt)" in late


def test_resume_with_the_run_directory_alone_equals_an_uninterrupted_run(runs):
    root, _, _ = runs
    resumed = {name: _start("--resume", "--out", name, "--quiet", cwd=root) for name in ("early", "late")}
    a = load_checkpoint(root / "full" / "last.pt")
    for name, proc in resumed.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        header = out.splitlines()[0]
        assert header.startswith("config tiny.toml: 40 -> 24 -> 4") and "180 train samples" in header
        assert "device cpu (numba kernels)" in header and "resuming at epoch" in header and header.endswith("/3")
        assert "best validation accuracy" in out  # the held-out validation split was restored
        b = load_checkpoint(root / name / "last.pt")
        assert a["epoch"] == b["epoch"] == 2  # --epochs 3 as recorded, not the config file's 9
        for layer in a["weights"]:
            assert torch.equal(a["weights"][layer], b["weights"][layer])
        assert torch.equal(a["boost"], b["boost"])
        assert _strip(read_metrics(root / "full" / "metrics.jsonl")) == \
            _strip(read_metrics(root / name / "metrics.jsonl"))
        info = json.loads((root / name / "run.json").read_text())
        assert info["options"]["val_fraction"] == 0.25 and info["options"]["max_train"] == 240
        assert info["resumed"][-1]["command"] == f"hm2bp fit --resume --out {name} --quiet"
