"""NeuroBench's cost metrics (`hm2bp.train.neurobench`): brute-force recounts of the definitions on a small network,
and the cross-check against the `neurobench` package (test-only peer), which measures an equivalent torch model
(nn.Conv2d / nn.Linear with our weights, spiking activation modules that replay our spikes step by step) with its
own hooks."""

import numpy as np
import pytest
import torch
from torch import nn

from hm2bp import Network
from hm2bp.train.evaluate import evaluate
from hm2bp.train.neurobench import NeuroBenchMeter, network_cost
from tests.hm2bp.synthetic import make_store
from tests.hm2bp.test_architecture import TINY_CNN


@pytest.fixture(scope="module")
def case():
    """A conv-pool-dense-dense network (lateral inhibition on the output) with active layers and 30 % zero weights,
    and 10 input samples."""
    net = Network.from_config(TINY_CNN, 36, (1, 6, 6), generator=torch.Generator().manual_seed(5), threads=1)
    rng = np.random.default_rng(1)
    with torch.no_grad():
        for w in net.weights().values():
            w.mul_(4.0).add_(0.3)
            w[torch.from_numpy(rng.random(tuple(w.shape)) < 0.3)] = 0.0
    x = torch.from_numpy(rng.random((10, 40, 36)) < 0.3)
    x[:, 0] = False
    return net, x


def test_metrics_equal_brute_force_recounts(case):
    net, x = case
    meter = NeuroBenchMeter(net)
    for part in (slice(0, 4), slice(4, 10)):
        meter.add(*net.spike_counts(x[part]))
    got = meter.result()
    spikes = net.forward(x)
    n_weights = sum(w.numel() for w in net.weights().values()) + 9  # + the 3 x 3 lateral matrix
    zeros = sum(int((w == 0).sum()) for w in net.weights().values()) + 3  # its diagonal
    assert got["footprint"] == 4 * n_weights and got["connection_sparsity"] == zeros / n_weights
    for name, s in spikes.items():
        assert got["activation_sparsity_by_layer"][name] == 1 - s.sum().item() / s.numel()
    assert got["activation_sparsity"] == 1 - sum(s.sum().item() for s in spikes.values()) / sum(
        s.numel() for s in spikes.values())
    # synaptic operations, every sample and step: each spike counts its non-zero outgoing weights
    nz = {k: (v != 0).double() for k, v in net.weights().items()}
    effective = torch.nn.functional.conv2d(x.double().reshape(400, 1, 6, 6), nz["conv"]).sum().item()
    effective += (spikes["pool"].double() @ nz["hidden"].T).sum().item()
    effective += (spikes["hidden"].double() @ nz["output"].T).sum().item()
    effective += 2.0 * spikes["output"].sum().item()  # lateral: the 2 other output neurons
    dense = 40 * (2 * 4 * 4 * 9 + 6 * 8 + 3 * 6 + 9)
    ops = got["synaptic_operations"]
    assert ops == {"Effective_MACs": 0.0, "Effective_ACs": pytest.approx(effective / 10, rel=1e-12),
                   "Dense": dense}
    assert network_cost(net)["parameters"] == n_weights


def test_evaluate_feeds_the_meter(tmp_path):
    """`evaluate(..., meter=)` gives the same predictions as without it and counts every sample once."""
    from spikedata.store import open_store

    split = open_store(make_store(tmp_path / "s.zarr", n_train=8, n_test=30))["test"]
    cfg = {"steps": 50, "layers": [{"name": "h", "size": 12, "threshold": 2.0},
                                   {"name": "o", "size": 4, "threshold": 2.0, "lateral_inhibition": 1.0}]}
    net = Network.from_config(cfg, split.n_units)
    meter = NeuroBenchMeter(net)
    with_meter = evaluate(net, split, batch_size=8, meter=meter)
    plain = evaluate(net, split, batch_size=8)
    assert np.array_equal(with_meter.predictions, plain.predictions) and meter.samples == 30
    counts = net.forward(torch.from_numpy(split.dense(np.arange(30))))
    result = meter.result()
    for name, s in counts.items():
        assert result["activation_sparsity_by_layer"][name] == 1 - s.sum().item() / s.numel()


# ------------------------------------------------------------------------------- cross-check with neurobench
class Replay(nn.Module):
    """A spiking activation whose output at step `t` is the recorded spikes of one layer (`raster [B, T, ...]`):
    NeuroBench counts what activation modules output."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape, self.raster, self.t = shape, None, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.raster[:, self.t].reshape(-1, *self.shape)


class Stepped(nn.Module):
    """Our network as NeuroBench sees a stepped torch model: nn.Conv2d / nn.Linear with our weights (no bias), a
    sum pool (no connection layer for NeuroBench), and the lateral inhibition as an nn.Linear driven by the output
    spikes."""

    def __init__(self, net: Network) -> None:
        super().__init__()
        w = {k: v.detach().clone() for k, v in net.weights().items()}
        self.conv = nn.Conv2d(1, 2, 3, bias=False)
        self.pool = nn.LPPool2d(1, 2)
        self.hidden = nn.Linear(8, 6, bias=False)
        self.output = nn.Linear(6, 3, bias=False)
        self.lateral = nn.Linear(3, 3, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(w["conv"])
            self.hidden.weight.copy_(w["hidden"])
            self.output.weight.copy_(w["output"])
            self.lateral.weight.copy_(-1.0 + torch.eye(3))
        self.acts = nn.ModuleDict({"conv_act": Replay((2, 4, 4)), "pool_act": Replay((2, 2, 2)),
                                   "hidden_act": Replay((6,)), "output_act": Replay((3,))})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.acts
        s = a["pool_act"](self.pool(a["conv_act"](self.conv(x.reshape(-1, 1, 6, 6)))))
        out = a["output_act"](self.output(a["hidden_act"](self.hidden(s.flatten(1)))))
        self.lateral(out)
        return out


def test_metrics_equal_neurobench_on_an_equivalent_model(case):
    pytest.importorskip("snntorch", reason="neurobench imports snntorch (test-only peer) at import")
    pytest.importorskip("neurobench", reason="neurobench (test-only peer) not installed")
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import ActivationSparsity, ActivationSparsityByLayer, SynapticOperations
    from neurobench.models import NeuroBenchModel

    net, x = case
    stepped = Stepped(net)

    class Model(NeuroBenchModel):
        def __init__(self) -> None:
            super().__init__()
            self.add_activation_module(Replay)

        def __call__(self, data: torch.Tensor) -> torch.Tensor:
            rasters = net.forward(data.bool())  # our spikes of this batch, replayed step by step
            for name, act in stepped.acts.items():
                act.raster = rasters[name.removesuffix("_act")].float()
            for t in range(data.shape[1]):
                for act in stepped.acts.values():
                    act.t = t
                stepped(data[:, t])
            return rasters["output"].sum(1).argmax(1)

        def __net__(self) -> nn.Module:
            return stepped

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x.float(), torch.zeros(10)), batch_size=4)
    metrics = [[Footprint, ConnectionSparsity], [ActivationSparsity, ActivationSparsityByLayer, SynapticOperations]]
    theirs = Benchmark(Model(), loader, [], [], metrics).run(quiet=True)
    meter = NeuroBenchMeter(net)
    for part in (slice(0, 4), slice(4, 8), slice(8, 10)):
        meter.add(*net.spike_counts(x[part]))
    ours = meter.result()
    assert theirs["Footprint"] == ours["footprint"]
    assert theirs["ConnectionSparsity"] == round(ours["connection_sparsity"], 4) and ours["connection_sparsity"] > 0.2
    assert theirs["ActivationSparsity"] == pytest.approx(ours["activation_sparsity"], rel=1e-12)
    assert theirs["ActivationSparsityByLayer"] == pytest.approx(
        {f"{k}_act": v for k, v in ours["activation_sparsity_by_layer"].items()}, rel=1e-12)
    assert theirs["SynapticOperations"] == pytest.approx(ours["synaptic_operations"], rel=1e-12)
    assert 0 < ours["synaptic_operations"]["Effective_ACs"] < ours["synaptic_operations"]["Dense"]
