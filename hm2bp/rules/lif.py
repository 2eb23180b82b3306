"""Discrete-time LIF forward pass of `docs/algorithm.md` §1, as pure torch functions (any device).

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

These are the readable reference; the kernel sets (`hm2bp.kernels`) compute the same bit for bit.
Shapes: `[batch, time, unit]`; time in steps.
"""

from __future__ import annotations

import numpy as np
import torch


def spike_threshold(vth: float) -> np.float32:
    """The float32 firing threshold `vth - 1e-6` of algorithm.md §1.7 (computed in double, stored as float)."""
    return np.float32(float(np.float32(vth)) - 1e-6)


def input_current(spikes: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Feed-forward current `R[b, t, i] = sum_j W[i, j] s_j(b, t)` (algorithm.md §1 "fast input response"), float32
    `[B, T, n_post]` from `spikes [B, T, n_pre]` and `weight [n_post, n_pre]`: summed in float64, rounded once."""
    return torch.matmul(spikes.to(torch.float64), weight.to(torch.float64).T).to(torch.float32)


def lif_scan(current: torch.Tensor, vth: float, tau_m: float, tau_s: float, refractory: int,
             lateral: float = 0.0, epsilon: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Simulate algorithm.md §1 for every sample: `current` float32 `[B, T, n]` -> (spikes bool `[B, T, n]`, counts
    int64 `[B, n]`). `lateral` = w0 of the fixed inhibition (0 = none). Fires iff `v > float32(vth - 1e-6)`, or iff
    `v > float32(vth)` with `epsilon=False` (the reference's conv layers). A Python loop over steps: the readable
    reference, not fast."""
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
