"""`hm2bp fit` / `hm2bp eval` through Typer's CliRunner on tiny synthetic stores."""

import json

import pytest
from typer.testing import CliRunner

from hm2bp.checkpoint import load_checkpoint
from hm2bp.cli import app as hm2bp_app
from hm2bp.metrics import read_metrics
from tests.hm2bp._synthetic import make_store

runner = CliRunner()

TINY = """
steps = 50
[meta]
inputs = 40
[[layers]]
name = "hidden"
size = 20
threshold = 5.0
[[layers]]
name = "output"
size = 4
threshold = 3.0
lateral_inhibition = 1.0
[loss]
desired = 10
undesired = 2
margin = 2
[train]
lr = 0.01
batch_size = 8
epochs = 3
"""


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return {
        "tiny": make_store(root / "tiny.zarr", n_train=160, n_test=80),
        "other": make_store(root / "other.zarr", n_train=40, n_test=80, seed=7),
        "wide": make_store(root / "wide.zarr", n_train=20, n_test=20, n_units=48),
        "empty": make_store(root / "empty.zarr", n_train=0, n_test=8, empty_train=True),
        "root": root,
    }


@pytest.fixture(scope="module")
def config(stores):
    path = stores["root"] / "tiny.toml"
    path.write_text(TINY)
    return path


def _one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error:"), result.output
    assert len(lines) == 1, result.output  # a single-line message, nothing before it
    for fragment in fragments:
        assert fragment in result.output, result.output


@pytest.fixture(scope="module")
def run_dir(stores, config):
    out = stores["root"] / "run"
    result = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(config), "--out", str(out),
                                       "--device", "cpu", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "final test accuracy" in result.output
    return out


def test_fit_writes_run_directory(run_dir):
    assert {p.name for p in run_dir.iterdir()} >= {"metrics.jsonl", "learning_curve.png", "last.pt", "best.pt",
                                                   "run.json"}
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert records[-1]["test_accuracy"] > 0.8  # 4 classes: chance is 0.25
    ckpt = load_checkpoint(run_dir / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["config"]["train"]["seed"] == 1
    assert json.loads((run_dir / "run.json").read_text())["store"]["train_split"] == "train"


def test_eval_prints_accuracy_and_confusion(run_dir, stores):
    plot = stores["root"] / "cm.png"
    result = runner.invoke(hm2bp_app, ["eval", str(stores["tiny"]), "--checkpoint", str(run_dir / "best.pt"),
                                       "--device", "cpu", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "test: accuracy" in result.output and "per-class accuracy: c0" in result.output
    assert "true \\ predicted" in result.output
    assert plot.stat().st_size > 0
    acc = float(result.output.split("accuracy ")[1].split(" %")[0])
    ckpt = load_checkpoint(run_dir / "best.pt")
    assert acc == pytest.approx(100 * ckpt["best"]["accuracy"], abs=0.01)
    # Another store with the same shape: evaluates, with a warning about the fingerprint.
    other = runner.invoke(hm2bp_app, ["eval", str(stores["other"]), "--checkpoint", str(run_dir / "last.pt"),
                                      "--device", "cpu", "--plot", str(plot)])
    assert other.exit_code == 0 and "warning:" in other.output and "fingerprints differ" in other.output


def test_eval_refuses_size_mismatch(run_dir, stores):
    result = runner.invoke(hm2bp_app, ["eval", str(stores["wide"]), "--checkpoint", str(run_dir / "last.pt")])
    _one_line_error(result, "store has 48 units", "expects 40")


def test_fit_errors_are_one_line(stores, config):
    root = stores["root"]
    bad = root / "bad.toml"
    bad.write_text(TINY.replace("threshold = 5.0", "treshold = 5.0"))
    result = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(bad), "--out", str(root / "b")])
    _one_line_error(result, "layers[0].treshold: unknown key")
    zero = root / "zero.toml"
    zero.write_text(TINY.replace("size = 20", "size = 0"))
    result = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(zero), "--out", str(root / "z")])
    _one_line_error(result, "layers[0].size")
    result = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--preset", "mnist-mlp", "--out", str(root / "c")])
    _one_line_error(result, "store has 40 units, preset 'mnist-mlp' expects 784")
    result = runner.invoke(hm2bp_app, ["fit", str(stores["wide"]), "--config", str(config), "--out", str(root / "d")])
    _one_line_error(result, "store has 48 units")
    result = runner.invoke(hm2bp_app, ["fit", str(stores["empty"]), "--config", str(config), "--out", str(root / "e")])
    _one_line_error(result, "split 'train' is empty")
    result = runner.invoke(hm2bp_app, ["fit", str(root / "missing.zarr"), "--config", str(config)])
    _one_line_error(result, "no such spike store")
    result = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--preset", "nope"])
    _one_line_error(result, "unknown preset 'nope'")
    for path in ("b", "z", "c", "d", "e"):
        assert not (root / path / "last.pt").exists()


def test_resume_continues_and_extends(run_dir, stores, config):
    result = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(config), "--out", str(run_dir),
                                       "--device", "cpu", "--seed", "1", "--resume", "--epochs", "4"])
    assert result.exit_code == 0, result.output
    assert "resuming at epoch 3" in result.output
    assert [r["epoch"] for r in read_metrics(run_dir / "metrics.jsonl")] == [0, 1, 2, 3]
    clash = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(config), "--out", str(run_dir),
                                      "--resume", "--lr", "0.5"])
    _one_line_error(clash, "config differs from the checkpoint's at train.lr")
    fewer = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(config), "--out", str(run_dir),
                                      "--seed", "1", "--resume", "--max-train", "20"])
    _one_line_error(fewer, "trained on 160 samples, this run uses 20")
    fresh = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(config), "--out", str(run_dir)])
    _one_line_error(fresh, "already holds a run")


def test_overwrite_replaces_a_run(stores, config):
    out = stores["root"] / "again"
    args = ["fit", str(stores["tiny"]), "--config", str(config), "--out", str(out), "--device", "cpu", "--quiet",
            "--max-train", "16", "--max-test", "8"]
    assert runner.invoke(hm2bp_app, [*args, "--epochs", "2"]).exit_code == 0
    result = runner.invoke(hm2bp_app, [*args, "--epochs", "1", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert [r["epoch"] for r in read_metrics(out / "metrics.jsonl")] == [0]
    assert load_checkpoint(out / "last.pt")["epoch"] == 0


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the run diverges on purpose
def test_fit_diverging_run_is_a_one_line_error(stores, config):
    out = stores["root"] / "diverge"
    result = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(config), "--out", str(out),
                                       "--device", "cpu", "--lr", "1e30", "--epochs", "2", "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("error: non-finite gradient in layer")
    assert json.loads((out / "run.json").read_text())["config"]["train"]["lr"] == 1e30  # readable run directory
