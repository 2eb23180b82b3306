"""Spiking conv / pool layers (numba kernels `hm2bp.kernels.numba.conv`, torch rules `hm2bp.rules.conv`): forward
spike-for-spike against plain loops of algorithm.md §1, gradients against brute-force per-pair algorithm.md §3.1
S-PSPs with the §3.16 rules (float64), numba == torch twins."""

import math

import numpy as np
import pytest
import torch

from hm2bp import geometry
from hm2bp.config import RegularizerSpec
from hm2bp.kernels.numba import conv
from hm2bp.kernels.numba.csr import raster_to_csr
from hm2bp.kernels.numba.lif import lif_scan
from hm2bp.kernels.numba.spsp import spsp_readout
from hm2bp.rules import conv as rules_conv
from hm2bp.rules.lif import lif_scan as lif_scan_torch
from hm2bp.rules.lif import spike_threshold
from tests.hm2bp.reference import e_pair, plain_lif

TAU_M, TAU_S, T_R = 64.0, 8.0, 2
F32 = np.float32


# ------------------------------------------------------------------------------------------ plain references
def plain_lif_from_current(cur: np.ndarray, thr: np.float32) -> np.ndarray:
    """algorithm.md §1 per step for one sample, given the float32 current [T, n] (current of step t-1 enters at t)."""
    return plain_lif(cur, thr, TAU_M, TAU_S, T_R, 0.0)


def plain_conv_current(pre: np.ndarray, w: np.ndarray, in_shape) -> np.ndarray:
    """Valid cross-correlation per step written as loops: pre [T, C*H*W] -> float32 [T, O*H'*W']."""
    c_in, h, wd = in_shape
    c_out, _, k, _ = w.shape
    ho, wo = h - k + 1, wd - k + 1
    img = pre.reshape(-1, c_in, h, wd).astype(np.float64)
    out = np.zeros((pre.shape[0], c_out, ho, wo), np.float64)
    for o in range(c_out):
        for x in range(ho):
            for y in range(wo):
                for c in range(c_in):
                    for a in range(k):
                        for b in range(k):
                            out[:, o, x, y] += img[:, c, x + a, y + b] * float(w[o, c, a, b])
    return out.reshape(pre.shape[0], -1).astype(F32)


def times_of(raster: np.ndarray) -> list[list[int]]:
    """[T, n] -> per-neuron sorted spike steps."""
    return [list(np.nonzero(raster[:, i])[0]) for i in range(raster.shape[1])]


# ------------------------------------------------------------------------------------------------- fixtures
IN_SHAPE = (2, 7, 6)
C_OUT, KERNEL, VTH_CONV, VTH_POOL, STEPS = 3, 3, 1.5, 0.8, 90


def make_input(seed: int, batch: int = 2, rate: float = 0.25) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pre = (rng.random((batch, STEPS, int(np.prod(IN_SHAPE)))) < rate).astype(np.uint8)
    pre[:, 0] = 0
    pre[0, :, :7] = 0  # a few silent input units
    return pre


def make_weight(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 100)
    return (rng.random((C_OUT, IN_SHAPE[0], KERNEL, KERNEL)) * 2 - 1).astype(F32) * F32(0.6)


def conv_forward(pre: np.ndarray, w: np.ndarray):
    csr = raster_to_csr(pre)
    cur = conv.conv_current(csr, w, IN_SHAPE, pre.shape[0], STEPS)
    spk, cnt = conv.conv_lif_scan(cur, VTH_CONV, TAU_M, TAU_S, T_R)
    return csr, cur, spk, cnt


# ---------------------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("vth", [1.0, 5.0, 3.7])
def test_conv_threshold_has_no_epsilon_on_every_backend(vth):
    # One step of input current 8 * vth makes v = ep / tau_s = vth exactly (tau_s = 8): the dense rule
    # (v > vth - 1e-6) fires, the conv rule (v > vth) does not; vth = 1.0 is where the epsilon cannot be undone
    # by nudging the threshold in float32.
    cur = np.zeros((1, 4, 2), np.float32)
    cur[0, 0, 0] = F32(8.0 * vth)
    cur[0, 0, 1] = np.nextafter(F32(8.0 * vth), F32(np.inf))
    spk, _ = conv.conv_lif_scan(cur, vth, 64.0, 8.0, 2)
    dense, _ = lif_scan(cur, vth, 64.0, 8.0, 2)
    assert spk[0, 1].tolist() == [0, 1] and dense[0, 1].tolist() == [1, 1]
    spk_t, _ = rules_conv.conv_lif_scan(torch.from_numpy(cur), vth, 64.0, 8.0, 2)
    np.testing.assert_array_equal(spk_t.numpy(), spk.astype(bool))


def test_shapes_and_errors():
    assert geometry.conv_output_shape((1, 28, 28), 15, 5) == (15, 24, 24)
    assert geometry.pool_output_shape((15, 24, 24), 2) == (15, 12, 12)
    assert geometry.as_input_shape((28, 28), 784) == (1, 28, 28)
    with pytest.raises(ValueError, match="does not fit"):
        geometry.conv_output_shape((1, 4, 4), 2, 5)
    with pytest.raises(ValueError, match="does not divide"):
        geometry.pool_output_shape((1, 5, 4), 2)
    with pytest.raises(ValueError, match="784 units"):
        geometry.as_input_shape((28, 27), 784)


@pytest.mark.parametrize("seed", [0, 1])
def test_conv_forward_matches_plain_loops(seed):
    pre, w = make_input(seed), make_weight(seed)
    _, cur, spk, cnt = conv_forward(pre, w)
    for b in range(pre.shape[0]):
        ref_cur = plain_conv_current(pre[b], w, IN_SHAPE)
        np.testing.assert_array_equal(cur[b], ref_cur)
        ref = plain_lif_from_current(ref_cur, F32(VTH_CONV))
        np.testing.assert_array_equal(spk[b], ref)
    assert 0 < (cnt > 0).mean() < 1  # some fire, some stay silent: both paths of algorithm.md §3.16 run
    # torch twin, bit-equal
    cur_t = rules_conv.conv_current(torch.from_numpy(pre).bool(), torch.from_numpy(w), IN_SHAPE)
    np.testing.assert_array_equal(cur_t.numpy(), cur)
    spk_t, cnt_t = rules_conv.conv_lif_scan(cur_t, VTH_CONV, TAU_M, TAU_S, T_R)
    np.testing.assert_array_equal(spk_t.numpy(), spk.astype(bool))
    np.testing.assert_array_equal(cnt_t.numpy(), cnt)


def test_conv_threshold_is_exact():
    # a constant current whose membrane reaches exactly vth must not fire (v > vth), a dense neuron would
    cur = np.zeros((1, 40, 1), F32)
    spk, _ = conv.conv_lif_scan(cur, 1.0, TAU_M, TAU_S, T_R)
    assert spk.sum() == 0
    thr = F32(0.37)
    ref = plain_lif_from_current(np.full((40, 1), F32(0.05)), thr)
    got, _ = conv.conv_lif_scan(np.full((1, 40, 1), F32(0.05)), float(thr), TAU_M, TAU_S, T_R)
    np.testing.assert_array_equal(got[0], ref)


def test_pool_forward_matches_plain_loops():
    pre, w = make_input(3), make_weight(3)
    _, _, spk, _ = conv_forward(pre, w)
    c, h, wd = geometry.conv_output_shape(IN_SHAPE, C_OUT, KERNEL)
    assert (h, wd) == (5, 4)
    shape = (c, 4, 4)  # crop to an even size for 2x2 windows
    sub = spk.reshape(2, STEPS, c, h, wd)[:, :, :, :4, :].reshape(2, STEPS, -1)
    cur = rules_conv.pool_current(torch.from_numpy(sub), shape, 2).numpy()
    img = sub.reshape(2, STEPS, c, 4, 4).astype(np.float64)
    for b in range(2):
        ref_cur = np.zeros((STEPS, c, 2, 2), np.float64)
        for X in range(2):
            for Y in range(2):
                for a in range(2):
                    for bb in range(2):
                        ref_cur[:, :, X, Y] += img[b, :, :, 2 * X + a, 2 * Y + bb]
        ref_cur = ref_cur.reshape(STEPS, -1).astype(F32)
        np.testing.assert_array_equal(cur[b], ref_cur)
        got, _ = lif_scan(cur[b:b + 1], VTH_POOL, TAU_M, TAU_S, T_R)
        np.testing.assert_array_equal(got[0], plain_lif_from_current(ref_cur, spike_threshold(VTH_POOL)))
        got_t, _ = lif_scan_torch(torch.from_numpy(cur[b:b + 1]), VTH_POOL, TAU_M, TAU_S, T_R)
        np.testing.assert_array_equal(got_t[0].numpy(), got[0].astype(bool))


# --------------------------------------------------------------------------------------------- backward
def brute_conv(pre, post, w, delta, vth):
    """Per-position algorithm.md §3.16 for one sample: (sigma [n_post], G [O, C, k, k], preDelta [n_pre]) in float64."""
    c_in, h, wd = IN_SHAPE
    c_out, _, k, _ = w.shape
    ho, wo = h - k + 1, wd - k + 1
    post_t, pre_t = times_of(post), times_of(pre)
    o_post = post.sum(0)
    o_pre = pre.sum(0)
    sigma = np.zeros(c_out * ho * wo)
    g = np.zeros(w.shape)
    pre_delta = np.zeros(c_in * h * wd)
    for o in range(c_out):
        for x in range(ho):
            for y in range(wo):
                i = o * ho * wo + x * wo + y
                conns = [(c, a, b, c * h * wd + (x + a) * wd + (y + b))
                         for c in range(c_in) for a in range(k) for b in range(k)]
                es = {j: e_pair(post_t[i], pre_t[j]) for (_, _, _, j) in conns}
                s = 0.0
                for c, a, b, j in conns:
                    s += float(w[o, c, a, b]) * (es[j] / o_post[i] if o_post[i] > 0 else 0.5)
                sigma[i] = s / vth
                for c, a, b, j in conns:
                    g[o, c, a, b] += es[j] * (1 + sigma[i]) * delta[i]
                    ratio = es[j] / o_pre[j] if (o_post[i] > 0 and o_pre[j] > 0) else 1.0
                    pre_delta[j] += delta[i] * float(w[o, c, a, b]) * ratio
    return sigma, g, pre_delta


@pytest.mark.parametrize("seed", [0, 5])
def test_conv_gradients_match_brute_force(seed):
    pre, w = make_input(seed), make_weight(seed)
    csr, cur, spk, cnt = conv_forward(pre, w)
    batch, n_post = cnt.shape
    rng = np.random.default_rng(seed + 7)
    delta = rng.normal(size=(batch, n_post)) * (rng.random((batch, n_post)) < 0.7)
    samples = np.arange(batch)
    kmat, side = spsp_readout(spk, cur, samples, T_R, TAU_M, TAU_S)
    wt = torch.from_numpy(w)
    sigma = rules_conv.conv_side_effect(torch.from_numpy(side), torch.from_numpy(cnt), wt, VTH_CONV)
    coef = torch.from_numpy(delta) * (1.0 + sigma)
    pre_counts = pre.sum(1).astype(np.int64)
    g = conv.conv_weight_gradient(kmat, coef.numpy(), samples, csr, cnt, pre_counts, IN_SHAPE, w.shape)
    pd = conv.conv_effect_ratio_error(kmat, torch.from_numpy(delta), wt, samples, csr, torch.from_numpy(cnt),
                                      torch.from_numpy(pre_counts), IN_SHAPE)
    # torch twins, in float64 read-outs for a tight comparison
    k64 = torch.from_numpy(kmat).to(torch.float64)
    pre_t = torch.from_numpy(pre)
    g_t = rules_conv.conv_weight_gradient(k64, coef, pre_t, torch.from_numpy(cnt), torch.from_numpy(pre_counts),
                                          IN_SHAPE, w.shape)
    pd_t = rules_conv.conv_effect_ratio_error(k64, torch.from_numpy(delta), wt, pre_t, torch.from_numpy(cnt),
                                              torch.from_numpy(pre_counts), IN_SHAPE)
    g_ref = np.zeros(w.shape)
    for b in range(batch):
        s_ref, g_b, pd_ref = brute_conv(pre[b], spk[b], w, delta[b], VTH_CONV)
        g_ref += g_b
        np.testing.assert_allclose(sigma[b].numpy(), s_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(pd[b].numpy(), pd_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(pd_t[b].numpy(), pd_ref, rtol=1e-5, atol=1e-6)
    scale = np.abs(g_ref).max()
    np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-6 * scale)
    np.testing.assert_allclose(g_t.numpy(), g_ref, rtol=1e-5, atol=1e-6 * scale)
    # plain error (effect_ratio = false) is the transposed convolution of delta
    plain = rules_conv.conv_plain_error(torch.from_numpy(delta), wt, IN_SHAPE)
    ref_plain = np.zeros_like(plain.numpy())
    for b in range(batch):
        for o in range(C_OUT):
            for x in range(5):
                for y in range(4):
                    i = o * 20 + x * 4 + y
                    for c in range(2):
                        for a in range(3):
                            for bb in range(3):
                                ref_plain[b, c * 42 + (x + a) * 6 + y + bb] += delta[b, i] * w[o, c, a, bb]
    np.testing.assert_allclose(plain.numpy(), ref_plain, rtol=1e-12, atol=1e-12)


def test_pool_error_matches_brute_force():
    rng = np.random.default_rng(11)
    shape, window = (2, 4, 6), 2
    n_in = 48
    pre = (rng.random((2, STEPS, n_in)) < 0.3).astype(np.uint8)
    pre[:, 0] = 0
    pre[1, :, 5] = 0  # a silent child
    pre[0, :, [0, 1, 6, 7]] = 0  # all four children of pool neuron 0: a silent pool neuron
    cur = rules_conv.pool_current(torch.from_numpy(pre), shape, window).numpy()
    post, cnt = lif_scan(cur, 1.9, TAU_M, TAU_S, T_R)
    assert 0 < (cnt > 0).mean() < 1
    kmat, _ = spsp_readout(post, cur, np.arange(2), T_R, TAU_M, TAU_S)
    delta = rng.normal(size=cnt.shape)
    pre_counts = pre.sum(1).astype(np.int64)
    effect = rules_conv.pool_effect(torch.from_numpy(kmat), torch.from_numpy(pre), shape, window)
    got = rules_conv.pool_error(effect, torch.from_numpy(delta), torch.from_numpy(cnt), torch.from_numpy(pre_counts),
                          shape, window)
    plain = rules_conv.pool_error(None, torch.from_numpy(delta), torch.from_numpy(cnt), torch.from_numpy(pre_counts),
                            shape, window)
    for b in range(2):
        post_t, pre_t = times_of(post[b]), times_of(pre[b])
        ref = np.zeros(n_in)
        ref_plain = np.zeros(n_in)
        for c in range(2):
            for x in range(4):
                for y in range(6):
                    p = c * 24 + x * 6 + y
                    q = c * 6 + (x // 2) * 3 + y // 2
                    ratio = (e_pair(post_t[q], pre_t[p]) / pre_counts[b, p]
                             if cnt[b, q] > 0 and pre_counts[b, p] > 0 else 1.0)
                    ref[p] = delta[b, q] / 4 * ratio  # no division by the pool threshold
                    ref_plain[p] = delta[b, q] / 4
        np.testing.assert_allclose(got[b].numpy(), ref, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(plain[b].numpy(), ref_plain, rtol=0, atol=1e-15)


def test_conv_regularizer_per_kernel():
    rng = np.random.default_rng(2)
    w = torch.from_numpy((rng.random((3, 2, 3, 3)) * 4 - 2).astype(F32))
    reg = RegularizerSpec(lam=10.0, beta=0.04, weight_limit=8.0)
    got = rules_conv.conv_regularizer_grad(w, reg).numpy()
    wn = w.numpy().astype(np.float64)
    for o in range(3):
        s = ((wn[o] / 8.0) ** 2).sum() / (2 * 9)  # mean over c_in * k^2 entries of one output kernel
        np.testing.assert_allclose(got[o], 10.0 * 0.04 * (wn[o] / 8.0) * math.exp(0.04 * (s - 1)), rtol=1e-6)
    assert not rules_conv.conv_regularizer_grad(w, RegularizerSpec(lam=0.0, beta=0.0)).any()
