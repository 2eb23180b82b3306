"""Every CLI error is one markup-safe `error:` line: damaged stores and checkpoints, locked run directories,
impossible configs, truncated sources; `spikedata verify` and the integrity report of `spikedata inspect`."""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hm2bp.cli import app as hm2bp_app
from hm2bp.train.checkpoint import load_checkpoint, save_checkpoint
from spikedata.cli import app as spikedata_app
from tests.cli.test_hm2bp_cli import TINY
from tests.hm2bp.synthetic import make_store
from tests.messages import one_line_error

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel")
    store = make_store(root / "tiny.zarr", n_train=48, n_test=16)
    config = root / "tiny.toml"
    config.write_text(TINY.replace("epochs = 3", "epochs = 1"))
    run = root / "run"
    result = runner.invoke(hm2bp_app, ["fit", str(store), "--config", str(config), "--out", str(run), "--device",
                                       "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    return {"root": root, "store": store, "config": config, "run": run}


def fit(env, *more, store=None, out=None):
    return runner.invoke(hm2bp_app, ["fit", str(store or env["store"]), "--config", str(env["config"]), "--out",
                                     str(out or env["root"] / "new"), "--device", "cpu", "--quiet", *more])


def test_fit_on_a_damaged_store_fails_before_training(env, tmp_path):
    bad = tmp_path / "bad.zarr"
    shutil.copytree(env["store"], bad)
    (bad / "train" / "times" / "c" / "0").unlink()
    result = fit(env, store=bad, out=tmp_path / "run")
    # the set-up line, then the error at the first read of the chunk: before any batch was trained on (notes, such
    # as where "best" is chosen, may come between them)
    lines = [line for line in result.output.strip().splitlines() if not line.startswith("note:")]
    assert result.exit_code == 1 and len(lines) == 2 and lines[0].startswith("config "), result.output
    assert lines[1].startswith("error: ") and "split 'train', array 'times', chunk 0" in lines[1]
    assert "is missing" in lines[1] and "Traceback" not in result.output
    assert not (tmp_path / "run" / "last.pt").exists()
    (bad / "train" / "labels" / "c" / "0").unlink()
    one_line_error(fit(env, store=bad, out=tmp_path / "run"), "array 'labels', chunk 0")


def test_config_directory_and_impossible_layer(env, tmp_path):
    result = runner.invoke(hm2bp_app, ["fit", str(env["store"]), "--config", str(tmp_path), "--out",
                                       str(tmp_path / "r")])
    one_line_error(result, "is a directory")
    huge = tmp_path / "huge.toml"
    huge.write_text(TINY.replace("size = 20", "size = 100000000"))
    result = runner.invoke(hm2bp_app, ["fit", str(env["store"]), "--config", str(huge), "--out", str(tmp_path / "r")])
    one_line_error(result, "'hidden' with 100,000,000 neurons", "would need", "of memory to train")
    assert not (tmp_path / "r").exists()  # a failed set-up leaves no run directory behind


HOLD_LOCK = """
    import time
    from spikedata.locking import PathLock
    lock = PathLock({run!r}, {lock!r}, what="the run directory").acquire()
    print("holding", flush=True)
    time.sleep(120)
"""


def test_second_fit_into_a_busy_run_directory(env, tmp_path):
    run = tmp_path / "busy"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLD_LOCK.format(run=str(run),
                               lock=str(run / ".lock")))], env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        one_line_error(fit(env, out=run), f"the run directory is being written by process {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    result = fit(env, out=run)  # the dead holder's lock is taken over
    assert result.exit_code == 0, result.output
    assert not (run / ".lock").exists()


def damaged_checkpoint(env, tmp_path, change) -> Path:
    data = load_checkpoint(env["run"] / "last.pt")
    data = {k: v for k, v in data.items() if k not in ("format", "format_version")}
    change(data)
    path = tmp_path / "c.pt"
    save_checkpoint(path, data)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda d: d["weights"]["hidden"].__setitem__((0, 0), float("nan")), "non-finite values (NaN or inf) in "
                                                                          "weights.hidden"),
    (lambda d: d.pop("weights"), "lacks the key(s) weights"),
    (lambda d: d["weights"].update(hidden=torch.zeros(20, 41)), "layer 'hidden' have shape [20, 41], the network "
                                                                 "needs [20, 40]"),
    (lambda d: d.update(config={"steps": 50}), "its network config does not build (layers: expected a non-empty"),
])  # fmt: skip
def test_eval_of_a_bad_checkpoint(env, tmp_path, change, message):
    path = damaged_checkpoint(env, tmp_path, change)
    result = runner.invoke(hm2bp_app, ["eval", str(env["store"]), "--checkpoint", str(path), "--device", "cpu"])
    one_line_error(result, message)


def test_eval_of_a_flipped_checkpoint(env, tmp_path):
    data = bytearray((env["run"] / "last.pt").read_bytes())
    data[len(data) // 2] ^= 0x04
    path = tmp_path / "flipped.pt"
    path.write_bytes(bytes(data))
    result = runner.invoke(hm2bp_app, ["eval", str(env["store"]), "--checkpoint", str(path), "--device", "cpu"])
    one_line_error(result, str(path))


def test_resume_with_a_wrong_boost_length(env, tmp_path):
    run = tmp_path / "resume"
    shutil.copytree(env["run"], run)
    bad = damaged_checkpoint(env, tmp_path, lambda d: d.update(boost=torch.ones(7, dtype=torch.float64)))
    shutil.copy(bad, run / "last.pt")
    result = fit(env, "--resume", "--epochs", "2", out=run)
    one_line_error(result, "7 boost weights, the run has 48 training samples")


def test_verify_and_inspect_report_integrity(env, tmp_path):
    result = runner.invoke(spikedata_app, ["verify", str(env["store"]), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "split train: 48 samples" in result.output and result.output.strip().endswith("intact")
    result = runner.invoke(spikedata_app, ["inspect", str(env["store"])])
    assert result.exit_code == 0 and "integrity of split train: format version 2" in result.output
    assert "matched the chunk manifest" in result.output
    bad = tmp_path / "bad.zarr"
    shutil.copytree(env["store"], bad)
    chunk = bad / "test" / "units" / "c" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-3])
    one_line_error(runner.invoke(spikedata_app, ["verify", str(bad), "--quiet"]),
                    "split 'test', array 'units', chunk 0", "cannot be decoded")
    one_line_error(runner.invoke(spikedata_app, ["inspect", str(bad)]), "split 'test', array 'units', chunk 0")


def test_truncated_gz_source_and_bracketed_messages(shared_data, tmp_path):
    src = tmp_path / "mnist"
    src.mkdir()
    images = (shared_data / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes()
    (src / "t10k-images-idx3-ubyte.gz").write_bytes(images[: len(images) // 3])
    shutil.copy(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz", src)
    args = ["encode", "mnist", "--source", str(src), "--out", str(tmp_path / "m.zarr"), "--split", "test", "--quiet"]
    one_line_error(runner.invoke(spikedata_app, args), "t10k-images-idx3-ubyte.gz: truncated gzip stream")
    # int32 'images': the message keeps its brackets (no markup interpretation)
    values = np.zeros((10000, 28, 28), ">i4")
    (src / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(struct.pack(">HBBIII", 0, 0x0C, 3, 10000, 28, 28)
                                                                  + values.tobytes(), compresslevel=1))
    one_line_error(runner.invoke(spikedata_app, [*args, "--no-verify"]),
                    "expected uint8 images [n, H, W], got int32 [10000, 28, 28]")
