"""Conv / pool layers integrated in `hm2bp.Network`: forward spike-for-spike against plain per-step loops, and
`Network.gradients` against a brute-force float64 composition of the per-layer rules of algorithm.md §3 / §3.16
(per-pair algorithm.md §3.1 S-PSPs, no read-out matrices), written here layer by layer."""

import math

import numpy as np
import pytest
import torch

from hm2bp import Network, load_config
from hm2bp.rules.lif import spike_threshold
from tests.hm2bp.reference import e_pair, plain_lif
from tests.hm2bp.test_conv import plain_conv_current, times_of

F32 = np.float32
T = 60
LOSS = {"desired": 8, "undesired": 2, "margin": 1}
REG = {"lambda": 2.0, "beta": 0.5, "weight_limit": 2.0}

# 1x8x8 -> 2C3 -> P2 -> dense 4 with lateral inhibition: every layer kind, small enough for brute force
SMALL = {"steps": T, "neuron": {"tau_m": 64.0, "tau_s": 8.0, "refractory": 2}, "loss": LOSS, "regularizer": REG,
         "layers": [
             {"name": "conv1", "type": "conv", "channels": 2, "kernel": 3, "threshold": 1.5, "init": {"scale": 1.0}},
             {"name": "pool1", "type": "pool", "window": 2, "threshold": 0.8},
             {"name": "output", "type": "dense", "size": 4, "threshold": 0.9, "init": {"scale": 0.7},
              "lateral_inhibition": 1.0}]}
# 1x10x10 -> 2C3 -> P2 -> 3C2 -> dense 5 -> dense 4 (lateral): conv after pool, dense hidden after conv
DEEP = {"steps": T, "neuron": {"tau_m": 64.0, "tau_s": 8.0, "refractory": 2}, "loss": LOSS, "regularizer": REG,
        "layers": [
            {"name": "conv1", "type": "conv", "channels": 2, "kernel": 3, "threshold": 1.5, "init": {"scale": 1.0}},
            {"name": "pool1", "type": "pool", "window": 2, "threshold": 0.8},
            {"name": "conv2", "type": "conv", "channels": 3, "kernel": 2, "threshold": 0.6, "init": {"scale": 0.8}},
            {"name": "hidden", "type": "dense", "size": 5, "threshold": 0.9, "init": {"scale": 0.6}},
            {"name": "output", "type": "dense", "size": 4, "threshold": 0.9, "init": {"scale": 0.8},
             "lateral_inhibition": 1.0}]}


def make_net(cfg: dict, side: int, backend: str = "numba", seed: int = 0, **kw) -> Network:
    net = Network.from_config(cfg, side * side, (1, side, side), backend=backend,
                              generator=torch.Generator().manual_seed(seed), **kw)
    for w in net.weights().values():  # bias the random weights upwards: enough activity in every layer
        w.add_(0.25 * w.abs().mean())
    return net


def make_input(batch: int, side: int, seed: int, rate: float = 0.35) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, T, side * side, generator=g) < rate
    x[:, 0] = False
    x[0, :, :3] = False  # silent input units
    return x


# ---------------------------------------------------------------------------------------- plain forward


def plain_pool_current(pre: np.ndarray, shape, w: int) -> np.ndarray:
    c, h, wd = shape
    img = pre.reshape(-1, c, h, wd)
    out = np.zeros((pre.shape[0], c, h // w, wd // w), np.float64)
    for x in range(h // w):
        for y in range(wd // w):
            for a in range(w):
                for b in range(w):
                    out[:, :, x, y] += img[:, :, w * x + a, w * y + b]
    return out.reshape(pre.shape[0], -1).astype(F32)


def plain_forward(net: Network, x: np.ndarray) -> list[np.ndarray]:
    """Spike rasters [T, n] of every layer for one sample, input first."""
    rasters = [x.astype(np.uint8)]
    for name in net.layer_names:
        layer = net.layer(name)
        spec, nrn = layer.spec, layer.spec.neuron
        pre = rasters[-1]
        if layer.kind == "conv":
            cur = plain_conv_current(pre, layer.weight.numpy(), layer.in_shape)
            thr = F32(spec.threshold)  # exactly vth
        elif layer.kind == "pool":
            cur = plain_pool_current(pre, layer.in_shape, layer.window)
            thr = spike_threshold(spec.threshold)
        else:
            cur = (pre.astype(np.float64) @ layer.weight.numpy().astype(np.float64).T).astype(F32)
            thr = spike_threshold(spec.threshold)
        rasters.append(plain_lif(cur, thr, nrn.tau_m, nrn.tau_s, nrn.refractory, spec.lateral_inhibition))
    return rasters


# ------------------------------------------------------------------------------------- brute-force backward
def reg_grad(w: np.ndarray, lam: float, beta: float, limit: float) -> np.ndarray:
    """algorithm.md §3.7 per output row (dense) / per output kernel (conv)."""
    rows = w.reshape(w.shape[0], -1).astype(np.float64) / limit
    s = (rows**2).mean(1, keepdims=True)
    return (lam * beta * rows * np.exp(beta * (s - 1.0))).reshape(w.shape)


def connections(layer, i: int):
    """(pre j, weight index) pairs of post neuron i of a conv layer."""
    c_in, h, wd = layer.in_shape
    _, ho, wo = layer.out_shape
    k = layer.spec.kernel
    o, x, y = i // (ho * wo), (i // wo) % ho, i % wo
    return [(c * h * wd + (x + a) * wd + (y + b), (o, c, a, b)) for c in range(c_in) for a in range(k)
            for b in range(k)]


def brute_sample(net: Network, rasters: list[np.ndarray], label: int, sw: float) -> dict[str, np.ndarray]:
    """Data gradient of one sample (float64), straight from algorithm.md §3.2-§3.6 and §3.16."""
    cfg = net.config
    names = net.layer_names
    out_spec = cfg.layers[-1]
    o_true = rasters[-1].sum(0).astype(np.int64)
    n_out = len(o_true)
    y = np.full(n_out, cfg.loss.undesired)
    y[label] = cfg.loss.desired
    diff = o_true - y
    delta = np.where(np.abs(diff) > cfg.loss.margin, diff, 0.0) * sw / out_spec.threshold
    grads = {name: np.zeros(tuple(net.layer(name).weight.shape)) for name in net.trainable_names}
    if not delta.any():
        return grads
    post = rasters[-1].copy()
    if o_true[label] == 0:  # algorithm.md §3.2-5: synthetic regular train for a silent label neuron
        m = T // int(cfg.loss.desired)
        post[np.arange(m, T, m), label] = 1
    # lateral factor (algorithm.md §3.6) of the output layer: true counts, modified trains
    w0 = out_spec.lateral_inhibition
    d = np.where((o_true > 0) | (np.arange(n_out) == label), 1.0 / out_spec.threshold, 0.0)
    out_t = times_of(post)
    gamma = np.ones(n_out)
    for j in range(n_out):
        total = 0.0
        for m in range(n_out):
            if m == j:
                continue
            both = o_true[m] > 0 and o_true[j] > 0
            rho_jl = e_pair(out_t[m], out_t[j]) / o_true[j] if both else 1.0
            rho_lj = e_pair(out_t[j], out_t[m]) / o_true[m] if both else 1.0
            total += rho_jl * rho_lj * d[m]
        gamma[j] = 1.0 / (1.0 - w0 * w0 * total * d[j])
    for k in range(len(names) - 1, -1, -1):
        layer = net.layer(names[k])
        vth = layer.spec.threshold
        pre = rasters[k]
        post_t, pre_t = times_of(post), times_of(pre)
        o_post, o_pre = post.sum(0), pre.sum(0)
        pre_delta = np.zeros(pre.shape[1])
        if layer.kind == "pool":
            q_of = plain_pool_current(np.eye(pre.shape[1], dtype=np.uint8), layer.in_shape, layer.window).argmax(1)
            for p in range(pre.shape[1]):
                q = q_of[p]
                rho = e_pair(post_t[q], pre_t[p]) / o_pre[p] if o_post[q] > 0 and o_pre[p] > 0 else 1.0
                pre_delta[p] = delta[q] / layer.window**2 * rho
        else:
            w = layer.weight.numpy().astype(np.float64)
            g = grads[names[k]]
            for i in range(post.shape[1]):
                if layer.kind == "conv":
                    conns = connections(layer, i)
                else:
                    conns = [(j, (i, j)) for j in range(pre.shape[1])]
                es = {j: e_pair(post_t[i], pre_t[j]) for j, _ in conns}
                if o_post[i] > 0:
                    sigma = sum(w[idx] * es[j] for j, idx in conns) / o_post[i] / vth
                else:
                    sigma = 0.5 * sum(w[idx] for _, idx in conns) / vth
                lat = gamma[i] if k == len(names) - 1 else 1.0
                for j, idx in conns:
                    g[idx] += es[j] * (1.0 + sigma) * delta[i] * lat
                    ratio = es[j] / o_pre[j] if o_post[i] > 0 and o_pre[j] > 0 else 1.0
                    pre_delta[j] += delta[i] * w[idx] * ratio
        if k == 0:
            break
        below = net.layer(names[k - 1])
        delta = pre_delta if below.kind == "pool" else pre_delta / below.spec.threshold
        post = pre
    return grads


def brute_gradients(net: Network, x: torch.Tensor, labels: torch.Tensor, sw: np.ndarray) -> dict[str, np.ndarray]:
    reg = net.config.regularizer
    total = {name: reg_grad(net.layer(name).weight.numpy(), reg.lam, reg.beta, reg.weight_limit)
             for name in net.trainable_names}
    for b in range(x.shape[0]):
        rasters = plain_forward(net, x[b].numpy())
        for name, g in brute_sample(net, rasters, int(labels[b]), float(sw[b])).items():
            total[name] += g / x.shape[0]
    return total


# -------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("cfg,side,seed", [(SMALL, 8, 0), (SMALL, 8, 4), (DEEP, 10, 2)])
def test_network_matches_brute_force(cfg, side, seed):
    batch = 5
    net = make_net(cfg, side, seed=seed)
    x = make_input(batch, side, seed)
    labels = torch.tensor([0, 1, 2, 3, 1][:batch])
    sw = np.random.default_rng(seed).uniform(0.5, 1.5, batch)
    # forward: every layer spike for spike against the plain loops
    out = net.forward(x)
    assert list(out) == net.layer_names
    for b in range(batch):
        rasters = plain_forward(net, x[b].numpy())
        for name, raster in zip(net.layer_names, rasters[1:], strict=True):
            np.testing.assert_array_equal(out[name][b].numpy(), raster.astype(bool), err_msg=f"{name} sample {b}")
    # activity in every layer, silent neurons somewhere (the silent-neuron fallbacks of algorithm.md §3.4 / §3.16 run)
    active = {name: float((out[name].sum(1) > 0).float().mean()) for name in net.layer_names}
    assert min(active.values()) > 0 and min(active.values()) < 1, active
    grads = net.gradients(x, labels, torch.from_numpy(sw))
    assert list(grads) == net.trainable_names == [s["name"] for s in cfg["layers"] if s["type"] != "pool"]
    ref = brute_gradients(net, x, labels, sw)
    for name in net.trainable_names:
        assert grads[name].dtype == torch.float32 and grads[name].shape == net.layer(name).weight.shape
        scale = np.abs(ref[name]).max()
        assert scale > 0
        np.testing.assert_allclose(grads[name].numpy(), ref[name], rtol=2e-4, atol=2e-5 * scale, err_msg=name)
    # the torch twins (the GPU path) give the same gradients
    net_t = make_net(cfg, side, backend="torch", seed=seed)
    grads_t = net_t.gradients(x, labels, torch.from_numpy(sw))
    for name in net.trainable_names:
        scale = np.abs(ref[name]).max()
        np.testing.assert_allclose(grads_t[name].numpy(), ref[name], rtol=2e-4, atol=2e-5 * scale, err_msg=name)


def test_batch_mean_equals_mean_of_samples_and_threads():
    net = make_net(DEEP, 10, seed=3, threads=2)
    net.chunk_size = 2  # 7 samples -> 4 chunks over 2 threads
    x = make_input(7, 10, 3)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    batch = net.backward_pass(x, labels)
    singles = [net.backward_pass(x[b:b + 1], labels[b:b + 1]) for b in range(7)]
    for name in net.trainable_names:
        mean = torch.stack([s.grads[name].double() for s in singles]).mean(0)
        scale = float(mean.abs().max())
        np.testing.assert_allclose(batch.grads[name].double().numpy(), mean.numpy(), rtol=1e-5, atol=1e-6 * scale)
    assert torch.equal(batch.counts, torch.cat([s.counts for s in singles]))
    preds, counts = net.predict(x)
    assert torch.equal(counts, batch.counts) and torch.equal(preds, batch.predictions)


def test_structure_weights_and_errors():
    net = make_net(DEEP, 10)
    ws = net.weights()
    assert list(ws) == ["conv1", "conv2", "hidden", "output"]
    assert tuple(ws["conv1"].shape) == (2, 1, 3, 3) and tuple(ws["conv2"].shape) == (3, 2, 2, 2)
    assert tuple(ws["hidden"].shape) == (5, 27)  # 3 channels x 3 x 3, channel-major
    assert net.layer("pool1").weight is None and net.layer("pool1").out_shape == (2, 4, 4)
    # init U[-scale, scale] drawn in layer order from the generator (pool draws nothing)
    fresh = Network.from_config(DEEP, 100, (1, 10, 10), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    expect = (torch.rand((2, 1, 3, 3), generator=g) * 2 - 1) * 1.0
    assert torch.equal(fresh.weights()["conv1"], expect)
    assert torch.equal(fresh.weights()["conv2"], (torch.rand((3, 2, 2, 2), generator=g) * 2 - 1) * 0.8)
    # load_weights round trip, shape check, no pool entry
    fresh.load_weights({k: v.clone() for k, v in net.weights().items()})
    assert all(torch.equal(fresh.weights()[k], v) for k, v in net.weights().items())
    with pytest.raises(ValueError, match="conv1.*shape"):
        fresh.layer("conv1").weight = torch.zeros(2, 1, 2, 2)
    with pytest.raises(ValueError, match="input_shape"):
        Network.from_config(DEEP, 100)
    with pytest.raises(ValueError, match="does not divide"):
        Network.from_config(DEEP, 121, (11, 11))
    with pytest.raises(ValueError, match="steps, n_inputs"):
        net.forward(torch.zeros(1, T, 99, dtype=torch.bool))
    bad = {**SMALL, "layers": [SMALL["layers"][2] | {"name": "h"}, *SMALL["layers"]]}
    with pytest.raises(ValueError, match="needs a spatial input"):
        load_config(bad)
    bad = {**SMALL, "layers": [SMALL["layers"][0] | {"lateral_inhibition": 1.0}, *SMALL["layers"][1:]]}
    with pytest.raises(ValueError, match="only dense layers"):
        load_config(bad)


def test_preset_mnist_cnn_builds_as_reference():
    from hm2bp.presets import load_preset

    cfg = load_config(load_preset("mnist-cnn"))
    assert [s.describe() for s in cfg.layers] == ["15C5", "P2", "40C5", "P2", "300", "10"]
    assert [s.threshold for s in cfg.layers] == [5, 2, 12, 4, 10, 10]
    assert cfg.regularizer.lam == 0 and cfg.augment.enabled
    assert (cfg.augment.scale, cfg.augment.rotation, cfg.augment.distortion) == (12, 12, 3.4)
    assert load_config(cfg.to_dict()) == cfg
    net = Network.from_config(cfg, 784, (1, 28, 28))
    shapes = {k: tuple(v.shape) for k, v in net.weights().items()}
    assert shapes == {"conv1": (15, 1, 5, 5), "conv2": (40, 15, 5, 5), "hidden": (300, 640), "output": (10, 300)}
    assert float(net.weights()["conv1"].abs().max()) <= 0.5 < float(net.weights()["hidden"].abs().max()) <= 1.0
    assert math.isclose(float(net.weights()["conv2"].abs().max()), 0.5, rel_tol=1e-2)


# --------------------------------------------------------------------------------------- hm2bp fit, end to end
def bar_images(n: int, side: int, seed: int, split_id: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [n, side, side] images of 4 classes (3-pixel bar: top, bottom, left, right), jittered by +-1 px."""
    rng = np.random.default_rng([seed, split_id])
    labels = (np.arange(n) % 4).astype(np.int16)
    images = np.zeros((n, side, side), np.uint8)
    for i, c in enumerate(labels):
        lo = 1 + int(rng.integers(0, 2)) if c in (0, 2) else side - 4 - int(rng.integers(0, 2))
        bar = rng.integers(170, 256, size=(3, side - 2)).astype(np.uint8)
        if c < 2:
            images[i, lo:lo + 3, 1:-1] = bar
        else:
            images[i, 1:-1, lo:lo + 3] = bar.T
    return images, labels


def encode_bars(start: int, stop: int, *, n: int, side: int, steps: int, split_id: int, keep: bool):
    from spikedata import poisson_encode
    from spikedata.pipeline import dense_to_block

    images, labels = bar_images(n, side, 0, split_id)
    raster = poisson_encode(images[start:stop], steps, seed=split_id, first_index=start)
    extras = {"images": images[start:stop]} if keep else {}
    return dense_to_block(raster, labels[start:stop], extras=extras)


def make_image_store(path, side: int, steps: int, n_train: int, n_test: int, keep: bool = True, n_classes: int = 4):
    from functools import partial

    from spikedata.pipeline import SplitJob, encode_to_store

    jobs = {name: SplitJob(n, partial(encode_bars, n=n, side=side, steps=steps, split_id=k, keep=keep), chunk=32)
            for k, (name, n) in enumerate((("train", n_train), ("test", n_test)))}
    attrs = {"dataset": "bars", "encoder": {"name": "poisson", "params": {}}, "n_units": side * side,
             "unit_shape": [1, side, side], "n_steps": steps, "dt_us": 1000,
             "classes": [f"c{k}" for k in range(n_classes)], "seed": 0, "source": {"files": {}}}
    return encode_to_store(path, attrs, jobs, workers=1, progress=False)


TINY_CNN = """
steps = 50
[[layers]]
name = "conv1"
type = "conv"
channels = 4
kernel = 3
threshold = 1.1
init = { kind = "uniform", scale = 0.5 }
[[layers]]
name = "pool1"
type = "pool"
window = 2
threshold = 0.8
[[layers]]
name = "output"
size = 4
threshold = 2.0
lateral_inhibition = 1.0
[loss]
desired = 8
undesired = 2
margin = 1
[train]
lr = 0.02
batch_size = 4
epochs = 2
[regularizer]
lambda = 0.0
beta = 0.0
[augment]
enabled = true
"""


@pytest.fixture(scope="module")
def image_stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("cnn")
    cfg = root / "tiny-cnn.toml"
    cfg.write_text(TINY_CNN)
    return {"root": root, "config": cfg,
            "bars": make_image_store(root / "bars.zarr", 12, 50, 96, 48),
            "bars-noimg": make_image_store(root / "bars-noimg.zarr", 12, 50, 16, 8, keep=False)}


def _fit(*args):
    from typer.testing import CliRunner

    from hm2bp.cli import app as hm2bp_app

    return CliRunner().invoke(hm2bp_app, ["fit", *map(str, args), "--device", "cpu", "--quiet"])


def test_fit_cnn_with_augmentation_learns_and_resumes(image_stores):
    from hm2bp.train.checkpoint import load_checkpoint
    from hm2bp.train.metrics import read_metrics

    out = image_stores["root"] / "run"
    res = _fit(image_stores["bars"], "--config", image_stores["config"], "--out", out, "--epochs", "1")
    assert res.exit_code == 0, res.output
    assert "144 -> 4C3 -> P2 -> 4" in res.output
    res = _fit(image_stores["bars"], "--config", image_stores["config"], "--out", out, "--resume")
    assert res.exit_code == 0, res.output
    history = read_metrics(out / "metrics.jsonl")
    assert [r["epoch"] for r in history] == [0, 1]
    assert history[-1]["test_accuracy"] > 0.5  # 4 classes: chance is 0.25
    ckpt = load_checkpoint(out / "last.pt")
    assert tuple(ckpt["weights"]["conv1"].shape) == (4, 1, 3, 3) and "pool1" not in ckpt["weights"]
    assert ckpt["config"]["augment"]["enabled"] is True


def test_augmentation_changes_the_training_trains(image_stores):
    from hm2bp.config import AugmentSpec
    from hm2bp.train.augment import training_images
    from spikedata import open_store

    split = open_store(image_stores["bars"])["train"]
    aug = training_images(AugmentSpec(enabled=True), split, len(split), 50, 0, 8)
    idx = np.arange(8)
    a0, a0b, a1 = aug.spikes(idx, 0), aug.spikes(idx, 0), aug.spikes(idx, 1)
    assert torch.equal(a0, a0b) and not torch.equal(a0, a1)  # pure function of (seed, epoch, indices)
    fixed = torch.from_numpy(split.dense(idx))
    assert not torch.equal(a0, fixed)
    # still the same images: per-pixel rates correlate with the stored trains' rates
    r = np.corrcoef(a0.float().mean(1).flatten().numpy(), fixed.float().mean(1).flatten().numpy())[0, 1]
    assert r > 0.6
    assert training_images(AugmentSpec(enabled=False), split, len(split), 50, 0, 8) is None


def test_fit_augmentation_without_images_is_a_clear_error(image_stores):
    out = image_stores["root"] / "run-noimg"
    res = _fit(image_stores["bars-noimg"], "--config", image_stores["config"], "--out", out)
    assert res.exit_code == 1, res.output
    assert "no 'images' extra" in res.output and "--keep-images" in res.output and "Traceback" not in res.output
    res = _fit(image_stores["bars-noimg"], "--config", image_stores["config"], "--out", out, "--no-augment",
               "--epochs", "1")
    assert res.exit_code == 0, res.output


def test_fit_preset_mnist_cnn_end_to_end(tmp_path):
    store = make_image_store(tmp_path / "digits.zarr", 28, 400, 4, 2, n_classes=10)
    res = _fit(store, "--preset", "mnist-cnn", "--out", tmp_path / "run", "--epochs", "1", "--batch-size", "2")
    assert res.exit_code == 0, res.output
    assert "784 -> 15C5 -> P2 -> 40C5 -> P2 -> 300 -> 10" in res.output and "final epoch 1/1" in res.output
