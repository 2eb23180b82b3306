"""S-PSP read-outs and HM2-BP gradients against brute-force per-pair implementations of algorithm.md §3 (float64)."""


import numpy as np
import pytest
import torch

from hm2bp import Network
from hm2bp.kernels.numba import gradient as numba_gradient
from hm2bp.kernels.numba.csr import raster_to_csr
from hm2bp.kernels.numba.spsp import spsp_readout
from hm2bp.rules import gradient as rules
from hm2bp.rules.spsp import spsp_readout as spsp_readout_torch
from tests.hm2bp.reference import e_pair, plain_forward_lif


# -------------------------------------------------------------------------------------- brute force (algorithm.md §3.1)
def e_matrix(post: np.ndarray, pre: np.ndarray, t_r: int, tau_m: float, tau_s: float) -> np.ndarray:
    """E [n_post, n_pre] for one sample from rasters [T, n]."""
    post_t = [list(np.flatnonzero(post[:, i])) for i in range(post.shape[1])]
    pre_t = [list(np.flatnonzero(pre[:, j])) for j in range(pre.shape[1])]
    return np.array([[e_pair(p, q, t_r, tau_m, tau_s) for q in pre_t] for p in post_t])


def random_trains(rng, steps, n, rate, refractory):
    out = np.zeros((steps, n), np.uint8)
    for i in range(n):
        t = 1 + int(rng.integers(0, 5))
        while t < steps:
            if rng.random() < rate:
                out[t, i] = 1
                t += refractory + 1
            else:
                t += 1
    return out


@pytest.mark.parametrize("steps,tau_m,tau_s,t_r", [(80, 64.0, 8.0, 2), (120, 10.0, 3.0, 2), (70, 6.0, 2.5, 0),
                                                   (90, 12.0, 4.0, 3)])
def test_spsp_readout_equals_brute_force(steps, tau_m, tau_s, t_r):
    rng = np.random.default_rng(steps)
    batch, n_post, n_pre = 3, 6, 9
    post = np.stack([random_trains(rng, steps, n_post, 0.15, t_r) for _ in range(batch)])
    pre = (rng.random((batch, steps, n_pre)) < 0.1).astype(np.uint8)
    pre[:, :, 0] = 0  # a silent pre neuron
    post[1, :, 2] = 0  # a silent post neuron
    pre[0, 0, 1] = 1  # a pre spike at t = 0 never counts
    current = rng.normal(size=(batch, steps, n_post)).astype(np.float32)
    samples = np.array([2, 0, 1])
    k, side = spsp_readout(post, current, samples, t_r, tau_m, tau_s)
    k_t, side_t = spsp_readout_torch(torch.from_numpy(post).bool(), torch.from_numpy(current), t_r, tau_m, tau_s)
    for a, b in enumerate(samples):
        e_ref = e_matrix(post[b], pre[b], t_r, tau_m, tau_s)
        e_fast = k[a].T.astype(np.float64) @ pre[b]
        silent_post = post[b].sum(0) == 0
        e_fast[silent_post] = np.where(pre[b].sum(0) > 0, 0.1, 0.0)
        np.testing.assert_allclose(e_fast, e_ref, rtol=2e-6, atol=1e-9)
        # side sum = sum_tau K[tau, i] current[tau, i]
        np.testing.assert_allclose(side[a], (k[a].astype(np.float64) * current[b]).sum(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(k_t[b].numpy(), k[a], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(side_t[b].numpy(), side[a], rtol=1e-5, atol=1e-6)
    assert np.abs(k).max() > 0.1


# ------------------------------------------------------------------------- brute-force gradient (algorithm.md §3.2-3.7)
def brute_force_gradients(spikes, labels, weights, cfg, sample_weights, effect_ratio=True):
    """Per-sample reference gradients (complete algorithm.md §3.2/§3.3/§3.5/§3.6/§3.7 rules, per pair), batch mean +
    R(W)."""
    names = [layer["name"] for layer in cfg["layers"]]
    vths = [layer["threshold"] for layer in cfg["layers"]]
    w0 = cfg["layers"][-1].get("lateral_inhibition", 0.0)
    loss = cfg["loss"]
    tau_m, tau_s, t_r = 64.0, 8.0, 2
    steps = cfg["steps"]
    totals = {n: np.zeros(weights[n].shape) for n in names}
    for b in range(spikes.shape[0]):
        trains = [spikes[b]]
        for name, vth, layer in zip(names, vths, cfg["layers"], strict=True):
            trains.append(plain_forward(trains[-1], weights[name], vth, layer.get("lateral_inhibition", 0.0)))
        out = trains[-1].copy()
        o_true = out.sum(0).astype(np.float64)
        n_out, lab = out.shape[1], labels[b]
        y = np.full(n_out, loss["undesired"], float)
        y[lab] = loss["desired"]
        delta = np.array([(o - t) if abs(o - t) > loss["margin"] else 0.0 for o, t in zip(o_true, y, strict=True)])
        delta *= sample_weights[b]
        gamma = np.ones(n_out)
        if w0:
            e_oo = e_matrix(out, out, t_r, tau_m, tau_s)  # [post l, pre j]
            d = np.array([1 / vths[-1] if (o_true[x] > 0 or x == lab) else 0.0 for x in range(n_out)])
            for j in range(n_out):
                acc = 0.0
                for l_ in range(n_out):
                    if l_ == j:
                        continue
                    ok = o_true[j] > 0 and o_true[l_] > 0
                    rho_jl = e_oo[l_, j] / o_true[j] if ok else 1.0
                    rho_lj = e_oo[j, l_] / o_true[l_] if ok else 1.0
                    acc += rho_jl * d[l_] * rho_lj * d[j]
                gamma[j] = 1.0 / (1.0 - w0 * w0 * acc)
        if o_true[lab] == 0:
            m = steps // int(loss["desired"])
            out[m::m, lab] = 1  # spikes at m, 2m, ... < T (algorithm.md §3.2-5)
        trains[-1] = out
        delta = delta / vths[-1]
        for k in range(len(names) - 1, -1, -1):
            w = weights[names[k]].astype(np.float64)
            post, pre = trains[k + 1], trains[k]
            o_post, o_pre = post.sum(0), pre.sum(0)
            e = e_matrix(post, pre, t_r, tau_m, tau_s)
            g = np.zeros_like(w)
            for i in range(w.shape[0]):
                sigma = sum(w[i, j] * (e[i, j] / o_post[i] if o_post[i] > 0 else 0.5) for j in range(w.shape[1]))
                sigma /= vths[k]
                lat = gamma[i] if k == len(names) - 1 else 1.0
                for j in range(w.shape[1]):
                    g[i, j] = delta[i] * e[i, j] * (1 + sigma) * lat
            totals[names[k]] += g
            if k == 0:
                break
            pre_delta = np.zeros(w.shape[1])
            for j in range(w.shape[1]):
                for i in range(w.shape[0]):
                    if effect_ratio and o_post[i] > 0 and o_pre[j] > 0:
                        pre_delta[j] += delta[i] * w[i, j] * e[i, j] / o_pre[j]
                    else:
                        pre_delta[j] += delta[i] * w[i, j]
            delta = pre_delta / vths[k - 1]
    reg = cfg["regularizer"]
    grads = {}
    for name in names:
        w = weights[name].astype(np.float64) / reg["weight_limit"]
        s = (w**2).mean(1, keepdims=True)
        grads[name] = totals[name] / spikes.shape[0] + reg["lambda"] * reg["beta"] * w * np.exp(reg["beta"] * (s - 1))
    return grads


def plain_forward(pre, w, vth, w0):
    return plain_forward_lif(pre, w, vth, 64.0, 8.0, 2, w0)


CFG = {
    "steps": 120,
    "layers": [
        {"name": "hidden", "size": 10, "threshold": 1.0},
        {"name": "output", "size": 4, "threshold": 0.8, "lateral_inhibition": 1.0},
    ],
    "loss": {"desired": 12, "undesired": 3, "margin": 1},
    "regularizer": {"lambda": 10.0, "beta": 0.04, "weight_limit": 8.0},
}


def make_case(seed, batch=4, cfg=CFG):
    rng = np.random.default_rng(seed)
    n_in = 14
    spikes = rng.random((batch, cfg["steps"], n_in)) < 0.12
    spikes[:, 0] = False
    spikes[:, :, 3] = False  # a silent input
    net = Network.from_config(cfg, n_in)
    w_h = rng.uniform(-0.4, 1.0, (10, n_in)).astype(np.float32)
    w_h[7] = -1.0  # a silent hidden neuron
    w_o = rng.uniform(-0.5, 1.0, (4, 10)).astype(np.float32)
    w_o[2] = -1.0  # output neuron 2 never fires -> silent label when label 2
    net.layer("hidden").weight = torch.from_numpy(w_h)
    net.layer("output").weight = torch.from_numpy(w_o)
    labels = np.array([2, 0, 1, 3, 2, 1][:batch])
    sw = rng.uniform(0.5, 2.0, batch)
    return net, spikes, labels, sw


@pytest.mark.parametrize("effect_ratio", [True, False])
def test_batch_gradients_equal_mean_of_brute_force(effect_ratio):
    cfg = {**CFG, "train": {"effect_ratio": effect_ratio}}
    net, spikes, labels, sw = make_case(11, cfg=cfg)
    weights = {n: w.numpy().copy() for n, w in net.weights().items()}
    net.chunk_size, net.threads = 3, 2  # two chunks (3 + 1 samples) on two threads
    res = net.backward_pass(torch.from_numpy(spikes), torch.from_numpy(labels), torch.from_numpy(sw))
    counts = res.counts.numpy()
    assert counts[:, 2].sum() == 0 and (counts[:, [0, 1, 3]] > 0).any()  # silent label + active neurons
    ref = brute_force_gradients(spikes, labels, weights, cfg, sw, effect_ratio)
    for name, g in res.grads.items():
        scale = np.abs(ref[name]).max()
        assert scale > 0
        np.testing.assert_allclose(g.numpy(), ref[name], rtol=0, atol=2e-5 * scale, err_msg=name)
    # torch twins on CPU give the same result
    torch_net = Network.from_config(cfg, 14, backend="torch")
    torch_net.load_weights(net.weights())
    res_t = torch_net.backward_pass(torch.from_numpy(spikes), torch.from_numpy(labels), torch.from_numpy(sw))
    assert torch.equal(res_t.counts, res.counts)
    for name, g in res.grads.items():
        np.testing.assert_allclose(res_t.grads[name].numpy(), g.numpy(), rtol=0,
                                   atol=2e-6 * np.abs(g.numpy()).max())


def test_single_sample_and_batch_mean():
    net, spikes, labels, sw = make_case(5, batch=3)
    x, y, w = torch.from_numpy(spikes), torch.from_numpy(labels), torch.from_numpy(sw)
    full = net.gradients(x, y, w)
    singles = [net.gradients(x[b:b + 1], y[b:b + 1], w[b:b + 1]) for b in range(3)]
    for name in full:
        mean = sum(s[name].double() for s in singles) / 3
        np.testing.assert_allclose(full[name].numpy(), mean.numpy(), rtol=0, atol=1e-5 * mean.abs().max().item())


def test_step_result_fields():
    net, spikes, labels, sw = make_case(11)
    res = net.backward_pass(torch.from_numpy(spikes), torch.from_numpy(labels))
    counts = res.counts
    assert torch.equal(res.predictions, torch.argmax(counts, 1))
    # logged cost with the silent-label replacement: label 2 silent -> count 120 // 12 = 10 spikes, |10-12| > 1
    y = np.full((4, 4), 3.0)
    y[np.arange(4), labels] = 12.0
    o = counts.numpy().astype(float)
    for b in range(4):
        if o[b, labels[b]] == 0:
            o[b, labels[b]] = len(range(10, 120, 10))
    diff = o - y
    expected = np.where(np.abs(diff) > 1, diff**2, 0).sum(1)
    np.testing.assert_allclose(res.cost.numpy(), expected)


def test_weight_storage_view_and_reused_accumulator(monkeypatch):
    """A dense layer keeps `W^T` and `weight` is its live view; the reused gradient accumulator is cleared by each
    call (also after a call that failed half-way), so repeated calls give the same bits as a fresh network."""
    net, spikes, labels, sw = make_case(5, batch=4)
    x, y, w = torch.from_numpy(spikes), torch.from_numpy(labels), torch.from_numpy(sw)
    layer = net.layer("hidden")
    assert layer.weight.shape == (10, 14) and layer.weight.T.is_contiguous()
    first = net.gradients(x, y, w)
    assert first["hidden"].shape == (10, 14) and first["hidden"].stride() == layer.weight.stride()
    net.gradients(x[1:3], y[1:3], w[1:3])  # other samples reach other accumulator rows
    again = net.gradients(x, y, w)
    fresh = Network.from_config(CFG, 14)
    fresh.load_weights(net.weights())
    reference = fresh.gradients(x, y, w)
    for name in first:
        assert torch.equal(again[name], first[name]) and torch.equal(reference[name], first[name])
    # a call interrupted between the accumulation and the final pass leaves a dirty buffer: the next call zeroes it
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(numba_gradient, "finish_gradient", interrupted)
        with pytest.raises(KeyboardInterrupt):
            net.gradients(x, y, w)
    assert net.kernels.buffers[id(layer)].any()  # the numba set's reused accumulator is dirty
    for name, g in net.gradients(x, y, w).items():
        assert torch.equal(g, first[name])
    # in-place changes through the view are seen by the next call
    with torch.no_grad():
        layer.weight.mul_(0.0)
    assert int(net.forward(x)["hidden"].sum()) == 0


def test_zero_error_gives_regularizer_only():
    cfg = {**CFG, "loss": {"desired": 12, "undesired": 3, "margin": 200}}
    net, spikes, labels, _ = make_case(2, cfg=cfg)
    grads = net.gradients(torch.from_numpy(spikes), torch.from_numpy(labels))
    for name, w in net.weights().items():
        wl = w.double() / 8.0
        reg = 10.0 * 0.04 * wl * torch.exp(0.04 * ((wl**2).mean(1, keepdim=True) - 1))
        np.testing.assert_allclose(grads[name].numpy(), reg.numpy(), rtol=1e-6, atol=1e-9)


def test_non_finite_gradient_names_layer():
    net, spikes, labels, _ = make_case(11)
    w = net.layer("hidden").weight.clone()
    w[0, 0] = float("inf")
    net.layer("hidden").weight = w
    with pytest.raises(FloatingPointError, match="hidden|output"):
        net.gradients(torch.from_numpy(spikes), torch.from_numpy(labels))


def test_bad_labels_rejected():
    net, spikes, _, _ = make_case(1)
    with pytest.raises(ValueError, match="labels"):
        net.gradients(torch.from_numpy(spikes), torch.tensor([0, 1, 2, 9]))


def test_raster_to_csr_roundtrip():
    rng = np.random.default_rng(0)
    r = rng.random((2, 7, 5)) < 0.3
    indptr, idx, counts = raster_to_csr(r)
    rebuilt = np.zeros_like(r)
    for bt in range(14):
        rebuilt[bt // 7, bt % 7, idx[indptr[bt]:indptr[bt + 1]]] = True
    np.testing.assert_array_equal(rebuilt, r)
    np.testing.assert_array_equal(counts, r.sum(1))


@pytest.mark.parametrize("units", [5, 16, 21])
def test_raster_to_csr_word_skipping(units):
    """Rows of whole uint64 words plus a tail; any non-zero byte is a spike."""
    rng = np.random.default_rng(units)
    r = (rng.random((3, 9, units)) < 0.2) * rng.integers(1, 255, (3, 9, units))
    indptr, idx, counts = raster_to_csr(r.astype(np.uint8))
    assert indptr[0] == 0 and indptr[-1] == idx.size == np.count_nonzero(r) and idx.dtype == np.int32
    for bt in range(27):
        np.testing.assert_array_equal(idx[indptr[bt]:indptr[bt + 1]], np.flatnonzero(r[bt // 9, bt % 9]))
    np.testing.assert_array_equal(counts, (r != 0).sum(1))


def test_cpu_fast_paths_equal_torch_formulas_bitwise():
    """On CPU the small per-sample rules run in numpy; they must give the torch formulas' bits exactly."""
    from hm2bp.config import LossSpec

    rng = np.random.default_rng(7)
    batch, n = 6, 10
    counts = torch.from_numpy(rng.integers(0, 45, (batch, n)))
    counts[:, 3] = 0  # a silent neuron in every sample
    labels = torch.from_numpy(rng.integers(0, n, batch))
    counts[0, labels[0]] = 0  # a silent label
    loss = LossSpec(desired=35.0, undesired=5.0, margin=5.0)
    assert torch.equal(numba_gradient.output_error(counts, labels, loss), rules.output_error(counts, labels, loss))
    side = torch.from_numpy(rng.standard_normal((batch, n)) * 50)
    row_sum = torch.from_numpy(rng.standard_normal(n) * 3)
    assert torch.equal(numba_gradient.side_effect(side, counts, row_sum, 8.0),
                       rules.side_effect(side, counts, row_sum, 8.0))
    k_out = torch.from_numpy(rng.standard_normal((batch, 40, n)).astype(np.float32))
    spikes = torch.from_numpy((rng.random((batch, 40, n)) < 0.2).astype(np.uint8))
    for w0 in (1.0, 0.7):
        got = numba_gradient.lateral_factor(k_out, spikes, counts, labels, 8.0, w0)
        assert torch.equal(got, rules.lateral_factor(k_out, spikes, counts, labels, 8.0, w0))
    # replace_silent_label: unchanged objects when no label is silent, the synthetic train otherwise
    live = counts.clone()
    live[torch.arange(batch), labels] = 7
    same_spikes, same_counts = numba_gradient.replace_silent_label(spikes, live, labels, 35.0)
    assert same_spikes is spikes and same_counts is live
    new_spikes, new_counts = numba_gradient.replace_silent_label(spikes, counts, labels, 35.0)
    assert int(new_counts[0, labels[0]]) == len(rules.silent_label_train(40, 35.0)) == 39


def test_finish_gradient_in_storage_order_clears_what_it_reads():
    """`finish_gradient` = scale * g_t + R(W)^T in the transposed order, float32 as written (two products, one sum);
    rows marked touched are read and cleared, other rows are taken as zero; the row sums are float64 sums."""
    from hm2bp.config import RegularizerSpec

    rng = np.random.default_rng(1)
    w = rng.standard_normal((37, 53)).astype(np.float32)  # [n_post, n_pre]
    w_t = np.ascontiguousarray(w.T)
    sums, sumsq = numba_gradient.weight_row_sums(w_t)
    np.testing.assert_allclose(sums, w.astype(np.float64).sum(1), rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(sumsq, (w.astype(np.float64) ** 2).sum(1), rtol=1e-13)
    touched = rng.random(53) < 0.4
    g_t = rng.standard_normal((53, 37)).astype(np.float32) * touched[:, None]
    keep = g_t.copy()
    reg = RegularizerSpec(lam=10.0, beta=0.04, weight_limit=8.0)
    got = numba_gradient.finish_gradient(g_t, w_t, sumsq, 0.25, reg, "hidden", touched)
    s_i = (w.astype(np.float64) ** 2).sum(1) / (64.0 * 53)
    factor = (10.0 * 0.04 * np.exp(0.04 * (s_i - 1.0)) / 8.0).astype(np.float32)
    expected = np.float32(0.25) * keep + factor[None, :] * w_t
    assert got.flags.c_contiguous and got.dtype == np.float32 and got.shape == (53, 37)
    np.testing.assert_array_equal(got, expected)
    assert not g_t.any()  # the touched rows were cleared, the others were zero already
    g_t[4, 30] = np.nan
    with pytest.raises(FloatingPointError, match="'output'"):
        numba_gradient.finish_gradient(g_t, w_t, sumsq, 1.0, reg, "output")
