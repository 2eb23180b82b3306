"""Discrete-time LIF forward pass of `docs/algorithm.md` §1, as pure functions.

Per neuron, float32, state zero at the start of every sample; for step `t = 0 .. T-1`:

    v  <- v  - v / tau_m          ep <- ep - ep / tau_s            (1. leak)
    if t == 0: no spike, next step                                  (2.)
    r  = R[t-1] + lat[t-1]        lat[t-1] = -w0 * (number of other same-layer spikes at t-1)   (3.)
    ep <- ep + r                                                    (4.)
    v  <- v + ep / tau_s                                            (5.)
    if t_ref > 0: v <- 0, t_ref <- t_ref - 1                         (6. after integration)
    spike iff v > float32(vth - 1e-6); then t_ref <- T_R, v <- 0     (7.)

`R[t] = W s(t)` is the feed-forward current caused by the pre spikes of step t (`input_current`). It is computed
as the correctly rounded float32 value of the exact sum (accumulated in float64), so it does not depend on the
summation order; the reference sums in float32 with cuBLAS, whose order is not specified. The lateral term is one
float32 product `-w0 * k` (exact for the reference's w0 = 1).

CPU arrays go through numba kernels; `*_torch` functions compute the same on any device (bit-equal on CPU).
Shapes: `[batch, time, unit]`; time in steps.
"""

from __future__ import annotations

import ctypes
import os
import sys

import numpy as np
import torch
from numba import njit

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_allocator_tuned = False


def _retain_freed_memory() -> None:
    """Let glibc keep freed blocks up to 64 MiB for reuse instead of returning them to the OS.

    A training chunk allocates ~25 MB of `[B, T, n]` arrays (currents, spikes, read-outs) and frees them; by default
    glibc serves blocks above its (adaptive) mmap threshold with fresh pages and trims freed heap memory, so every
    chunk page-faults its arrays in again (~450 faults per sample at batch 32: 15-25 % of the step, and they
    serialise the chunk threads). Done once, on the first numba forward call; process-wide; the peak memory is
    unchanged (freed memory is reused, not returned). Skipped off glibc, when the process set its own malloc
    tunables (`MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` / `GLIBC_TUNABLES`), or with `HM2BP_MALLOC_TUNING=0`.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return
    _allocator_tuned = True
    env = os.environ
    if (not sys.platform.startswith("linux") or env.get("HM2BP_MALLOC_TUNING", "1") == "0"
            or any(k in env for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"))):
        return
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return
    if mallopt(_M_MMAP_THRESHOLD, 64 << 20) or mallopt(_M_MMAP_THRESHOLD, 32 << 20):
        mallopt(_M_TRIM_THRESHOLD, 256 << 20)


def spike_threshold(vth: float) -> np.float32:
    """The float32 firing threshold `vth - 1e-6` of algorithm.md §1.7 (computed in double, stored as float)."""
    return np.float32(float(np.float32(vth)) - 1e-6)


# ------------------------------------------------------------------------------------------- sparse spike lists
@njit(cache=True, nogil=True)
def _raster_to_csr(raster: np.ndarray, words: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # `words` views each (sample, step) row as uint64 words: sparse rasters are mostly zero words, skipped whole.
    # `total` = number of non-zero entries (counted by numpy beforehand, so one pass over the raster suffices).
    batch, steps, units = raster.shape
    n_words = words.shape[2]
    indptr = np.zeros(batch * steps + 1, np.int64)
    counts = np.zeros((batch, units), np.int64)
    idx = np.empty(total, np.int32)
    k = 0
    for b in range(batch):
        cnt = counts[b]
        for t in range(steps):
            w_row = words[b, t]
            r_row = raster[b, t]
            for w in range(n_words):
                if w_row[w] != 0:
                    for j in range(8 * w, 8 * w + 8):
                        if r_row[j] != 0:
                            idx[k] = j
                            cnt[j] += 1
                            k += 1
            for j in range(8 * n_words, units):
                if r_row[j] != 0:
                    idx[k] = j
                    cnt[j] += 1
                    k += 1
            indptr[b * steps + t + 1] = k
    return indptr, idx, counts


def raster_to_csr(raster: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spike raster `[B, T, N]` (uint8/bool) -> (`indptr` int64 `[B*T+1]`, unit indices int32, counts int64
    `[B, N]`): the spikes of sample b at step t are `idx[indptr[b*T+t]:indptr[b*T+t+1]]`."""
    raster = np.ascontiguousarray(raster).view(np.uint8)
    batch, steps, units = raster.shape
    n_words = units // 8
    if units % 8 == 0:
        words = raster.view(np.uint64)
    else:
        words = np.ascontiguousarray(raster[:, :, :8 * n_words]).view(np.uint64)
    return _raster_to_csr(raster, words, np.count_nonzero(raster))


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
    _retain_freed_memory()
    return _input_current(indptr, idx, np.ascontiguousarray(weight_t), batch, steps)


def input_current_torch(spikes: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`input_current` for dense torch tensors on any device: `spikes [B, T, n_pre]`, `weight [n_post, n_pre]`."""
    return torch.matmul(spikes.to(torch.float64), weight.to(torch.float64).T).to(torch.float32)


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
                 lateral: float = 0.0) -> tuple[np.ndarray, np.ndarray, tuple]:
    """`lif_scan` plus the spikes as `raster_to_csr(spikes)` (indptr, idx, counts)."""
    spikes, counts = lif_scan(current, vth, tau_m, tau_s, refractory, lateral)
    return spikes, counts, raster_to_csr(spikes)


def lif_scan_torch(current: torch.Tensor, vth: float, tau_m: float, tau_s: float, refractory: int,
                   lateral: float = 0.0, epsilon: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """`lif_scan` with torch ops on any device (a Python loop over steps: the readable reference, not fast);
    bit-equal to the numba kernel on CPU. Returns (spikes bool `[B, T, n]`, counts int64 `[B, n]`)."""
    batch, steps, n = current.shape
    dev = current.device
    f32 = torch.float32
    # Divisors as full tensors: a division by a Python scalar may be turned into a reciprocal multiply.
    tm = torch.full((batch, n), float(np.float32(tau_m)), dtype=f32, device=dev)
    ts = torch.full((batch, n), float(np.float32(tau_s)), dtype=f32, device=dev)
    thr = torch.tensor(float(spike_threshold(vth) if epsilon else np.float32(vth)), dtype=f32, device=dev)
    w0 = torch.tensor(float(np.float32(lateral)), dtype=f32, device=dev)
    v = torch.zeros(batch, n, dtype=f32, device=dev)
    ep = torch.zeros_like(v)
    t_ref = torch.zeros(batch, n, dtype=torch.int64, device=dev)
    spikes = torch.zeros(batch, steps, n, dtype=torch.bool, device=dev)
    zero = torch.zeros((), dtype=f32, device=dev)
    for t in range(steps):
        v = v - v / tm
        ep = ep - ep / ts
        if t == 0:
            continue
        r = current[:, t - 1]
        if lateral != 0.0:
            prev = spikes[:, t - 1]
            others = prev.sum(1, keepdim=True) - prev.to(torch.int64)
            r = r + (-w0) * others.to(f32)
        ep = ep + r
        v = v + ep / ts
        refr = t_ref > 0
        v = torch.where(refr, zero, v)
        t_ref = torch.where(refr, t_ref - 1, t_ref)
        fire = v > thr
        spikes[:, t] = fire
        t_ref = torch.where(fire, torch.full_like(t_ref, int(refractory)), t_ref)
        v = torch.where(fire, zero, v)
    return spikes, spikes.sum(1)
