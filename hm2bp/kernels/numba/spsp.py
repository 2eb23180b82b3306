"""The S-PSP read-out of `docs/algorithm.md` §3.1 / §3.17 as a numba kernel driven by the post spikes' lists: per
sample, the read-out coefficients of each post spike as events, bucketed by time, and one backward scan over the
neurons that spiked (the torch reference, `hm2bp.rules.spsp.spsp_readout`, writes the scan as a matrix product).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from hm2bp.kernels.numba.csr import raster_to_csr, step_spikes
from hm2bp.rules.spsp import window


@njit(inline="always")
def _readout_events(indptr, idx, b, steps, refractory, look_back, kappa, pow_m, pow_s, last, slot, active, ev_q,
                    ev_i, ev_m, ev_s):
    # The read-out coefficients of sample b's post spikes as events (<= 4 per spike, in spike order): cases A and B
    # of the module docstring. Fills `slot`/`active` (compact indices of the neurons that spike); returns
    # (events, active neurons). `pow_m`/`pow_s` are exp(-d / tau) at offset steps + 1.
    o = steps + 1
    n_ev = 0
    n_act = 0
    last[:] = -1
    for t in range(steps):
        start, stop = step_spikes(indptr, b, steps, t)
        for kk in range(start, stop):
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
            lb = max(1, t - look_back)
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
    return n_ev, n_act


@njit(cache=True, nogil=True)
def _spsp_readout(indptr, idx, n, current, samples, refractory, tau_m, tau_s, look_back, k_out, side):
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
    for a in range(samples.shape[0]):
        b = samples[a]
        # 1. read-out coefficients C_m, C_s as events (position q, neuron i, value), in time order of the spikes
        n_ev, n_act = _readout_events(indptr, idx, b, steps, refractory, look_back, kappa, pow_m, pow_s, last, slot,
                                      active, ev_q, ev_i, ev_m, ev_s)
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
    `[B, T, n_post]` the forward current `R = P W^T` of this layer; `post_csr` = `raster_to_csr(post)`
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
                  int(refractory), float(tau_m), float(tau_s), window(tau_m), k_out, side)
    return k_out, side
