"""S-PSP read-out `K` and side-effect sums (docs/algorithm.md §3.1 in the form of §3.17), one backward scan.

One program per tile of (samples x post neurons) `[SB, BN]` walks `q = T-1 .. T_R+1` once. The read-out
coefficients of every post spike (at most four events: start and end of the range where a delayed pre spike
counts, split where the previous refractory period ends, cut by the `W`-step window) are found on the fly from the
spike codes of
`hm2bp.kernels.triton.lif` at three fixed offsets (`q`, `q + 1 - T_R`, `q + D`) and the next two spike times
(registers). The two trace accumulators run in float64, `K[q - T_R]` is stored as float32 and `side = sum_tau K R`
accumulates in float64 against the layer's forward current `R`: O(T n) work, no `[T, T]` filters, no float64
`[B, T, n]` temporaries.

The float64 operations and their order are those of the numba kernel (`hm2bp.spsp`): the same powers (tables
built on the host with `math.exp`), the same events added in the same order, so `K` and `side` are bit-equal.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit(do_not_specialize=["batch", "steps", "refractory", "window"])
def spsp_readout_kernel(code_ptr, cur_ptr, k_ptr, side_ptr, pow_m_ptr, pow_s_ptr, const_ptr, batch, steps, n,
                        refractory, window, SB: tl.constexpr, BN: tl.constexpr):
    # pow_m[d] = exp(-d / tau_m), pow_s[d] = exp(-d / tau_s) for d = 0 .. max(steps, D) + 1; const = (kappa, a_m, a_s)
    # (float64 tensors: scalar float arguments of a Triton kernel are float32)
    rows = tl.program_id(0) * SB + tl.arange(0, SB)
    cols = tl.program_id(1) * BN + tl.arange(0, BN)
    mask = (rows < batch)[:, None] & (cols < n)[None, :]
    base = rows.to(tl.int64)[:, None] * steps * n + cols[None, :]
    idx0 = tl.zeros([SB, BN], dtype=tl.int32)  # for tensor-valued bounds of scalar step indices
    far = window - refractory + 1  # D: a spike at q + D ends its window at q
    big = steps + far + 2  # "no spike" for the next-spike registers
    k_m = tl.zeros([SB, BN], dtype=tl.float64)
    k_s = tl.zeros([SB, BN], dtype=tl.float64)
    side = tl.zeros([SB, BN], dtype=tl.float64)
    nxt = tl.full([SB, BN], big, dtype=tl.int32)  # lowest spike time > q
    nxt2 = tl.full([SB, BN], big, dtype=tl.int32)  # the one after it
    zero_k = tl.zeros([SB, BN], dtype=tl.float32)
    # rows tau = 0 and tau > T-1-T_R get no contribution
    tl.store(k_ptr + base, zero_k, mask=mask)
    for tau in range(steps - refractory, steps):
        tl.store(k_ptr + base + tau * n, zero_k, mask=mask)
    kappa = tl.load(const_ptr)
    a_m = tl.load(const_ptr + 1)
    a_s = tl.load(const_ptr + 2)
    p_m1 = tl.load(pow_m_ptr + 1)
    p_s1 = tl.load(pow_s_ptr + 1)
    p_mf = tl.load(pow_m_ptr + far)
    p_sf = tl.load(pow_s_ptr + far)
    for i in range(0, steps - 1 - refractory):
        q = steps - 1 - i
        c_q = tl.load(code_ptr + base + q * n, mask=mask, other=0).to(tl.int32)
        # 1. range start of the spike at q (T_R >= 1) or q + 1 (T_R = 0)
        if refractory >= 1:
            e1 = c_q != 0
            e1_m = kappa
            e1_s = -kappa
            pair_next = nxt
        else:
            c_n = tl.load(code_ptr + base + (q + 1) * n, mask=mask & (idx0 + q + 1 < steps), other=0)
            e1 = c_n != 0
            e1_m = kappa * p_m1
            e1_s = -kappa * p_s1
            pair_next = nxt2
        # 2./3. the spike t_prev = q + 1 - T_R and its successor t: the end of t's refractory-free range at r - 1 = q
        # (if t_prev >= t - W) and the start of its pre-refractory range (if t_prev >= t - W + 1)
        t_prev = q + 1 - refractory
        c_p = tl.load(code_ptr + base + t_prev * n, mask=mask, other=0)
        pair = (c_p != 0) & (pair_next < steps)
        s_pair = pair_next - t_prev - refractory
        s_pair = tl.where(pair, s_pair, 0)
        e2 = pair & (t_prev >= pair_next - window)
        e3 = pair & (t_prev >= pair_next - window + 1) & (t_prev >= 2)
        pm_s1 = tl.load(pow_m_ptr + s_pair + 1, mask=mask, other=0.0)
        ps_s1 = tl.load(pow_s_ptr + s_pair + 1, mask=mask, other=0.0)
        pm_s = tl.load(pow_m_ptr + s_pair, mask=mask, other=0.0)
        ps_s = tl.load(pow_s_ptr + s_pair, mask=mask, other=0.0)
        e2_m = -kappa * pm_s1
        e2_s = kappa * ps_s1
        coef3 = kappa * (pm_s - ps_s)
        e3_s = coef3 * p_s1
        # 4./5. the spike at q + D, whose window ends at q: range end of its refractory-free range (first spike or
        # s >= D) or of its pre-refractory range (s <= D - 2)
        in_range = idx0 + q + far < steps
        c_f = tl.load(code_ptr + base + (q + far) * n, mask=mask & in_range, other=0).to(tl.int32)
        e4 = (c_f != 0) & (c_f >= far)
        e5 = (c_f != 0) & (c_f <= far - 2)
        s_far = tl.where(e5, c_f, 0)
        pm_f = tl.load(pow_m_ptr + s_far, mask=mask, other=0.0)
        ps_f = tl.load(pow_s_ptr + s_far, mask=mask, other=0.0)
        ps_fr = tl.load(pow_s_ptr + far - s_far, mask=mask, other=0.0)
        e4_m = -kappa * p_mf
        e4_s = kappa * p_sf
        coef5 = kappa * (pm_f - ps_f)
        e5_s = -coef5 * ps_fr
        # events of q in the numba kernel's order (by spike time, then range start before range end)
        k_m = tl.where(e1, k_m + e1_m, k_m)
        k_s = tl.where(e1, k_s + e1_s, k_s)
        k_m = tl.where(e2, k_m + e2_m, k_m)
        k_s = tl.where(e2, k_s + e2_s, k_s)
        k_m = tl.where(e3, k_m + 0.0, k_m)
        k_s = tl.where(e3, k_s + e3_s, k_s)
        k_m = tl.where(e4, k_m + e4_m, k_m)
        k_s = tl.where(e4, k_s + e4_s, k_s)
        k_m = tl.where(e5, k_m + 0.0, k_m)
        k_s = tl.where(e5, k_s + e5_s, k_s)
        val = k_m + k_s
        tau = q - refractory
        tl.store(k_ptr + base + tau * n, val.to(tl.float32), mask=mask)
        r = tl.load(cur_ptr + base + tau * n, mask=mask, other=0.0)
        side += val * r.to(tl.float64)
        k_m = k_m * a_m
        k_s = k_s * a_s
        spike = c_q != 0
        nxt2 = tl.where(spike, nxt, nxt2)
        nxt = tl.where(spike, q, nxt)
    tl.store(side_ptr + rows.to(tl.int64)[:, None] * n + cols[None, :], side, mask=mask)
