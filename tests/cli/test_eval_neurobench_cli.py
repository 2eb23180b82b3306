"""`hm2bp eval` reports NeuroBench's metrics beside the accuracy, on the console and in `--json`."""

import json

import numpy as np
import torch
from typer.testing import CliRunner

from hm2bp.cli import app as hm2bp_app
from hm2bp.train.checkpoint import load_checkpoint
from hm2bp.train.evaluate import load_network_from_checkpoint
from spikedata.store import open_store
from tests.cli.test_hm2bp_cli import TINY
from tests.hm2bp.synthetic import make_store

runner = CliRunner()

def test_eval_prints_and_writes_the_neurobench_metrics(tmp_path):
    store = make_store(tmp_path / "s.zarr", n_train=40, n_test=24)
    (tmp_path / "c.toml").write_text(TINY)
    r = runner.invoke(hm2bp_app, ["fit", str(store), "--config", str(tmp_path / "c.toml"), "--out",
                                  str(tmp_path / "run"), "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    ckpt = tmp_path / "run" / "last.pt"
    r = runner.invoke(hm2bp_app, ["eval", str(store), "--checkpoint", str(ckpt), "--device", "cpu", "--json",
                                  str(tmp_path / "e.json"), "--plot", str(tmp_path / "cm.png")])
    assert r.exit_code == 0, r.output
    assert "NeuroBench, per sample: synaptic operations" in r.output
    assert "footprint 3,584 bytes (896 float32 weights)" in r.output
    got = json.loads((tmp_path / "e.json").read_text())["neurobench"]
    net = load_network_from_checkpoint(load_checkpoint(ckpt))
    spikes = net.forward(torch.from_numpy(open_store(store)["test"].dense(np.arange(24))))
    assert got["samples"] == 24 and got["parameters"] == 20 * 40 + 4 * 20 + 4 * 4
    assert got["synaptic_operations"]["Dense"] == 50 * (20 * 40 + 4 * 20 + 4 * 4)
    assert got["activation_sparsity_by_layer"] == {k: 1 - s.sum().item() / s.numel() for k, s in spikes.items()}
    assert got["synaptic_operations"]["Effective_MACs"] == 0.0 and got["synaptic_operations"]["Effective_ACs"] > 0
