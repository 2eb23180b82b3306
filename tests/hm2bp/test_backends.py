"""The three kernel sets (numba, triton, torch) on the same inputs: spikes bit-equal, gradients within 1e-6
relative, the same training step and the same two epochs of a tiny network.

Triton kernels run on CPU tensors under Triton's interpreter (`TRITON_INTERPRET=1`, switched on by
`hm2bp.kernels.triton` when no GPU is present), which follows numpy semantics: these tests pin the operation order
and the algorithm; what only a GPU can show (FMA contraction, TF32, approximate division) is what the tests marked
`cuda` check on a real device.
"""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("triton", reason="the triton kernel set needs the triton package (test dependency)")

from hm2bp import Network  # noqa: E402
from hm2bp.kernels import make_kernels, resolve_backend  # noqa: E402
from hm2bp.kernels.numba.lif import lif_scan  # noqa: E402
from hm2bp.kernels.numba.spsp import spsp_readout  # noqa: E402
from hm2bp.rules.lif import spike_threshold  # noqa: E402
from hm2bp.rules.spsp import window  # noqa: E402
from hm2bp.train.optim import SGD, Adam, make_optimizer  # noqa: E402
from tests.hm2bp.test_cnn_network import DEEP, make_input, make_net  # noqa: E402
from tests.hm2bp.test_gradients import CFG, make_case  # noqa: E402

CUDA = torch.cuda.is_available()
# Under the interpreter the Triton kernels run on the CPU; with a GPU the same comparisons run on it.
TRITON_DEVICE = "cuda" if CUDA else "cpu"
_NO_CUDA = "needs a CUDA device (scripts/device_check.sh runs these on a GPU machine)"


def cuda(test):
    """Marks a test `cuda` (select with `-m cuda`) and skips it, with the reason, where no GPU is present."""
    return pytest.mark.cuda(pytest.mark.skipif(not CUDA, reason=_NO_CUDA)(test))


def _lif_codes(cur: np.ndarray, vth: float, tau_m: float, tau_s: float, t_r: int, lateral: float, epsilon: bool,
               device: str = TRITON_DEVICE):
    from hm2bp.kernels.triton.launch import launch
    from hm2bp.kernels.triton.lif import lif_scan_kernel

    b, t, n = cur.shape
    cap = window(tau_m) - t_r + 1
    x = torch.from_numpy(cur).to(device)
    codes = torch.empty(b, t, n, dtype=torch.int16, device=device)
    counts = torch.empty(b, n, dtype=torch.int64, device=device)
    thr = spike_threshold(vth) if epsilon else np.float32(vth)
    # tiles of 1 sample x 16 neurons (several programs per sample), or the whole layer with lateral inhibition
    bn = 32 if lateral else 16
    launch(lif_scan_kernel, (b, 1 if lateral else -(-n // bn)), x, codes, counts, b, t, n, float(np.float32(tau_m)),
           float(np.float32(tau_s)), float(thr), float(np.float32(lateral)), t_r, cap, LATERAL=bool(lateral),
           SB=1, BN=bn)
    return codes.cpu().numpy(), counts.cpu().numpy(), cap


@pytest.mark.parametrize("lateral,t_r,tau_m,epsilon", [(0.0, 2, 64.0, True), (1.0, 2, 64.0, True),
                                                       (0.0, 1, 20.0, True), (0.0, 0, 10.0, True),
                                                       (0.0, 3, 24.0, False), (0.5, 2, 12.0, False)])
def test_lif_and_spsp_kernels_equal_numba(lateral, t_r, tau_m, epsilon):
    """Spikes, counts, read-out K and side-effect sums bit for bit; the spike codes say what the read-out needs."""
    from hm2bp.kernels.triton.set import TritonKernels

    rng = np.random.default_rng(int(tau_m) + t_r)
    cur = (rng.standard_normal((2, 110, 21)) * 1.5 + 0.7).astype(np.float32)
    vth, tau_s = 8.0, 8.0
    spk, cnt = lif_scan(cur, vth, tau_m, tau_s, t_r, lateral, epsilon)
    codes, counts, cap = _lif_codes(cur, vth, tau_m, tau_s, t_r, lateral, epsilon)
    np.testing.assert_array_equal((codes != 0).astype(np.uint8), spk)
    np.testing.assert_array_equal(counts, cnt)
    assert 1 < cnt.mean() < 30 and 0 < (cnt == 0).sum() + 1 < cnt.size
    # codes: min(s, D), s = t - (t_prev + T_R) (first spike: D)
    for b, i in [(0, 0), (1, 5)]:
        times = np.flatnonzero(spk[b, :, i])
        expect = [cap] + [min(t - (p + t_r), cap) for p, t in zip(times[:-1], times[1:], strict=True)]
        assert codes[b, times, i].tolist() == expect[: len(times)]
    k_ref, side_ref = spsp_readout(spk, cur, np.arange(2), t_r, tau_m, tau_s)
    ks = TritonKernels(torch.device(TRITON_DEVICE))
    from hm2bp.config import NeuronParams
    from hm2bp.kernels.base import Trains

    post = Trains(torch.from_numpy(codes).to(TRITON_DEVICE), torch.from_numpy(counts),
                  torch.from_numpy(cur).to(TRITON_DEVICE))
    k, side = ks.spsp(post, None, NeuronParams(tau_m, tau_s, t_r))
    np.testing.assert_array_equal(k.cpu().numpy(), k_ref)
    np.testing.assert_array_equal(side.cpu().numpy(), side_ref)


def backend_nets(cfg, n_in, weights, device="cpu", input_shape=None):
    """The same network (same weights) on the numba and torch sets (CPU) and the triton set (on `device`)."""
    nets = {}
    for backend, dev in (("numba", "cpu"), ("torch", "cpu"), ("triton", device)):
        net = Network.from_config(cfg, n_in, input_shape, backend=backend)
        net.load_weights(weights)
        nets[backend] = net.to(dev)
    return nets


def assert_same_step(nets, x, y, w, rtol=1e-6):
    """One backward pass of every net: counts, predictions and spikes equal to numba's, costs and gradients close."""
    results = {b: net.backward_pass(x.to(net.device), y.to(net.device), w.to(net.device)) for b, net in nets.items()}
    forwards = {b: net.forward(x.to(net.device)) for b, net in nets.items()}
    ref = results["numba"]
    for b, res in results.items():
        assert torch.equal(res.counts.cpu(), ref.counts), b
        assert torch.equal(res.predictions.cpu(), ref.predictions), b
        np.testing.assert_allclose(res.cost.cpu().numpy(), ref.cost.numpy(), rtol=1e-12)
        for name, spikes in forwards[b].items():
            assert torch.equal(spikes.cpu(), forwards["numba"][name]), (b, name)
        for name, g in res.grads.items():
            scale = float(ref.grads[name].abs().max())
            assert scale > 0
            np.testing.assert_allclose(g.cpu().numpy(), ref.grads[name].numpy(), rtol=rtol, atol=rtol * scale,
                                       err_msg=f"{b} {name}")
    return results


@pytest.mark.parametrize("effect_ratio", [True, False])
def test_dense_network_step_agrees_across_backends(effect_ratio):
    """784-800-10-like: hidden + output with lateral inhibition, a silent label, silent neurons, boost weights."""
    cfg = {**CFG, "train": {"effect_ratio": effect_ratio}}
    net, spikes, labels, sw = make_case(11, cfg=cfg)
    nets = backend_nets(cfg, 14, net.weights(), TRITON_DEVICE)
    res = assert_same_step(nets, torch.from_numpy(spikes), torch.from_numpy(labels), torch.from_numpy(sw))
    assert res["numba"].counts[:, 2].sum() == 0  # the silent label path ran


def test_cnn_step_agrees_across_backends():
    """conv -> pool -> conv -> dense -> dense (lateral): every kernel of every layer kind."""
    side = 10
    net = make_net(DEEP, side, seed=2)
    x = make_input(5, side, seed=2)
    y = torch.tensor([0, 1, 2, 3, 1])
    nets = backend_nets(DEEP, side * side, net.weights(), TRITON_DEVICE, (1, side, side))
    assert_same_step(nets, x, y, torch.ones(5, dtype=torch.float64))
    counts = {name: run.sum().item() for name, run in nets["numba"].forward(x).items()}
    assert all(v > 0 for v in counts.values()), counts


def test_optimizers_triton_equal_numba():
    rng = np.random.default_rng(0)
    w0 = torch.from_numpy(rng.normal(size=(37, 23)).astype(np.float32)).T  # transposed storage, as a dense layer
    grads = [torch.from_numpy(rng.normal(size=(23, 37)).astype(np.float32)) for _ in range(3)]
    devices = {"numba": "cpu", "triton": TRITON_DEVICE}
    for cls in (Adam, SGD):
        ws = {b: {"w": w0.clone().T.contiguous().T.to(dev)} for b, dev in devices.items()}
        opts = {b: cls(ws[b], 1e-2, kernels=make_kernels(b, devices[b])) for b in ws}
        for g in grads:
            for b, opt in opts.items():
                opt.step({"w": g.to(devices[b])})
        assert torch.equal(ws["numba"]["w"], ws["triton"]["w"].cpu()), cls.__name__


def train_tiny(backend, epochs, tmp_path, n_train=16, batch=8, n_test=6):
    """`epochs` of a tiny network (14-10-4, T 60) on a synthetic store, on the backend's device (the triton set:
    CUDA where present, else CPU under the interpreter). Returns (network, trainer)."""
    from hm2bp.train.trainer import Trainer
    from spikedata.store import open_store
    from tests.hm2bp.synthetic import make_store

    store = open_store(make_store(tmp_path / f"s-{backend}-{n_train}.zarr", n_train=n_train, n_test=n_test,
                                  n_units=14, n_steps=60))
    cfg = {**CFG, "steps": 60, "train": {"batch_size": batch, "epochs": epochs, "lr": 0.01},
           "loss": {"desired": 6, "undesired": 2, "margin": 1}}
    net = Network.from_config(cfg, 14, backend=backend).to(TRITON_DEVICE if backend == "triton" else "cpu")
    trainer = Trainer(net, store["train"], store["test"], device=str(net.device))
    trainer.fit()
    return net, trainer


def test_two_epochs_agree_across_backends(tmp_path):
    """Two epochs of a tiny network: the same predictions, boost weights and (to float rounding) weights."""
    runs = {b: train_tiny(b, 2, tmp_path) for b in ("numba", "torch", "triton")}
    ref_net, ref = runs["numba"]
    for b, (net, trainer) in runs.items():
        assert [r["train_accuracy"] for r in trainer.state.history] == [r["train_accuracy"]
                                                                        for r in ref.state.history], b
        np.testing.assert_allclose(trainer.boost, ref.boost, rtol=1e-12)
        for name, w in net.weights().items():
            np.testing.assert_allclose(w.cpu().numpy(), ref_net.weights()[name].numpy(), rtol=1e-5, atol=1e-5)


def test_backend_resolution():
    assert resolve_backend("auto", "cpu") == "numba"
    assert resolve_backend("torch", "cpu") == "torch"
    with pytest.raises(ValueError, match="CPU tensors only"):
        resolve_backend("numba", "cuda")
    with pytest.raises(ValueError, match="one of"):
        resolve_backend("cupy", "cpu")
    assert make_kernels("auto", "cpu").name == "numba"
    net = Network.from_config(CFG, 14, backend="torch")
    opt = make_optimizer("adam", net.weights(), 1e-3, kernels=net.kernels)
    assert net.backend == "torch" and opt.kernels.name == "torch"


def test_no_tf32_on_the_triton_path():
    from hm2bp.kernels.triton.set import TritonKernels

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    TritonKernels(torch.device(TRITON_DEVICE))
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32


def test_exp_tables_and_window():
    assert window(64.0) == 256 and math.isclose(math.exp(-1 / 64.0) ** 256, math.exp(-4.0))


@cuda
def test_cuda_spikes_bit_equal_to_numba_at_paper_size():
    """On a real GPU: compiled kernels (no FMA, correctly rounded division) give the numba spikes bit for bit at
    784-800-10, T = 400, and the same gradients to 1e-6."""
    rng = np.random.default_rng(1)
    cfg = {"steps": 400, "layers": [{"name": "hidden", "size": 800, "threshold": 20.0},
                                    {"name": "output", "size": 10, "threshold": 8.0, "lateral_inhibition": 1.0}]}
    x = torch.from_numpy(rng.random((16, 400, 784)) < 0.03)
    x[:, 0] = False
    y = torch.from_numpy(rng.integers(0, 10, 16))
    net = Network.from_config(cfg, 784)
    nets = {"numba": net, "triton": Network.from_config(cfg, 784, backend="triton")}
    nets["triton"].load_weights(net.weights())
    nets["triton"].to("cuda")
    assert_same_step(nets, x, y, torch.ones(16, dtype=torch.float64))


@cuda
def test_cuda_training_step_never_waits_for_the_host(tmp_path):
    """A training step on the triton path issues no host synchronisation (torch raises on any in "error" mode):
    labels, counts, boost weights, flags and the running loss stay on the device between read-backs."""
    from hm2bp.train.trainer import Trainer
    from spikedata.store import open_store
    from tests.hm2bp.synthetic import make_store

    store = open_store(make_store(tmp_path / "s.zarr", n_train=64, n_test=8, n_units=14, n_steps=120))
    cfg = {**CFG, "train": {"batch_size": 16, "epochs": 1, "lr": 0.01}}
    net = Network.from_config(cfg, 14, backend="triton").to("cuda")
    trainer = Trainer(net, store["train"], None, device="cuda", report_every=1000)
    assert trainer.loader.placement == "resident"
    batches = iter(trainer.loader.epoch(0))
    first = next(batches)  # the first batch uploads the split's events
    net.backward_pass(first.spikes, first.labels, validate=False, check_finite=False)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch in batches:
            res = net.backward_pass(batch.spikes, batch.labels, validate=False, check_finite=False)
            trainer.optimizer.step(res.grads, 1e-3)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    net.check_finite()
