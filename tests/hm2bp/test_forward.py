"""Forward pass: spike-for-spike equality with a plain per-step loop of algorithm.md §1; torch twin == numba."""

import numpy as np
import pytest
import torch

from hm2bp import Network
from hm2bp.kernels.numba.csr import raster_to_csr
from hm2bp.kernels.numba.lif import input_current, lif_scan, lif_scan_csr
from hm2bp.rules.lif import lif_scan as lif_scan_torch
from tests.hm2bp.reference import plain_forward_lif

CASES = [  # (steps, vth, tau_m, tau_s, refractory, lateral)
    (120, 1.0, 64.0, 8.0, 2, 0.0),
    (120, 1.0, 64.0, 8.0, 2, 1.0),
    (90, 0.35, 20.0, 5.0, 1, 0.0),
    (150, 2.5, 30.0, 3.0, 3, 0.7),
    (60, 0.6, 10.0, 4.0, 0, 0.3),
]


@pytest.mark.parametrize("steps,vth,tau_m,tau_s,refractory,lateral", CASES)
def test_lif_matches_plain_loop(steps, vth, tau_m, tau_s, refractory, lateral):
    rng = np.random.default_rng(steps + refractory)
    n_pre, n_post, batch = 40, 12, 3
    pre = (rng.random((batch, steps, n_pre)) < 0.08).astype(np.uint8)
    pre[:, 0] = 0
    w = rng.uniform(-0.6, 1.0, (n_post, n_pre)).astype(np.float32)
    indptr, idx, counts_in = raster_to_csr(pre)
    np.testing.assert_array_equal(counts_in, pre.sum(1))
    cur = input_current(indptr, idx, w.T, batch, steps)
    spikes, counts = lif_scan(cur, vth, tau_m, tau_s, refractory, lateral)
    total = 0
    for b in range(batch):
        ref = plain_forward_lif(pre[b], w, vth, tau_m, tau_s, refractory, lateral)
        np.testing.assert_array_equal(spikes[b], ref)
        np.testing.assert_array_equal(counts[b], ref.sum(0))
        total += ref.sum()
    assert total > 20  # the case exercises spiking, not a silent layer
    spikes2, counts2, csr = lif_scan_csr(cur, vth, tau_m, tau_s, refractory, lateral)
    ref_csr = raster_to_csr(spikes)
    for got, want in zip((spikes2, counts2, *csr), (spikes, counts, *ref_csr), strict=True):
        np.testing.assert_array_equal(got, want)
    t_spk, c_spk = lif_scan_torch(torch.from_numpy(cur), vth, tau_m, tau_s, refractory, lateral)
    np.testing.assert_array_equal(t_spk.numpy(), spikes.astype(bool))
    np.testing.assert_array_equal(c_spk.numpy(), counts)


def test_refractory_and_first_step():
    # one strong input spike per step from t = 1: the neuron fires with ISI refractory + 1, never at t = 0
    steps, refractory = 40, 2
    pre = np.zeros((1, steps, 1), np.uint8)
    pre[0, 1:] = 1
    w = np.full((1, 1), 100.0, np.float32)
    indptr, idx, _ = raster_to_csr(pre)
    spikes, counts = lif_scan(input_current(indptr, idx, w.T, 1, steps), 1.0, 64.0, 8.0, refractory)
    times = np.flatnonzero(spikes[0, :, 0])
    assert times[0] == 2  # input of step 1 is integrated at step 2
    assert np.all(np.diff(times) == refractory + 1)
    assert counts[0, 0] == times.size


def test_network_forward_two_layers():
    cfg = {"steps": 100, "layers": [
        {"name": "hidden", "size": 16, "threshold": 1.0},
        {"name": "output", "size": 5, "threshold": 0.8, "lateral_inhibition": 1.0},
    ]}
    net = Network.from_config(cfg, 30)
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.random((2, 100, 30)) < 0.1)
    out = net.forward(x)
    assert list(out) == ["hidden", "output"] and out["hidden"].dtype == torch.bool
    w_h = net.layer("hidden").weight.numpy()
    w_o = net.layer("output").weight.numpy()
    for b in range(2):
        hid = plain_forward_lif(x[b].numpy().astype(np.uint8), w_h, 1.0, 64.0, 8.0, 2, 0.0)
        np.testing.assert_array_equal(out["hidden"][b].numpy(), hid.astype(bool))
        o = plain_forward_lif(hid, w_o, 0.8, 64.0, 8.0, 2, 1.0)
        np.testing.assert_array_equal(out["output"][b].numpy(), o.astype(bool))
    torch_net = Network.from_config(cfg, 30, backend="torch")
    torch_out = torch_net.forward(x.float())
    for name in out:
        assert torch.equal(torch_out[name], out[name])
    pred, counts = net.predict(x)
    assert torch.equal(counts, out["output"].sum(1))
    assert torch.equal(pred, torch.argmax(counts, 1))


def test_predict_on_threads_equals_forward():
    """`predict` spreads chunks over threads; counts must equal the single-threaded forward, in sample order."""
    cfg = {"steps": 80, "layers": [{"name": "hidden", "size": 12, "threshold": 1.0},
                                   {"name": "output", "size": 4, "threshold": 0.8, "lateral_inhibition": 1.0}]}
    x = torch.from_numpy(np.random.default_rng(5).random((11, 80, 30)) < 0.15)
    one = Network.from_config(cfg, 30, threads=1)
    many = Network.from_config(cfg, 30, threads=3)
    many.load_weights(one.weights())
    one.chunk_size = many.chunk_size = 2  # six chunks
    ref = one.forward(x)["output"].sum(1)
    pred, counts = many.predict(x)
    assert torch.equal(counts, ref) and torch.equal(pred, torch.argmax(ref, 1))
    assert torch.equal(one.predict(x)[1], ref)


def test_forward_rejects_bad_shape():
    net = Network.from_config({"steps": 50, "layers": [{"name": "output", "size": 3, "threshold": 1.0}]}, 8)
    with pytest.raises(ValueError, match="steps, n_inputs"):
        net.forward(torch.zeros(1, 40, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="shape"):
        net.layer("output").weight = torch.zeros(3, 7)
