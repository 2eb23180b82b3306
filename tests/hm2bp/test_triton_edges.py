"""The triton kernel set at the edges the GPU compiler specialises on, run on CPU tensors under Triton's interpreter
(on CUDA tensors where a GPU is present): a batch of one sample, an epoch whose last batch holds one sample, and
labels outside the output layer (refused before any kernel runs; the output kernels themselves stay inside their
sample's rows)."""

import numpy as np
import pytest
import torch

pytest.importorskip("triton", reason="the triton kernel set needs the triton package (test dependency)")

from hm2bp import Network  # noqa: E402
from hm2bp.config import LossSpec, NeuronParams  # noqa: E402
from hm2bp.kernels.base import Trains  # noqa: E402
from hm2bp.kernels.triton.launch import recording  # noqa: E402
from hm2bp.kernels.triton.set import TritonKernels  # noqa: E402
from tests.hm2bp.test_backends import TRITON_DEVICE, assert_same_step, backend_nets, train_tiny  # noqa: E402
from tests.hm2bp.test_gradients import CFG, make_case  # noqa: E402


def test_batch_of_one_dense_step_agrees_across_backends():
    """Batch 1, the paper presets' batch (label 2 is silent: the synthetic-train path runs)."""
    net, spikes, labels, sw = make_case(11, batch=1)
    nets = backend_nets(CFG, 14, net.weights(), TRITON_DEVICE)
    res = assert_same_step(nets, torch.from_numpy(spikes), torch.from_numpy(labels), torch.from_numpy(sw))
    assert res["numba"].counts.shape == (1, 4) and res["numba"].counts[0, 2] == 0


def test_epoch_whose_last_batch_holds_one_sample(tmp_path):
    """9 samples in batches of 8: the second batch holds one sample; the epoch agrees with numba."""
    runs = {b: train_tiny(b, 1, tmp_path, n_train=9, batch=8, n_test=2) for b in ("numba", "triton")}
    (ref_net, ref), (net, trainer) = runs["numba"], runs["triton"]
    assert [len(b) for b in trainer.loader.epoch(0)] == [8, 1]
    assert trainer.state.history[0]["train_accuracy"] == ref.state.history[0]["train_accuracy"]
    np.testing.assert_allclose(trainer.boost, ref.boost, rtol=1e-12)
    for name, w in net.weights().items():
        np.testing.assert_allclose(w.cpu().numpy(), ref_net.weights()[name].numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("label,sample", [(4, 1), (-1, 2)])
def test_out_of_range_label_is_refused_before_any_kernel_runs(label, sample):
    net = Network.from_config(CFG, 14, backend="triton").to(TRITON_DEVICE)
    x = torch.zeros(3, CFG["steps"], 14, dtype=torch.bool)
    y = torch.tensor([0, 1, 2])
    y[sample] = label
    launched = []
    with recording(lambda *a: launched.append(a)), \
            pytest.raises(ValueError, match=rf"labels must lie in \[0, 3\] .*got {label} at sample {sample}$"):
        net.backward_pass(x, y)
    assert not launched


def test_trainer_refuses_a_split_with_labels_beyond_the_output_layer(tmp_path):
    from hm2bp.train.trainer import Trainer
    from spikedata.store import open_store
    from tests.hm2bp.synthetic import make_store

    store = open_store(make_store(tmp_path / "s.zarr", n_train=12, n_test=4, n_units=14, n_steps=30, n_classes=4))
    cfg = {**CFG, "steps": 30, "layers": [CFG["layers"][0], {**CFG["layers"][1], "size": 3}],
           "loss": {"desired": 6, "undesired": 2, "margin": 1}}
    net = Network.from_config(cfg, 14, backend="triton").to(TRITON_DEVICE)
    with pytest.raises(ValueError, match=r"labels outside \[0, 2\] \(first: 3 at sample \d+\)") as info:
        Trainer(net, store["train"], None, device=TRITON_DEVICE)
    assert "\n" not in str(info.value)


def _output_trains(rng, batch, steps, n, device):
    codes = torch.from_numpy(np.where(rng.random((batch, steps, n)) < 0.15, 7, 0).astype(np.int16))
    codes[:, 0] = 0
    codes[-1] = 0  # the last sample is silent everywhere: a label there would get the synthetic train
    counts = (codes != 0).sum(1)
    current = torch.zeros(batch, steps, n, dtype=torch.float32)
    return Trains(codes.to(device), counts.to(device), current.to(device))


@pytest.mark.parametrize("bad", [-1, 4, 1 << 40])
def test_output_kernels_stay_inside_their_sample_for_an_out_of_range_label(bad):
    """A label outside [0, n) that reaches the kernels (a caller that skipped the check) reads and writes nothing
    outside its sample: no synthetic train is written, every output gets the undesired target, and the
    lateral-inhibition factor equals that of a label on a neuron that fired."""
    rng = np.random.default_rng(5)
    batch, steps, n = 3, 60, 4
    ks = TritonKernels(torch.device(TRITON_DEVICE))
    out = _output_trains(rng, batch, steps, n, TRITON_DEVICE)
    loss, nrn = LossSpec(desired=6, undesired=2, margin=1), NeuronParams(64.0, 8.0, 2)
    weights = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64, device=TRITON_DEVICE)
    labels = torch.tensor([1, 0, bad], device=TRITON_DEVICE)
    post, error, cost = ks.output_errors(out, labels, weights, loss, nrn, steps)
    assert torch.equal(post.spikes[2].cpu(), out.spikes[2].cpu()) and torch.equal(post.counts[2], out.counts[2])
    target = torch.full((n,), 2.0, dtype=torch.float64)
    diff = out.counts[2].cpu().to(torch.float64) - target
    expected = torch.where(diff.abs() > 1, diff, 0.0)
    np.testing.assert_array_equal(error[2].cpu().numpy(), (expected * 2.0).numpy())
    assert float(cost[2]) == float((expected * expected).sum())
    # the samples with a label in range: as the torch reference set computes them
    from hm2bp.kernels.torch import TorchKernels

    first = Trains(out.spikes[:2].cpu() != 0, out.counts[:2].cpu(), out.current[:2].cpu())
    _, ref_error, ref_cost = TorchKernels(torch.device("cpu")).output_errors(first, labels[:2].cpu(),
                                                                            weights[:2].cpu(), loss, nrn, steps)
    np.testing.assert_array_equal(error[:2].cpu().numpy(), ref_error.numpy())
    np.testing.assert_array_equal(cost[:2].cpu().numpy(), ref_cost.numpy())
    # gamma: the label only marks its neuron as active; out of range it marks none
    k = torch.from_numpy(rng.standard_normal((batch, steps, n)).astype(np.float32)).to(TRITON_DEVICE)
    fired = int(torch.nonzero(out.counts[0].cpu() > 0)[0, 0])
    gammas = [ks.lateral_factor(k, post, None, post.counts, torch.tensor([lab, 0, 1], device=TRITON_DEVICE), 0.8,
                                1.0).cpu().numpy() for lab in (bad, fired)]
    np.testing.assert_array_equal(gammas[0], gammas[1])
    assert np.isfinite(gammas[0]).all()
