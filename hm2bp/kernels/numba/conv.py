"""Conv and pool layers of `docs/algorithm.md` §1 / §3.16 on CPU: numba kernels driven by the pre spikes' lists.

Dense convolutions of mostly-zero rasters are ~10x slower on a CPU than walking the spikes that exist: every kernel
here visits each pre spike `j = (c, px, py)` (`unit_position`) once and the outputs `(o, px - u, py - v)` its kernel
window reaches, in the same order in every kernel. The window loop is written out in each kernel: a shared walker
(offset ranges, or a list of taps) measured 5-25 % slower on the `mnist-cnn` layers. Each kernel computes what its
torch reference in `hm2bp.rules.conv` computes (the currents bit for bit: exact sums rounded once to float32).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit

from hm2bp.geometry import Shape3, conv_output_shape, pool_output_shape
from hm2bp.kernels.numba.csr import step_spikes
from hm2bp.kernels.numba.lif import lif_scan
from hm2bp.rules.conv import conv_pre_delta
from hm2bp.rules.spsp import SILENT_POST_EFFECT


@njit(inline="always")
def unit_position(j, area_in, wd, h):
    """Unit `j` of a `[C, h, wd]` layer (channel-major) as `(c, x, y)`; `area_in = h * wd`."""
    return j // area_in, (j // wd) % h, j % wd


# ------------------------------------------------------------------------------------------- forward current
@njit(cache=True, nogil=True)
def _conv_current(indptr, idx, w, batch, steps, h, wd, ho, wo, out):
    c_out, _, ks, _ = w.shape
    area_in = h * wd
    area_out = ho * wo
    acc = np.zeros(c_out * area_out, np.float64)
    for bt in range(batch * steps):
        start, stop = indptr[bt], indptr[bt + 1]
        if start == stop:
            continue
        acc[:] = 0.0
        for s in range(start, stop):
            c, px, py = unit_position(idx[s], area_in, wd, h)
            for u in range(ks):
                x = px - u
                if x < 0 or x >= ho:
                    continue
                for v in range(ks):
                    y = py - v
                    if y < 0 or y >= wo:
                        continue
                    base = x * wo + y
                    for o in range(c_out):
                        acc[o * area_out + base] += w[o, c, u, v]
        b, t = bt // steps, bt % steps
        for i in range(c_out * area_out):
            out[b, t, i] = np.float32(acc[i])


def conv_current(pre_csr: tuple, weight: np.ndarray, in_shape: Shape3, batch: int, steps: int) -> np.ndarray:
    """Conv forward current float32 `[B, T, c_out*H'*W']` from the pre spikes as CSR
    (`hm2bp.kernels.numba.csr.raster_to_csr`) and `weight [c_out, c_in, k, k]`; exact sum rounded once to float32."""
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    c_out, h_out, w_out = conv_output_shape(in_shape, weight.shape[0], weight.shape[2])
    out = np.zeros((batch, steps, c_out * h_out * w_out), np.float32)
    _conv_current(pre_csr[0], pre_csr[1], weight, batch, steps, int(in_shape[1]), int(in_shape[2]), h_out, w_out,
                  out)
    return out


def conv_lif_scan(current: np.ndarray, vth: float, tau_m: float, tau_s: float,
                  refractory: int) -> tuple[np.ndarray, np.ndarray]:
    """`hm2bp.kernels.numba.lif.lif_scan` with the conv threshold `v > vth` (no epsilon, exact for every vth):
    float32 `[B, T, n]` -> (spikes uint8 `[B, T, n]`, counts int64 `[B, n]`)."""
    return lif_scan(current, vth, tau_m, tau_s, refractory, epsilon=False)


# ------------------------------------------------------------------------------------------ weight gradient
@njit(cache=True, nogil=True)
def _conv_weight_gradient(k, coef, samples, indptr, idx, steps, post_counts, pre_counts, h, wd, ho, wo, g):
    c_out, _, ks, _ = g.shape
    area_in = h * wd
    area_out = ho * wo
    for a in range(samples.shape[0]):
        for t in range(1, steps):
            start, stop = step_spikes(indptr, samples[a], steps, t)
            for s in range(start, stop):
                c, px, py = unit_position(idx[s], area_in, wd, h)
                for u in range(ks):
                    x = px - u
                    if x < 0 or x >= ho:
                        continue
                    for v in range(ks):
                        y = py - v
                        if y < 0 or y >= wo:
                            continue
                        base = x * wo + y
                        for o in range(c_out):
                            i = o * area_out + base
                            g[o, c, u, v] += coef[a, i] * k[a, t, i]
        # e = 0.1 for a silent post and an active pre
        for j in range(pre_counts.shape[1]):
            if pre_counts[a, j] == 0:
                continue
            c, px, py = unit_position(j, area_in, wd, h)
            for u in range(ks):
                x = px - u
                if x < 0 or x >= ho:
                    continue
                for v in range(ks):
                    y = py - v
                    if y < 0 or y >= wo:
                        continue
                    base = x * wo + y
                    for o in range(c_out):
                        i = o * area_out + base
                        if post_counts[a, i] == 0:
                            g[o, c, u, v] += SILENT_POST_EFFECT * coef[a, i]


def conv_weight_gradient(k: np.ndarray, coef: np.ndarray, samples: np.ndarray, pre_csr: tuple,
                         post_counts: np.ndarray, pre_counts: np.ndarray, in_shape: Shape3,
                         weight_shape: tuple) -> np.ndarray:
    """`sum_a sum_{x,y} coef_a[i] e_a[i, j]` for every kernel entry: float64 `[c_out, c_in, k, k]`, summed (not
    averaged) over the samples `samples` of the batch.

    `k` float32 `[A, T, n_post]` read-outs of those samples, `coef [A, n_post]` (`delta (1 + sigma)`), `pre_csr`
    the pre spikes of the whole batch, `post_counts`/`pre_counts` `[A, n]` counts of those samples."""
    c_out, h_out, w_out = conv_output_shape(in_shape, weight_shape[0], weight_shape[2])
    g = np.zeros(tuple(int(v) for v in weight_shape), np.float64)
    _conv_weight_gradient(np.ascontiguousarray(k, dtype=np.float32), np.ascontiguousarray(coef, dtype=np.float64),
                          np.ascontiguousarray(samples, dtype=np.int64), pre_csr[0], pre_csr[1], k.shape[1],
                          np.ascontiguousarray(post_counts, dtype=np.int64),
                          np.ascontiguousarray(pre_counts, dtype=np.int64), int(in_shape[1]), int(in_shape[2]),
                          h_out, w_out, g)
    return g


# ----------------------------------------------------------------------------------- back-propagated error
@njit(cache=True, nogil=True)
def _conv_effect_sum(k, dcoef, w, samples, indptr, idx, steps, h, wd, ho, wo, out):
    c_out, _, ks, _ = w.shape
    area_in = h * wd
    area_out = ho * wo
    for a in range(samples.shape[0]):
        for t in range(1, steps):
            start, stop = step_spikes(indptr, samples[a], steps, t)
            for s in range(start, stop):
                j = idx[s]
                c, px, py = unit_position(j, area_in, wd, h)
                acc = 0.0
                for u in range(ks):
                    x = px - u
                    if x < 0 or x >= ho:
                        continue
                    for v in range(ks):
                        y = py - v
                        if y < 0 or y >= wo:
                            continue
                        base = x * wo + y
                        for o in range(c_out):
                            i = o * area_out + base
                            acc += dcoef[a, i] * k[a, t, i] * w[o, c, u, v]
                out[a, j] += acc


def conv_effect_ratio_error(k: np.ndarray, delta: torch.Tensor, weight: torch.Tensor, samples: np.ndarray,
                            pre_csr: tuple, post_counts: torch.Tensor, pre_counts: torch.Tensor,
                            in_shape: Shape3) -> torch.Tensor:
    """preDelta `[A, c_in*H*W]` float64 of a conv layer with effect ratios (algorithm.md §3.16). `delta [A, n_post]`
    float64 after the division by vth_conv; other arguments as in `conv_weight_gradient`."""
    w = weight.detach().cpu().numpy().astype(np.float32)
    out_shape = conv_output_shape(in_shape, w.shape[0], w.shape[2])
    dcoef = torch.where(post_counts > 0, delta, 0.0).numpy()
    out = np.zeros((k.shape[0], math.prod(in_shape)), np.float64)
    _conv_effect_sum(np.ascontiguousarray(k, dtype=np.float32), np.ascontiguousarray(dcoef), w,
                     np.ascontiguousarray(samples, dtype=np.int64), pre_csr[0], pre_csr[1], k.shape[1],
                     int(in_shape[1]), int(in_shape[2]), out_shape[1], out_shape[2], out)
    return conv_pre_delta(torch.from_numpy(out), delta, weight.cpu(), post_counts, pre_counts, out_shape)


# ------------------------------------------------------------------------------------------------------ pool
@njit(inline="always")
def pool_parent(j, area_in, wd, h, window, ho, wo):
    """The pool neuron `(c, x // w, y // w)` of input unit `j` of a `[C, h, wd]` layer (`area_in = h * wd`), as its
    index in the `[C, ho, wo]` pool layer."""
    c, x, y = unit_position(j, area_in, wd, h)
    return (c * ho + x // window) * wo + y // window


@njit(cache=True, nogil=True)
def _pool_current(indptr, idx, batch, steps, h, wd, window, ho, wo, out):
    area_in = h * wd
    for bt in range(batch * steps):
        b, t = bt // steps, bt % steps
        row = out[b, t]
        for s in range(indptr[bt], indptr[bt + 1]):
            row[pool_parent(idx[s], area_in, wd, h, window, ho, wo)] += np.float32(1.0)


def pool_current(pre_csr: tuple, in_shape: Shape3, window: int, batch: int, steps: int) -> np.ndarray:
    """Pool forward current float32 `[B, T, C*(H/w)*(W/w)]` from the pre spikes as CSR: the spikes in each
    non-overlapping `w x w` window (small integers, exact; `hm2bp.rules.conv.pool_current`)."""
    c, h_out, w_out = pool_output_shape(in_shape, window)
    out = np.zeros((batch, steps, c * h_out * w_out), np.float32)
    _pool_current(pre_csr[0], pre_csr[1], batch, steps, int(in_shape[1]), int(in_shape[2]), int(window), h_out, w_out,
                  out)
    return out


@njit(cache=True, nogil=True)
def _pool_effect(k, samples, indptr, idx, steps, h, wd, window, ho, wo, out):
    area_in = h * wd
    for a in range(samples.shape[0]):
        for t in range(1, steps):
            start, stop = step_spikes(indptr, samples[a], steps, t)
            k_row = k[a, t]
            for s in range(start, stop):
                p = idx[s]
                out[a, p] += np.float64(k_row[pool_parent(p, area_in, wd, h, window, ho, wo)])


def pool_effect(k: np.ndarray, samples: np.ndarray, pre_csr: tuple, in_shape: Shape3, window: int) -> torch.Tensor:
    """`e_{q|p} = sum_tau K[tau, q] P[tau, p]` for every child p of pool neuron q, float64 `[A, C*H*W]`, from the
    pre spikes' lists (`hm2bp.rules.conv.pool_effect`; summed over time in order, in float64). `k` float32
    `[A, T, n_pool]` read-outs of the samples `samples` of the batch."""
    _, h_out, w_out = pool_output_shape(in_shape, window)
    out = np.zeros((k.shape[0], int(np.prod(in_shape))), np.float64)
    _pool_effect(np.ascontiguousarray(k, dtype=np.float32), np.ascontiguousarray(samples, dtype=np.int64),
                 pre_csr[0], pre_csr[1], k.shape[1], int(in_shape[1]), int(in_shape[2]), int(window), h_out, w_out,
                 out)
    return torch.from_numpy(out)
