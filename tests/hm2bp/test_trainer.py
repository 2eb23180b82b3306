"""Trainer: SGD/Adam steps against a hand-computed loop over Network.gradients, boost wiring, learning, resume."""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hm2bp import Network
from hm2bp.config import load_config
from hm2bp.errors import SetupError, TrainingError
from hm2bp.train.boost import update_boost
from hm2bp.train.checkpoint import load_checkpoint
from hm2bp.train.metrics import read_metrics
from hm2bp.train.run import prepare_run
from hm2bp.train.rundir import LAST
from hm2bp.train.trainer import Trainer
from spikedata.store import open_store
from tests.hm2bp.synthetic import make_store

REPO = Path(__file__).resolve().parents[2]


def tiny_config(**train):
    return {
        "steps": 50,
        "layers": [
            {"name": "hidden", "type": "dense", "size": 20, "threshold": 5.0},
            {"name": "output", "type": "dense", "size": 4, "threshold": 3.0, "lateral_inhibition": 1.0},
        ],
        "loss": {"desired": 10, "undesired": 2, "margin": 2},
        "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 8, "epochs": 3, "seed": 0, **train},
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return open_store(make_store(tmp_path_factory.mktemp("trainer") / "s.zarr", n_train=200, n_test=100))


def _network(config, split, seed=0):
    return Network.from_config(config, split.n_units, tuple(split.unit_shape),
                               generator=torch.Generator().manual_seed(seed))


def test_sgd_epochs_equal_hand_computed_steps(store):
    """3 epochs of one full batch each: w <- w - u, u <- 0.9 u + lr_e g, lr_e = lr/sqrt(max(e,1)), with
    g = Network.gradients(batch, boost weights) and the boost updated from that epoch's predictions."""
    split = store["train"]
    cfg = load_config(tiny_config(optimizer="sgd", lr=0.02, momentum=0.9, batch_size=32, epochs=3))
    trainer = Trainer(_network(cfg, split), split, device="cpu", max_train=32)
    ref = _network(cfg, split)
    velocity = {k: torch.zeros_like(w, dtype=torch.float64) for k, w in ref.weights().items()}
    weights = {k: w.double().clone() for k, w in ref.weights().items()}
    boost = np.ones(32)
    labels_all = split.labels[:32].astype(np.int64)
    history = trainer.fit()
    for epoch in range(3):
        lr = 0.02 / math.sqrt(max(epoch, 1))
        assert history[epoch]["lr"] == pytest.approx(lr)
        order = trainer.loader.epoch_order(epoch)
        spikes = torch.from_numpy(split.dense(order))
        labels = torch.from_numpy(labels_all[order])
        ref.load_weights({k: w.float() for k, w in weights.items()})
        preds, _ = ref.predict(spikes)
        grads = ref.gradients(spikes, labels, torch.from_numpy(boost[order]))
        assert any(g.abs().sum() > 0 for g in grads.values())
        for k in weights:
            velocity[k] = 0.9 * velocity[k] + lr * grads[k].double()
            weights[k] = weights[k] - velocity[k]
        correct = np.zeros(32, bool)
        correct[order] = preds.numpy() == labels.numpy()
        assert history[epoch]["train_accuracy"] == pytest.approx(correct.mean())
        boost = update_boost(boost, labels_all, correct, 4)
    for k, w in trainer.net.weights().items():
        torch.testing.assert_close(w.double(), weights[k], rtol=0, atol=1e-5)
    np.testing.assert_allclose(trainer.boost, boost)
    assert not np.all(boost == 1.0)  # the boost actually did something in this run


def test_adam_counters_continue_across_epochs_and_first_step(store):
    split = store["train"]
    cfg = load_config(tiny_config(lr=0.01, batch_size=16, epochs=2))
    net = _network(cfg, split)
    w0 = {k: w.clone() for k, w in net.weights().items()}
    trainer = Trainer(net, split, device="cpu", max_train=64)
    # First Adam step: every weight with a non-zero gradient moves by exactly lr against its sign.
    batch = next(iter(trainer.loader.epoch(0)))
    grads = _network(cfg, split).gradients(batch.spikes, batch.labels, torch.ones(len(batch)))
    trainer.optimizer.step(grads, 0.01)
    for k, w in net.weights().items():
        g = grads[k].double()
        step = (w - w0[k]).double()
        # m_hat = g, v_hat = g^2: the step is -lr g / (|g| + 1e-8), i.e. -lr sign(g) unless |g| is tiny.
        torch.testing.assert_close(step, -0.01 * g / (g.abs() + 1e-8), rtol=0, atol=3e-7)
        big = g.abs() > 1e-3
        assert big.sum() > 10
        torch.testing.assert_close(step[big], -0.01 * torch.sign(g[big]), rtol=0, atol=3e-7)
    trainer = Trainer(_network(cfg, split), split, device="cpu", max_train=64)
    trainer.fit()
    steps = 2 * len(trainer.loader)
    assert trainer.optimizer.steps == steps == 8
    assert trainer.optimizer.beta1_power["hidden"] == pytest.approx(0.9 ** (steps + 1))
    assert trainer.optimizer.beta2_power["output"] == pytest.approx(0.999 ** (steps + 1))


def test_training_learns_far_above_chance(store, tmp_path):
    cfg = load_config(tiny_config(epochs=4))
    trainer = prepare_run(store, cfg, tmp_path / "run", device="cpu")
    history = trainer.fit()
    assert history[-1]["train_accuracy"] > 0.8 and history[-1]["test_accuracy"] > 0.8  # chance: 0.25
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]
    assert {"epoch", "lr", "train_loss", "train_accuracy", "test_accuracy", "seconds"} <= set(records[0])
    assert records[0]["train_loss"] > records[-1]["train_loss"]
    ckpt = load_checkpoint(tmp_path / "run" / LAST)
    assert ckpt["epoch"] == 3 and ckpt["store"]["fingerprint"] == store.fingerprint
    for k, w in trainer.net.weights().items():
        assert torch.equal(ckpt["weights"][k], w)
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "learning_curve.png").stat().st_size
    with pytest.raises(SetupError, match="already holds a run"):
        prepare_run(store, cfg, tmp_path / "run", device="cpu")


def test_setup_errors(store, tmp_path):
    cfg = load_config(tiny_config())
    with pytest.raises(SetupError, match="store has 40 units, preset 'x' expects 784"):
        prepare_run(store, cfg, tmp_path / "a", expected_inputs=784, config_source="preset 'x'")
    with pytest.raises(SetupError, match="store has 50 time steps per sample"):
        prepare_run(store, load_config({**tiny_config(), "steps": 60}), tmp_path / "b")
    with pytest.raises(SetupError, match="no training split 'nope'"):
        prepare_run(store, cfg, tmp_path / "c", train_split="nope")
    with pytest.raises(SetupError, match="no checkpoint"):
        prepare_run(store, cfg, tmp_path / "d", resume=True)


def _fit_cmd(store_path, config_path, out, *extra):
    code = "import sys; from hm2bp.cli import main; sys.argv[0] = 'hm2bp'; main()"
    return [sys.executable, "-c", code, "fit", str(store_path), "--config", str(config_path), "--out", str(out),
            "--device", "cpu", "--quiet", *extra]


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    store_path = make_store(tmp_path / "s.zarr", n_train=200, n_test=50)
    config = tmp_path / "tiny.toml"
    config.write_text(
        'steps = 50\n[[layers]]\nname = "hidden"\nsize = 20\nthreshold = 5.0\n'
        '[[layers]]\nname = "output"\nsize = 4\nthreshold = 3.0\nlateral_inhibition = 1.0\n'
        "[loss]\ndesired = 10\nundesired = 2\nmargin = 2\n"
        '[train]\noptimizer = "adam"\nlr = 0.01\nbatch_size = 1\nepochs = 2\n'
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # The uninterrupted run and the one to be killed start together (saves one interpreter start-up).
    full = subprocess.Popen(_fit_cmd(store_path, config, tmp_path / "full"), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed = subprocess.Popen(_fit_cmd(store_path, config, tmp_path / "killed"), cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (tmp_path / "killed" / LAST).exists():
        assert killed.poll() is None and time.monotonic() < deadline, "run ended before its first checkpoint"
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    _, err = full.communicate(timeout=120)
    assert full.returncode == 0, err
    interrupted_at = load_checkpoint(tmp_path / "killed" / LAST)["epoch"]
    assert interrupted_at == 0, "the kill came too late to test anything"
    resumed = subprocess.run(_fit_cmd(store_path, config, tmp_path / "killed", "--resume"), cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_checkpoint(tmp_path / "full" / LAST), load_checkpoint(tmp_path / "killed" / LAST)
    assert a["epoch"] == b["epoch"] == 1
    for k in a["weights"]:
        assert torch.equal(a["weights"][k], b["weights"][k])
    assert torch.equal(a["boost"], b["boost"])
    strip = ("seconds", "samples_per_s", "test_seconds", "valid_seconds")
    ra = [{k: v for k, v in r.items() if k not in strip} for r in read_metrics(tmp_path / "full" / "metrics.jsonl")]
    rb = [{k: v for k, v in r.items() if k not in strip} for r in read_metrics(tmp_path / "killed" / "metrics.jsonl")]
    assert ra == rb and len(ra) == 2


def test_non_finite_gradient_stops_with_a_clear_error_and_keeps_the_checkpoint(store, tmp_path):
    cfg = load_config(tiny_config(epochs=2))
    trainer = prepare_run(store, cfg, tmp_path / "run", device="cpu", max_train=32)
    trainer.fit(epochs=1)
    with torch.no_grad():
        trainer.net.weights()["hidden"][0, 0] = float("nan")
    with pytest.raises(TrainingError, match=r"non-finite gradient in layer 'hidden' at epoch 1, batch 0 .*last\.pt"):
        trainer.fit()
    assert load_checkpoint(tmp_path / "run" / LAST)["epoch"] == 0
    assert [r["epoch"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [0]


def test_presets_load_and_follow_the_paper():
    from hm2bp.presets import load_preset, preset_meta, preset_names

    assert set(preset_names()) >= {"mnist-mlp", "nmnist-mlp", "emnist-mlp", "emnist-mlp-2x200", "ti46-mlp",
                                   "ti46-mlp-2x400", "ti46-mlp-2x800", "demo"}
    shapes = {}
    for name in preset_names():
        cfg = load_config(load_preset(name))
        shapes[name] = (preset_meta(name)["inputs"], *[spec.size for spec in cfg.layers], cfg.steps)
    assert shapes["mnist-mlp"] == (784, 800, 10, 400)
    assert shapes["nmnist-mlp"] == (2312, 800, 10, 540)
    assert shapes["emnist-mlp"] == (784, 800, 47, 400)
    assert shapes["emnist-mlp-2x200"] == (784, 200, 200, 47, 400)
    assert shapes["ti46-mlp"] == (78, 800, 26, 1000)
    assert shapes["ti46-mlp-2x800"] == (78, 800, 800, 26, 1000)
    mnist, nmnist = load_config(load_preset("mnist-mlp")), load_config(load_preset("nmnist-mlp"))
    assert [s.threshold for s in mnist.layers] == [20.0, 8.0] and [s.threshold for s in nmnist.layers] == [15.0, 15.0]
    assert (mnist.regularizer.lam, mnist.regularizer.beta, nmnist.regularizer.beta) == (10.0, 0.04, 0.01)
    assert mnist.train.optimizer == "adam" and mnist.train.batch_size == 1 and mnist.train.boost
    assert mnist.layers[-1].lateral_inhibition == 1.0 and (mnist.loss.desired, mnist.loss.undesired) == (35, 5)
    demo = load_config(load_preset("demo"))
    assert demo.train.lr_batch_scaling == "sqrt" and demo.train.batch_size == 16
