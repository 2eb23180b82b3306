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

one backward-in-time scan per post neuron (float64; K stored as float32; `spsp_readout` writes the scan as a
product with `[T, T]` filter matrices, the kernel sets as a loop). `K[0] = 0` (pre spikes at tau = 0
never count). The 0.1 fallback for silent post neurons is applied by the callers (rank one per sample).
Since the forward current is `R = P W^T`, the side-effect sum is `sum_j W_ij E_ij = sum_tau K[tau, i] R[tau, i]`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

SILENT_POST_EFFECT = 0.1  # e_{i|j} for a silent post i and an active pre j (algorithm.md §3.1, cuBase.cu:78-79)


def window(tau_m: float) -> int:
    """Integer look-back w with `max(1, int(t - 4 tau_m)) == max(1, t - w)` for integer t: the reference
    computes `t_k - 4*TAU_M` in float32 and truncates toward zero, i.e. w = ceil(4 tau_m)."""
    return int(math.ceil(float(np.float32(4.0) * np.float32(tau_m))))


def spsp_readout(post: torch.Tensor, current: torch.Tensor, refractory: int, tau_m: float,
                 tau_s: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Read-out matrices `K` and side-effect sums of every sample (any device; no loop over time: the backward scan
    is a product with the `[T, T]` filter matrices).

    `post` bool `[B, T, n_post]` post spike raster (after any silent-label replacement), `current` float32
    `[B, T, n_post]` the forward current `R = P W^T` of this layer. Returns `K` float32 `[B, T, n_post]` with
    `E_b = K_b^T P_b` (see module docstring) and `side` float64 `[B, n_post]`, `side[b, i] = sum_j W_ij E_b[i, j]`
    without the silent-post fallback."""
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
    lb = torch.clamp(torch.trunc(t.to(f64) - window(tau_m)), min=1).to(torch.int64)
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
