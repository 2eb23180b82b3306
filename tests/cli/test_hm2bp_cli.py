"""`hm2bp fit` / `hm2bp eval` through Typer's CliRunner on tiny synthetic stores."""

import json

import pytest
from typer.testing import CliRunner

from hm2bp.cli import app as hm2bp_app
from hm2bp.train.checkpoint import load_checkpoint
from hm2bp.train.metrics import read_metrics
from tests.hm2bp.synthetic import make_store, tiny_network_toml
from tests.messages import one_line_error

runner = CliRunner()

TINY = tiny_network_toml(inputs=40)


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


@pytest.fixture(scope="module")
def run_dir(stores, config):
    out = stores["root"] / "run"
    result = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(config), "--out", str(out),
                                       "--device", "cpu", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "final epoch 3/3: train" in result.output and "best test accuracy" in result.output
    # no validation split: the run says plainly that "best" is chosen on test
    assert 'no validation split: "best" (best.pt) is chosen on the test split, as the paper did' in result.output
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
    line = next(ln for ln in result.output.splitlines() if ln.startswith("test: accuracy"))
    acc = float(line.split("accuracy ")[1].split(" %")[0])
    ckpt = load_checkpoint(run_dir / "best.pt")
    assert acc == pytest.approx(100 * ckpt["best"]["accuracy"], abs=0.01)
    # best.pt was chosen on this very split (no validation split): the figure is optimistic, and eval says so
    assert "warning:" in result.output and "was chosen as the best epoch on split 'test'" in \
        " ".join(result.output.split())
    # Another store with the same shape: evaluates, with a warning about the fingerprint.
    other = runner.invoke(hm2bp_app, ["eval", str(stores["other"]), "--checkpoint", str(run_dir / "last.pt"),
                                      "--device", "cpu", "--plot", str(plot)])
    assert other.exit_code == 0 and "warning:" in other.output and "fingerprints differ" in other.output


def test_eval_refuses_size_mismatch(run_dir, stores):
    result = runner.invoke(hm2bp_app, ["eval", str(stores["wide"]), "--checkpoint", str(run_dir / "last.pt")])
    one_line_error(result, "store has 48 units", "expects 40")


def test_fit_errors_are_one_line(stores, config):
    root = stores["root"]
    bad = root / "bad.toml"
    bad.write_text(TINY.replace("threshold = 5.0", "treshold = 5.0"))
    result = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(bad), "--out", str(root / "b")])
    one_line_error(result, "layers[0].treshold: unknown key")
    zero = root / "zero.toml"
    zero.write_text(TINY.replace("size = 20", "size = 0"))
    result = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(zero), "--out", str(root / "z")])
    one_line_error(result, "layers[0].size")
    result = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--preset", "mnist-mlp", "--out", str(root / "c")])
    one_line_error(result, "store has 40 units, preset 'mnist-mlp' expects 784")
    result = runner.invoke(hm2bp_app, ["fit", str(stores["wide"]), "--config", str(config), "--out", str(root / "d")])
    one_line_error(result, "store has 48 units")
    result = runner.invoke(hm2bp_app, ["fit", str(stores["empty"]), "--config", str(config), "--out", str(root / "e")])
    one_line_error(result, "split 'train' is empty")
    result = runner.invoke(hm2bp_app, ["fit", str(root / "missing.zarr"), "--config", str(config)])
    one_line_error(result, "no such spike store")
    result = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--preset", "nope"])
    one_line_error(result, "unknown preset 'nope'")
    for path in ("b", "z", "c", "d", "e"):
        assert not (root / path / "last.pt").exists()


def test_resume_continues_and_extends(run_dir, stores, config):
    result = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(config), "--out", str(run_dir),
                                       "--device", "cpu", "--seed", "1", "--resume", "--epochs", "4"])
    assert result.exit_code == 0, result.output
    assert "resuming at epoch 4/4" in result.output
    assert [r["epoch"] for r in read_metrics(run_dir / "metrics.jsonl")] == [0, 1, 2, 3]
    clash = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(config), "--out", str(run_dir),
                                      "--resume", "--lr", "0.5"])
    one_line_error(clash, "--resume: the config differs from the run's at train.lr, train.seed",
                   "only --epochs may change")
    fewer = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(config), "--out", str(run_dir),
                                      "--seed", "1", "--resume", "--max-train", "20"])
    one_line_error(fewer, "--resume: the run in", "was started with --max-train None, not 20",
                   "start a new run with another --out")  # library parameters are named as the CLI's flags
    moved = runner.invoke(hm2bp_app, ["fit", str(stores["other"]), "--out", str(run_dir), "--resume"])
    one_line_error(moved, "other.zarr is not the store the run was trained on", "fingerprints differ")
    done = runner.invoke(hm2bp_app, ["fit", "--resume", "--out", str(run_dir), "--epochs", "2"])
    assert done.exit_code == 0 and "resuming at" not in done.output, done.output
    assert f"nothing to do: the run in {run_dir} has done 4 epochs, more than the 2 asked for" in \
        " ".join(done.output.split())
    fresh = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(config), "--out", str(run_dir)])
    one_line_error(fresh, "already holds a run", "pass --resume to continue it, --overwrite to replace it",
                    "another --out")
    held = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(config), "--out", str(run_dir),
                                     "--seed", "1", "--resume", "--val-fraction", "0.25", "--epochs", "5"])
    one_line_error(held, "was started with --val-fraction None, not 0.25")
    nothing = runner.invoke(hm2bp_app, ["fit", "--resume", "--out", str(stores["root"] / "no-run")])
    one_line_error(nothing, "no-run holds no run to resume (no run.json)")
    alone = runner.invoke(hm2bp_app, ["fit", "--resume"])
    assert alone.exit_code == 2 and "--resume needs --out DIR" in alone.output


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
def test_fit_diverging_run_is_aone_line_error(stores, config):
    out = stores["root"] / "diverge"
    result = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(config), "--out", str(out),
                                       "--device", "cpu", "--lr", "1e30", "--epochs", "2", "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("error: non-finite gradient in layer")
    assert json.loads((out / "run.json").read_text())["config"]["train"]["lr"] == 1e30  # readable run directory


def test_fit_selects_best_on_a_held_out_validation_split(stores, config):
    out = stores["root"] / "val"
    result = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(config), "--out", str(out),
                                       "--device", "cpu", "--val-fraction", "0.25", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "validation split 'valid' (40 samples)" in result.output  # 25 % of 160, stratified: 10 per class
    assert "120 train samples" in result.output
    assert "best validation accuracy" in result.output and "test accuracy there" in result.output
    records = read_metrics(out / "metrics.jsonl")
    valid = [r["valid_accuracy"] for r in records]
    best = max(range(len(valid)), key=lambda k: (valid[k], -k))  # first epoch of the best validation accuracy
    assert all(r["best_split"] == "valid" for r in records)
    assert records[-1]["best_epoch"] == best and records[-1]["test_at_best"] == records[best]["test_accuracy"]
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt["epoch"] == best and ckpt["best"]["split"] == "valid"
    assert ckpt["store"]["validation"] == {"split": "train (held out)", "fraction": 0.25, "seed": 0, "n": 40}
    bad = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(config), "--out", str(out / "x"),
                                    "--val-fraction", "1.5"])
    one_line_error(bad, "--val-fraction must lie in (0, 1)")


def test_fit_uses_the_stores_own_validation_split(tmp_path, config):
    store = make_store(tmp_path / "v.zarr", n_train=80, n_test=40, n_valid=24)
    out = tmp_path / "run"
    result = runner.invoke(hm2bp_app, ["fit", str(store), "--config", str(config), "--out", str(out), "--device",
                                       "cpu", "--epochs", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "validation split 'valid' (24 samples)" in result.output and "80 train samples" in result.output
    assert all(r["valid_accuracy"] is not None for r in read_metrics(out / "metrics.jsonl"))
    both = runner.invoke(hm2bp_app, ["fit", str(store), "--config", str(config), "--out", str(tmp_path / "b"),
                                     "--val-fraction", "0.1"])
    one_line_error(both, "has its own validation split 'valid'; give either --val-fraction or a validation split")
    none = runner.invoke(hm2bp_app, ["fit", str(store), "--config", str(config), "--out", str(tmp_path / "n"),
                                     "--device", "cpu", "--epochs", "1", "--quiet", "--valid-split", "none"])
    assert none.exit_code == 0 and "chosen on the test split" in none.output


def test_eval_reads_a_store_over_http(run_dir, stores):
    """`hm2bp eval URL`: the store argument is a string, so an fsspec URL reaches open_store unchanged."""
    from tests.http_server import serve_directory

    with serve_directory(stores["tiny"].parent) as base:
        result = runner.invoke(hm2bp_app, ["eval", f"{base}/{stores['tiny'].name}", "--checkpoint",
                                           str(run_dir / "best.pt"), "--device", "cpu",
                                           "--plot", str(stores["root"] / "url_cm.png")])
    assert result.exit_code == 0, result.output
    assert "test: accuracy" in result.output and "fingerprints differ" not in result.output  # same fingerprint


def test_device_option_is_validated(stores, config):
    import torch

    bad = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(config), "--device", "gpu"])
    assert bad.exit_code == 2 and "--device must be auto, cpu, cuda or cuda:K" in bad.output
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = runner.invoke(hm2bp_app, ["eval", str(stores["tiny"]), "--checkpoint", "x.pt", "--device",
                                        f"cuda:{n}"])
    expected = "CUDA is not available" if n == 0 else f"has {n} CUDA device(s)"
    one_line_error(missing, f"--device cuda:{n}", expected)


def test_progress_bar_counts_epochs_from_one_and_fits_80_columns():
    import io

    from rich.console import Console

    from hm2bp.cli import fit as fit_cli

    old = fit_cli.console
    fit_cli.console = Console(file=io.StringIO(), width=80)
    bar = fit_cli.RichProgress(show=True)
    try:
        bar.epoch_start(9, 200, 60000, 1e-3)  # epoch index 9 of 200 epochs
        bar.batch_end(32, 2000.0, 30)
        bar.evaluating("valid", 6000)
        table = bar.bar.make_tasks_table(bar.bar.tasks)
    finally:
        bar.bar.stop()
        fit_cli.console = old
    screen = Console(width=80, record=True, file=io.StringIO())
    screen.print(table)
    lines = [line for line in screen.export_text().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("epoch 10/200 valid"), lines
    assert "32/60000" in lines[0] and "acc  93.8%" in lines[0]
    assert len(lines[0].rstrip()) <= 80


def test_backend_option(run_dir, stores, config):
    """`--backend` picks the kernel set; every backend evaluates a checkpoint to the same accuracy; a pairing the
    device cannot run is one error line."""
    accs = set()
    for backend in ("numba", "torch"):
        result = runner.invoke(hm2bp_app, ["eval", str(stores["tiny"]), "--checkpoint", str(run_dir / "best.pt"),
                                           "--device", "cpu", "--backend", backend, "--plot",
                                           str(stores["root"] / f"cm-{backend}.png")])
        assert result.exit_code == 0, result.output
        accs.add(result.output.split("accuracy ")[1].split(" %")[0])
    assert len(accs) == 1
    out = stores["root"] / "run-torch"
    result = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(config), "--out", str(out),
                                       "--device", "cpu", "--backend", "torch", "--epochs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "(torch kernels)" in result.output
    assert json.loads((out / "run.json").read_text())["backend"] == "torch"
    bad = runner.invoke(hm2bp_app, ["fit", str(stores["tiny"]), "--config", str(config), "--backend", "cupy"])
    assert bad.exit_code != 0 and "--backend must be one of" in bad.output
