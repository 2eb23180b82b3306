"""`hm2bp` as a new user meets it, mistakes included: the triton kernel set on a machine without a GPU, a file://
store, a checkpoint evaluated on the split it was trained on, a file that is not a checkpoint, and a store with
more classes than the preset has output neurons."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hm2bp.cli import app as hm2bp_app
from hm2bp.presets import preset_path
from tests.hm2bp.synthetic import make_store, tiny_network_toml
from tests.messages import one_line_error

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
TINY = tiny_network_toml(hidden=16, epochs=1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("first-use")
    (root / "tiny.toml").write_text(TINY)
    return {"root": root, "store": make_store(root / "s.zarr", n_train=48, n_test=24), "config": root / "tiny.toml"}


def fit(*args) -> object:
    return runner.invoke(hm2bp_app, ["fit", *map(str, args), "--device", "cpu", "--quiet"])


def words(result) -> str:
    return " ".join(result.output.split())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_triton_without_a_gpu_is_refused_unless_the_interpreter_is_asked_for(setup):
    """Outside the tests (which set TRITON_INTERPRET=1), `--backend triton` on a CPU says why and what to use."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(REPO)
    run_dir = setup["root"] / "triton-run"
    for command in (["fit", str(setup["store"]), "--config", str(setup["config"]), "--out", str(run_dir)],
                    ["eval", str(setup["store"]), "--checkpoint", str(setup["root"] / "none.pt")]):
        r = subprocess.run([sys.executable, "-m", "hm2bp", *command, "--backend", "triton"], env=env,
                           capture_output=True, text=True, timeout=120)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("note:")]
        assert r.returncode == 1 and len(lines) == 1, r.stderr
        assert lines[0].startswith("error: --backend triton runs on a GPU, and the network is on cpu: use --backend "
                                   "numba (or auto) on a CPU") and "set TRITON_INTERPRET=1" in lines[0], lines[0]
    assert not run_dir.exists()
    # asked for explicitly (as in this test process): the interpreter runs it
    assert os.environ.get("TRITON_INTERPRET") == "1"
    r = fit(setup["store"], "--config", setup["config"], "--out", setup["root"] / "interpreted", "--backend",
            "triton", "--max-train", "8", "--max-test", "8", "--batch-size", "4")
    assert r.exit_code == 0 and "(triton kernels)" in words(r), r.output


def test_fit_and_eval_take_file_urls(setup):
    url = "file://" + str(setup["store"])
    out = setup["root"] / "url-run"
    r = fit(url, "--config", setup["config"], "--out", out)
    assert r.exit_code == 0, r.output
    assert json.loads((out / "run.json").read_text())["options"]["store"] == str(setup["store"])
    r = runner.invoke(hm2bp_app, ["eval", url, "--checkpoint", str(out / "last.pt"), "--device", "cpu",
                                  "--plot", str(setup["root"] / "cm.png")])
    assert r.exit_code == 0 and "test: accuracy" in r.output and "fingerprints differ" not in r.output, r.output


def test_eval_warns_when_the_split_was_trained_or_selected_on(setup):
    out = setup["root"] / "on-test"
    assert fit(setup["store"], "--config", setup["config"], "--out", out, "--train-split", "test",
               "--test-split", "none").exit_code == 0
    r = runner.invoke(hm2bp_app, ["eval", str(setup["store"]), "--checkpoint", str(out / "best.pt"), "--device",
                                  "cpu", "--plot", str(setup["root"] / "cm2.png")])
    assert r.exit_code == 0, r.output
    assert f"warning: split 'test' is the split {out / 'best.pt'} was trained on: its accuracy is a training " \
           "accuracy, not a test figure" in words(r)
    r = runner.invoke(hm2bp_app, ["eval", str(setup["store"]), "--checkpoint", str(out / "best.pt"), "--device",
                                  "cpu", "--split", "train", "--plot", str(setup["root"] / "cm3.png")])
    assert r.exit_code == 0 and "warning" not in r.output, r.output  # never seen by that run


def test_a_file_that_is_not_a_checkpoint_is_one_line(setup):
    root = setup["root"]
    (root / "notes.pt").write_text("not a checkpoint\n")
    (root / "pickled.pt").write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))
    for name in ("notes.pt", "pickled.pt"):
        r = runner.invoke(hm2bp_app, ["eval", str(setup["store"]), "--checkpoint", str(root / name)])
        one_line_error(r, f"{root / name}: not a checkpoint written by `hm2bp fit` (best.pt, last.pt): torch cannot "
                          "read it (")
        assert "weights_only" not in r.output and "Please" not in r.output and "issue" not in r.output


def test_more_classes_than_output_neurons_says_how_to_adapt_the_config(setup):
    store = make_store(setup["root"] / "eleven.zarr", n_train=11, n_test=11, n_units=784, n_steps=400, n_classes=11)
    r = fit(store, "--preset", "mnist-mlp", "--out", setup["root"] / "eleven")
    one_line_error(r, "store has 11 classes, preset 'mnist-mlp' has 10 output neurons: to train on this store, write "
                      "a config with `size = 11` in its output layer 'output' (e.g. a copy of "
                      f"{preset_path('mnist-mlp')}) and pass it with --config FILE")
