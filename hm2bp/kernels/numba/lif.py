"""The LIF forward of `docs/algorithm.md` §1 as numba kernels: the input current from the pre spikes' lists and the
scan over time, bit-equal to the torch reference `hm2bp.rules.lif` (same float32 operations in the same order).

Shapes: `[batch, time, unit]`; time in steps.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from hm2bp.kernels.numba.csr import raster_to_csr
from hm2bp.kernels.numba.memory import retain_freed_memory
from hm2bp.rules.lif import spike_threshold


# ------------------------------------------------------------------------------------------------ input current
@njit(cache=True, nogil=True)
def _input_current(indptr: np.ndarray, idx: np.ndarray, w_t: np.ndarray, batch: int, steps: int) -> np.ndarray:
    n_post = w_t.shape[1]
    out = np.zeros((batch, steps, n_post), np.float32)
    acc = np.empty(n_post, np.float64)
    for bt in range(batch * steps):
        start, stop = indptr[bt], indptr[bt + 1]
        if start == stop:
            continue
        acc[:] = 0.0
        for k in range(start, stop):
            row = w_t[idx[k]]
            for i in range(n_post):
                acc[i] += row[i]
        b, t = bt // steps, bt % steps
        for i in range(n_post):
            out[b, t, i] = np.float32(acc[i])
    return out


def input_current(indptr: np.ndarray, idx: np.ndarray, weight_t: np.ndarray, batch: int, steps: int) -> np.ndarray:
    """Feed-forward current `R[b, t, i] = sum_j W[i, j] s_j(b, t)` (algorithm.md §1 "fast input response"), float32
    `[B, T, n_post]`, from the pre spikes as CSR (`raster_to_csr`) and the **transposed** weight
    `weight_t = W^T` `[n_pre, n_post]` (float32 or float64; accumulated in float64, rounded once)."""
    retain_freed_memory()
    return _input_current(indptr, idx, np.ascontiguousarray(weight_t), batch, steps)


# ---------------------------------------------------------------------------------------------------- LIF scan
@njit(cache=True, nogil=True)
def _lif_scan(current, tau_m, tau_s, thr, refractory, w0, spikes, counts):
    # Branch-free inner loops (selects) so that LLVM vectorises them over neurons; the float32 operations and
    # their order are exactly those of algorithm.md §1.
    batch, steps, n = current.shape
    v = np.zeros(n, np.float32)
    ep = np.zeros(n, np.float32)
    t_ref = np.zeros(n, np.int32)
    zero = np.float32(0.0)
    t_r = np.int32(refractory)
    for b in range(batch):
        v[:] = zero
        ep[:] = zero
        t_ref[:] = 0
        fired_prev = 0
        cnt = counts[b]
        for t in range(steps):
            for i in range(n):
                v[i] = v[i] - v[i] / tau_m
                ep[i] = ep[i] - ep[i] / tau_s
            if t == 0:
                continue
            cur = current[b, t - 1]
            out = spikes[b, t]
            fired = 0
            if w0 != zero:
                prev = spikes[b, t - 1]
                for i in range(n):
                    others = np.float32(fired_prev - np.int64(prev[i]))
                    ep[i] = ep[i] + (cur[i] + (-w0) * others)
            else:
                for i in range(n):
                    ep[i] = ep[i] + cur[i]
            for i in range(n):
                vv = v[i] + ep[i] / tau_s
                refr = t_ref[i] > 0
                vv = zero if refr else vv
                tr = t_ref[i] - 1 if refr else t_ref[i]
                fire = vv > thr
                out[i] = np.uint8(1) if fire else np.uint8(0)
                t_ref[i] = t_r if fire else tr
                v[i] = zero if fire else vv
                cnt[i] += 1 if fire else 0
                fired += 1 if fire else 0
            fired_prev = fired


def lif_scan(current: np.ndarray, vth: float, tau_m: float, tau_s: float, refractory: int,
             lateral: float = 0.0, epsilon: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Simulate algorithm.md §1 for every sample: `current` float32 `[B, T, n]` (from `input_current`) -> (spikes uint8
    `[B, T, n]`, counts int64 `[B, n]`). `lateral` = w0 of the fixed inhibition (0 = none). Fires iff
    `v > float32(vth - 1e-6)`, or iff `v > float32(vth)` with `epsilon=False` (the reference's conv layers)."""
    current = np.ascontiguousarray(current, dtype=np.float32)
    spikes = np.zeros(current.shape, np.uint8)
    counts = np.zeros((current.shape[0], current.shape[2]), np.int64)
    thr = spike_threshold(vth) if epsilon else np.float32(vth)
    _lif_scan(current, np.float32(tau_m), np.float32(tau_s), thr, int(refractory), np.float32(lateral), spikes,
              counts)
    return spikes, counts


def lif_scan_csr(current: np.ndarray, vth: float, tau_m: float, tau_s: float, refractory: int,
                 lateral: float = 0.0, epsilon: bool = True) -> tuple[np.ndarray, np.ndarray, tuple]:
    """`lif_scan` plus the spikes as `raster_to_csr(spikes)` (indptr, idx, counts)."""
    spikes, counts = lif_scan(current, vth, tau_m, tau_s, refractory, lateral, epsilon)
    return spikes, counts, raster_to_csr(spikes)
