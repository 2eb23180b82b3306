"""S-PSP `e_{i|j}` of `docs/algorithm.md` §3.1 in the E-free read-out form of §3.17.

algorithm.md §3.1: for post neuron i with spike times t_1 < ... < t_n (steps) and a pre spike at tau,
`q = tau + T_R` (pre spike delayed by the refractory period), per post spike k:
`r_k = 1` (k = 1) else `t_{k-1} + T_R`, `s_k = t_k - r_k`, window `lb_k = max(1, int(t_k - 4 tau_m))`;
the pre spike counts iff `lb_k <= tau < t_k` and `q <= t_k`, with `u = t_k - q` and
`eps = exp(-max(u - s_k, 0)/tau_s) kappa [exp(-min(s_k, u)/tau_m) - exp(-min(s_k, u)/tau_s)]`,
`kappa = 1 / (1 - tau_s/tau_m)`; `e_{i|j} = sum_k sum_tau eps`; 0.1 if post i is silent and pre j is not.

algorithm.md §3.17: with `a_m = exp(-1/tau_m)`, `a_s = exp(-1/tau_s)`, `Q_k = lb_k + T_R`, `hi_k = t_k` (`t_k - 1` if
T_R = 0):
* case A, `q in [max(r_k, Q_k), hi_k]` (u <= s_k):  `kappa sum_q (a_m^{t_k-q} - a_s^{t_k-q})`;
* case B, `q in [Q_k, min(r_k - 1, hi_k)]` (u > s_k): `kappa (a_m^{s_k} - a_s^{s_k}) sum_q a_s^{r_k-q}`.
A range sum `sum_{q=lo}^{hi} a^{t-q}` is written as a coefficient `a^{t-hi}` at `hi` and `-a^{t-lo+1}` at
`lo - 1` of a read-out row `C` (<= 4 time points per post spike), applied to the exponential trace of the pre
train. Moving the trace filter onto `C` (the adjoint form, docs/algorithm.md §3.17) gives, per sample,

    E[i, j] = sum_tau K[tau, i] P[tau, j],   K[tau, i] = sum_{t >= tau + T_R} (C_m[t, i] a_m^{t-tau-T_R}
                                                                         + C_s[t, i] a_s^{t-tau-T_R}),

one backward-in-time scan per post neuron (float64; K stored as float32). `K[0] = 0` (pre spikes at tau = 0
never count). The 0.1 fallback for silent post neurons is applied by the callers (rank one per sample).
Since the forward current is `R = P W^T`, the side-effect sum is `sum_j W_ij E_ij = sum_tau K[tau, i] R[tau, i]`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit

from hm2bp.lif import raster_to_csr

SILENT_POST_EFFECT = 0.1  # e_{i|j} for a silent post i and an active pre j (algorithm.md §3.1, cuBase.cu:78-79)


def _window(tau_m: float) -> int:
    """Integer look-back w with `max(1, int(t - 4 tau_m)) == max(1, t - w)` for integer t: the reference
    computes `t_k - 4*TAU_M` in float32 and truncates toward zero, i.e. w = ceil(4 tau_m)."""
    return int(math.ceil(float(np.float32(4.0) * np.float32(tau_m))))


@njit(cache=True, nogil=True)
def _spsp_readout(indptr, idx, n, current, samples, refractory, tau_m, tau_s, window, k_out, side):
    steps = current.shape[1]
    kappa = 1.0 / (1.0 - tau_s / tau_m)
    a_m = math.exp(-1.0 / tau_m)
    a_s = math.exp(-1.0 / tau_s)
    last = np.empty(n, np.int64)
    slot = np.empty(n, np.int64)  # compact index of each post neuron that spikes in this sample
    active = np.empty(n, np.int64)
    k_m = np.empty(n, np.float64)
    k_s = np.empty(n, np.float64)
    acc = np.empty(n, np.float64)
    val = np.empty(n, np.float64)
    # <= 4 read-out events per post spike; size the buffers once (no re-allocation inside the loops)
    most = 0
    for a in range(samples.shape[0]):
        b = samples[a]
        most = max(most, indptr[(b + 1) * steps] - indptr[b * steps])
    ev_q = np.empty(4 * most, np.int64)
    ev_i = np.empty(4 * most, np.int64)
    ev_m = np.empty(4 * most, np.float64)
    ev_s = np.empty(4 * most, np.float64)
    per_q = np.zeros(steps + 1, np.int64)
    # exp(-d / tau) for the integer lags d in [-steps, steps] (all arguments below are integer lags)
    pow_m = np.empty(2 * steps + 2, np.float64)
    pow_s = np.empty(2 * steps + 2, np.float64)
    for d in range(-steps - 1, steps + 1):
        pow_m[d + steps + 1] = math.exp(-d / tau_m)
        pow_s[d + steps + 1] = math.exp(-d / tau_s)
    o = steps + 1
    for a in range(samples.shape[0]):
        b = samples[a]
        # 1. read-out coefficients C_m, C_s as events (position q, neuron i, value), in time order of the spikes
        n_ev = 0
        n_act = 0
        last[:] = -1
        for t in range(steps):
            for kk in range(indptr[b * steps + t], indptr[b * steps + t + 1]):
                i = idx[kk]
                if last[i] < 0:
                    slot[i] = n_act
                    active[n_act] = i
                    n_act += 1
                    rk = 1
                else:
                    rk = last[i] + refractory
                last[i] = t
                c = slot[i]
                sk = t - rk
                lb = max(1, t - window)
                qlo = lb + refractory
                qhi = t if refractory >= 1 else t - 1
                lo = max(rk, qlo)
                if lo <= qhi:  # case A
                    ev_q[n_ev] = qhi
                    ev_i[n_ev] = c
                    ev_m[n_ev] = kappa * pow_m[o + t - qhi]
                    ev_s[n_ev] = -kappa * pow_s[o + t - qhi]
                    ev_q[n_ev + 1] = lo - 1
                    ev_i[n_ev + 1] = c
                    ev_m[n_ev + 1] = -kappa * pow_m[o + t - lo + 1]
                    ev_s[n_ev + 1] = kappa * pow_s[o + t - lo + 1]
                    n_ev += 2
                hi = min(rk - 1, qhi)
                if qlo <= hi:  # case B
                    coef = kappa * (pow_m[o + sk] - pow_s[o + sk])
                    ev_q[n_ev] = hi
                    ev_i[n_ev] = c
                    ev_m[n_ev] = 0.0
                    ev_s[n_ev] = coef * pow_s[o + rk - hi]
                    ev_q[n_ev + 1] = qlo - 1
                    ev_i[n_ev + 1] = c
                    ev_m[n_ev + 1] = 0.0
                    ev_s[n_ev + 1] = -coef * pow_s[o + rk - qlo + 1]
                    n_ev += 2
        if n_ev == 0:
            side[a, :] = 0.0
            continue
        # 2. bucket the events by position q (counting sort)
        per_q[:] = 0
        top = 0
        for e in range(n_ev):
            per_q[ev_q[e] + 1] += 1
            top = max(top, ev_q[e])
        for q in range(steps):
            per_q[q + 1] += per_q[q]
        order = np.empty(n_ev, np.int64)
        fill = per_q[:steps].copy()
        for e in range(n_ev):
            order[fill[ev_q[e]]] = e
            fill[ev_q[e]] += 1
        # 3. backward scan K[q] = C[q] + a K[q+1] over the spiking neurons; K'[tau] = K[tau + T_R], tau >= 1
        k_m[:n_act] = 0.0
        k_s[:n_act] = 0.0
        acc[:n_act] = 0.0
        for q in range(top, refractory, -1):
            for e in range(per_q[q], per_q[q + 1]):
                ev = order[e]
                k_m[ev_i[ev]] += ev_m[ev]
                k_s[ev_i[ev]] += ev_s[ev]
            k_row = k_out[a, q - refractory]
            c_row = current[b, q - refractory]
            for c in range(n_act):  # contiguous, vectorised
                val[c] = k_m[c] + k_s[c]
                k_m[c] *= a_m
                k_s[c] *= a_s
            for c in range(n_act):  # gather / scatter by neuron
                i = active[c]
                k_row[i] = np.float32(val[c])
                acc[c] += val[c] * c_row[i]
        side[a, :] = 0.0
        for c in range(n_act):
            side[a, active[c]] = acc[c]


def spsp_readout(post: np.ndarray, current: np.ndarray, samples: np.ndarray, refractory: int, tau_m: float,
                 tau_s: float, post_csr: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read-out matrices `K` and side-effect sums for the samples `samples` of a batch.

    `post` uint8 `[B, T, n_post]` post spike raster (after any silent-label replacement), `current` float32
    `[B, T, n_post]` the forward current `R = P W^T` of this layer; `post_csr` = `hm2bp.lif.raster_to_csr(post)`
    when already known. Returns `K` float32 `[len(samples), T, n_post]` with `E_b = K_b^T P_b` (see module
    docstring) and `side` float64 `[len(samples), n_post]`, `side[b, i] = sum_j W_ij E_b[i, j]` without the
    silent-post fallback.
    """
    samples = np.ascontiguousarray(samples, dtype=np.int64)
    steps, n = post.shape[1], post.shape[2]
    if post_csr is None:
        post_csr = raster_to_csr(post)
    k_out = np.zeros((samples.shape[0], steps, n), np.float32)
    side = np.zeros((samples.shape[0], n), np.float64)
    _spsp_readout(post_csr[0], post_csr[1], n, np.ascontiguousarray(current, dtype=np.float32), samples,
                  int(refractory), float(tau_m), float(tau_s), _window(tau_m), k_out, side)
    return k_out, side


def spsp_readout_torch(post: torch.Tensor, current: torch.Tensor, refractory: int, tau_m: float,
                       tau_s: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`spsp_readout` for all samples of torch tensors on any device (no loop over time: the backward scan is a
    product with the `[T, T]` filter matrices). `post` bool `[B, T, n]`, `current` float32 `[B, T, n]`;
    returns `K` float32 `[B, T, n]`, `side` float64 `[B, n]`."""
    batch, steps, n = post.shape
    dev = post.device
    f64 = torch.float64
    t_ax = torch.arange(steps, device=dev).view(1, steps, 1)
    stamped = torch.where(post, t_ax, torch.full_like(t_ax, -1)).expand(batch, steps, n)
    last = torch.cummax(stamped, dim=1).values
    prev = torch.cat([torch.full_like(last[:, :1], -1), last[:, :-1]], dim=1)  # last post spike before t
    t = t_ax.expand(batch, steps, n)
    r = torch.where(prev >= 0, prev + refractory, torch.ones_like(prev))
    s = (t - r).to(f64)
    lb = torch.clamp(torch.trunc(t.to(f64) - _window(tau_m)), min=1).to(torch.int64)
    qlo = lb + refractory
    qhi = t if refractory >= 1 else t - 1
    kappa = 1.0 / (1.0 - tau_s / tau_m)
    c_m = torch.zeros(batch, steps, n, dtype=f64, device=dev)
    c_s = torch.zeros_like(c_m)

    def put(c: torch.Tensor, pos: torch.Tensor, val: torch.Tensor, valid: torch.Tensor) -> None:
        c.scatter_add_(1, torch.where(valid, pos, torch.zeros_like(pos)), torch.where(valid, val, 0.0))

    lo_a = torch.maximum(r, qlo)
    valid_a = post & (lo_a <= qhi)
    tf = t.to(f64)
    put(c_m, qhi, kappa * torch.exp(-(tf - qhi) / tau_m), valid_a)
    put(c_m, lo_a - 1, -kappa * torch.exp(-(tf - lo_a + 1) / tau_m), valid_a)
    put(c_s, qhi, -kappa * torch.exp(-(tf - qhi) / tau_s), valid_a)
    put(c_s, lo_a - 1, kappa * torch.exp(-(tf - lo_a + 1) / tau_s), valid_a)
    hi_b = torch.minimum(r - 1, qhi)
    valid_b = post & (qlo <= hi_b)
    coef = kappa * (torch.exp(-s / tau_m) - torch.exp(-s / tau_s))
    rf = r.to(f64)
    put(c_s, hi_b, coef * torch.exp(-(rf - hi_b) / tau_s), valid_b)
    put(c_s, qlo - 1, -coef * torch.exp(-(rf - qlo + 1) / tau_s), valid_b)

    lag = (torch.arange(steps, device=dev).view(1, steps) - torch.arange(steps, device=dev).view(steps, 1)).to(f64)
    ahead = lag >= 0
    filt_m = torch.where(ahead, torch.exp(-lag.clamp(min=0) / tau_m), 0.0)  # [q, t] = a_m^{t-q}, t >= q
    filt_s = torch.where(ahead, torch.exp(-lag.clamp(min=0) / tau_s), 0.0)
    k_full = torch.matmul(filt_m, c_m) + torch.matmul(filt_s, c_s)  # [B, q, n]
    k = torch.zeros_like(k_full)
    if refractory + 1 < steps:
        k[:, 1:steps - refractory] = k_full[:, refractory + 1:]
    side = (k * current.to(f64)).sum(1)
    return k.to(torch.float32), side
