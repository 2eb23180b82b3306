"""Back-propagated error sums with effect ratios (docs/algorithm.md §3.2-8, §3.16) of dense and pool layers, gathered
at the pre spikes (conv layers: `hm2bp.kernels.triton.grad.conv_grad_kernel`, from the same walk as their gradient).

`effect[b, j] = sum_tau [pre spike (b, tau, j)] sum_i dcoef[b, i] K[b, tau, i] W[i, j]`, accumulated in float64,
without forming `[B, T, n_pre]`: one program per tile of (samples x pre neurons) `[SB, BJ]` walks the steps and
skips those where none of its pre neurons spiked.
* dense: `W` `[n_post, n_pre]` given by strides (a dense layer stores `W^T`);
* pool: `e[b, p] = sum_tau K[b, tau, parent(p)] [pre spike (b, tau, p)]` (the S-PSP of a pool neuron from each of
  its children; weight 1).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _post_tile(delta_ptr, post_count_ptr, w_ptr, w_stride_i, w_stride_j, r64, rm, jo, jm, i0, n_post,
               BI: tl.constexpr):
    # post neurons i0 .. i0 + BI of a dense layer's tile: (their indices [BI], the [SB, BI] mask, delta, whether
    # each fired (o_i > 0), and W[i, j] for the tile's pre neurons, float64 [BI, BJ])
    io = i0 + tl.arange(0, BI)
    im = io < n_post
    um = rm[:, None] & im[None, :]
    d = tl.load(delta_ptr + r64[:, None] * n_post + io[None, :], mask=um, other=0.0)
    active = tl.load(post_count_ptr + r64[:, None] * n_post + io[None, :], mask=um, other=0) > 0
    w = tl.load(w_ptr + io[:, None] * w_stride_i + jo[None, :] * w_stride_j, mask=im[:, None] & jm[None, :],
                other=0.0).to(tl.float64)
    return io, um, d, active, w


@triton.jit(do_not_specialize=["batch", "steps"])
def dense_effect_kernel(k_ptr, delta_ptr, post_count_ptr, pre_count_ptr, w_ptr, w_stride_i, w_stride_j, pre_ptr,
                        out_ptr, batch, steps, n_post, n_pre, SB: tl.constexpr, BI: tl.constexpr, BJ: tl.constexpr):
    # preDelta of a dense layer with effect ratios (algorithm.md §3.2-8), the whole rule in one pass:
    #   effect_j = sum_tau [pre spike] sum_i [o_i > 0] delta_i K[tau, i] W_ij
    #   preDelta_j = effect_j / o_j (o_j > 0) + sum_i [o_i = 0] delta_i W_ij + [o_j = 0] sum_i [o_i > 0] delta_i W_ij
    rows = tl.program_id(0) * SB + tl.arange(0, SB)
    rm = rows < batch
    r64 = rows.to(tl.int64)
    jo = tl.program_id(1) * BJ + tl.arange(0, BJ)
    jm = jo < n_pre
    mask = rm[:, None] & jm[None, :]
    acc = tl.zeros([SB, BJ], dtype=tl.float64)
    for tau in range(1, steps):
        row = r64 * steps + tau  # [SB]
        p = tl.load(pre_ptr + row[:, None] * n_pre + jo[None, :], mask=mask, other=0) != 0
        if tl.max(tl.max(p.to(tl.int32), axis=1), axis=0) > 0:
            m = tl.zeros([SB, BJ], dtype=tl.float64)
            for i0 in range(0, n_post, BI):
                io, um, d, active, w = _post_tile(delta_ptr, post_count_ptr, w_ptr, w_stride_i, w_stride_j, r64, rm,
                                                  jo, jm, i0, n_post, BI)
                u = tl.where(active, d, 0.0) * \
                    tl.load(k_ptr + row[:, None] * n_post + io[None, :], mask=um, other=0.0).to(tl.float64)
                m += tl.sum(u[:, :, None] * w[None, :, :], axis=1)
            acc += tl.where(p, m, 0.0)
    # the plain (ratio 1) parts: silent post neurons, and every post neuron of a silent pre neuron
    plain_silent = tl.zeros([SB, BJ], dtype=tl.float64)
    plain_active = tl.zeros([SB, BJ], dtype=tl.float64)
    for i0 in range(0, n_post, BI):
        _, _, d, active, w = _post_tile(delta_ptr, post_count_ptr, w_ptr, w_stride_i, w_stride_j, r64, rm, jo, jm, i0,
                                        n_post, BI)
        plain_silent += tl.sum(tl.where(active, 0.0, d)[:, :, None] * w[None, :, :], axis=1)
        plain_active += tl.sum(tl.where(active, d, 0.0)[:, :, None] * w[None, :, :], axis=1)
    o_pre = tl.load(pre_count_ptr + r64[:, None] * n_pre + jo[None, :], mask=mask, other=0)
    pre_active = o_pre > 0
    ratio = tl.where(pre_active, acc / tl.maximum(o_pre, 1).to(tl.float64), 0.0)
    out = ratio + plain_silent + tl.where(pre_active, 0.0, plain_active)
    tl.store(out_ptr + r64[:, None] * n_pre + jo[None, :], out, mask=mask)


@triton.jit(do_not_specialize=["batch", "steps"])
def pool_effect_kernel(k_ptr, pre_ptr, out_ptr, batch, steps, c, h, wd, window, SB: tl.constexpr, BJ: tl.constexpr):
    rows = tl.program_id(0) * SB + tl.arange(0, SB)
    r64 = rows.to(tl.int64)
    jo = tl.program_id(1) * BJ + tl.arange(0, BJ)
    n_pre = c * h * wd
    ho = h // window
    wo = wd // window
    n_pool = c * ho * wo
    mask = (rows < batch)[:, None] & (jo < n_pre)[None, :]
    parent = ((jo // (h * wd)) * ho * wo + ((jo // wd) % h // window) * wo + (jo % wd) // window)[None, :]
    acc = tl.zeros([SB, BJ], dtype=tl.float64)
    for tau in range(1, steps):
        row = (r64 * steps + tau)[:, None]
        p = (tl.load(pre_ptr + row * n_pre + jo[None, :], mask=mask, other=0) != 0) & mask
        kv = tl.load(k_ptr + row * n_pool + parent, mask=p, other=0.0)
        acc += tl.where(p, kv.to(tl.float64), 0.0)
    tl.store(out_ptr + r64[:, None] * n_pre + jo[None, :], acc, mask=mask)
