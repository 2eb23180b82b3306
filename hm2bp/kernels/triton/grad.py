"""Event-driven weight gradients (docs/algorithm.md §3.2-9, §3.16) over the pre spikes, and the conv layers' effect
sums from the same walk: float64 accumulation in a fixed order, no atomics.

The gradient of a layer fed by spikes is `G[j, i] = sum_b coef_b[i] E_b[i, j]` with `E_b[i, j] = sum_{t: P[b,t,j]}
K[b, t, i]` (+ 0.1 for a silent post i and an active pre j). A dense product walks all `B T n_pre` entries of the
0/1 raster; here each pre neuron walks only its own spikes:

* `column_lists_kernel` turns a raster (bool, or int16 codes) into per-(sample, pre neuron) lists of the steps at
  which the neuron fired, ascending, and their counts (a prefix sum down each column of a `[BT, BJ]` tile; the
  positions follow from the raster alone, so the lists are the same on every run);
* `dense_grad_kernel`: one program per (pre neuron j, tile of posts, segment of samples) sums, for every sample of
  its segment with a spike of j, the rows of `K` at those steps (`Ksum`, float64, the sample's spikes in step
  order, `S` at a time), and adds `coef_b * (Ksum + 0.1 [o_i = 0])` to its float64 accumulator; it writes one
  partial gradient per segment, which the finishing kernel (`hm2bp.kernels.triton.optim.finish_dense_kernel`) adds
  in segment order. Segments keep the rows of `K` that concurrent programs read within the L2 cache and bound the
  serial work of a program. When one tile holds all posts (an output layer) the same walk gives the error to the
  layer below with effect ratios (`EFFECT`: `Ksum` is the sample's S-PSP column `e_{.|j}`);
* `conv_grad_kernel`: one program per (sample, input channel, block of `PB` input pixels) does the same for a conv
  layer: for a pixel with spikes, `Ksum` over the post neurons its kernel window reaches (`[c_out, k*k]`), the
  partial weight gradient `coef * (Ksum + 0.1 [o = 0])`, and (`EFFECT`) the pixel's effect sum
  `sum dcoef W Ksum` of algorithm.md §3.16; partials per program, summed in program order by the caller.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit(do_not_specialize=["batch", "steps"])
def column_lists_kernel(spk_ptr, list_ptr, count_ptr, batch, steps, n, BT: tl.constexpr, BJ: tl.constexpr):
    # lists [B, n, steps] (int16 or int32 step indices, valid up to the count), counts [B, n] int32
    b = tl.program_id(0).to(tl.int64)
    jo = tl.program_id(1) * BJ + tl.arange(0, BJ)
    jm = jo < n
    tt = tl.arange(0, BT)
    running = tl.zeros([BJ], dtype=tl.int32)
    for t0 in range(0, steps, BT):
        t = t0 + tt
        m = (t < steps)[:, None] & jm[None, :]
        v = (tl.load(spk_ptr + (b * steps + t)[:, None] * n + jo[None, :], mask=m, other=0) != 0) & m
        pos = running[None, :] + tl.cumsum(v.to(tl.int32), axis=0) - 1
        dest = (b * n + jo)[None, :] * steps + pos
        tl.store(list_ptr + dest, (t[:, None] + pos * 0).to(list_ptr.dtype.element_ty), mask=v)
        running += tl.sum(v.to(tl.int32), axis=0)
    tl.store(count_ptr + b * n + jo, running, mask=jm)


@triton.jit(do_not_specialize=["batch", "steps", "seg"])
def dense_grad_kernel(list_ptr, count_ptr, k_ptr, coef_ptr, post_count_ptr, silent_ptr, delta_ptr, wt_ptr, part_ptr,
                      effect_ptr, batch, steps, seg, n_pre, n_post, S: tl.constexpr, BI: tl.constexpr,
                      EFFECT: tl.constexpr):
    # part[segment, j, i] = sum_{b in segment} coef[b, i] (sum_{t: P[b,t,j]} K[b, t, i] + e0 [o_bi = 0] [o_bj > 0]),
    # e0 = silent[0] (0.1, float64: a scalar argument would be float32). EFFECT (one tile holds every post): also
    # preDelta[b, j] of algorithm.md §3.2-8 (the rule of `dense_effect_kernel`), W^T = wt [n_pre, n_post]:
    #   sum_i [o_i > 0] delta_i W_ij Ksum_i / o_j (o_j > 0) + sum_i [o_i = 0] delta_i W_ij
    #   + [o_j = 0] sum_i [o_i > 0] delta_i W_ij
    e0 = tl.load(silent_ptr)
    j = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BI + tl.arange(0, BI)
    cm = cols < n_post
    sg = tl.program_id(2)
    kk = tl.arange(0, S)
    acc = tl.zeros([BI], dtype=tl.float64)
    if EFFECT:
        w = tl.load(wt_ptr + j * n_post + cols, mask=cm, other=0.0).to(tl.float64)
    for b in range(sg * seg, tl.minimum(sg * seg + seg, batch)):
        b64 = tl.cast(b, tl.int64)
        cnt = tl.load(count_ptr + b64 * n_pre + j)
        total = tl.zeros([BI], dtype=tl.float64)
        fired = tl.load(post_count_ptr + b64 * n_post + cols, mask=cm, other=0) > 0
        if cnt > 0:
            ksum = tl.zeros([S, BI], dtype=tl.float64)
            for k0 in range(0, cnt, S):
                km = k0 + kk < cnt
                t = tl.load(list_ptr + (b64 * n_pre + j) * steps + k0 + kk, mask=km, other=0).to(tl.int64)
                kv = tl.load(k_ptr + (b64 * steps + t)[:, None] * n_post + cols[None, :],
                             mask=km[:, None] & cm[None, :], other=0.0)
                ksum += kv.to(tl.float64)
            total = tl.sum(ksum, axis=0)
            c = tl.load(coef_ptr + b64 * n_post + cols, mask=cm, other=0.0)
            acc += c * (total + tl.where(fired | ~cm, 0.0, e0))
        if EFFECT:
            d = tl.load(delta_ptr + b64 * n_post + cols, mask=cm, other=0.0)
            d_fired = tl.where(fired, d, 0.0)
            ratio = tl.sum(d_fired * w * total, axis=0) / tl.maximum(tl.cast(cnt, tl.float64), 1.0)
            plain_silent = tl.sum(tl.where(fired, 0.0, d) * w, axis=0)
            plain_fired = tl.sum(d_fired * w, axis=0)
            tl.store(effect_ptr + b64 * n_pre + j, tl.where(cnt > 0, ratio, plain_fired) + plain_silent)
    tl.store(part_ptr + (tl.cast(sg, tl.int64) * n_pre + j) * n_post + cols, acc, mask=cm)


@triton.jit(do_not_specialize=["batch", "steps"])
def conv_grad_kernel(list_ptr, count_ptr, k_ptr, coef_ptr, post_count_ptr, silent_ptr, dcoef_ptr, w_ptr, part_ptr,
                     effect_ptr, batch, steps, c_in, h, wd, c_out, ho, wo, ks, PB: tl.constexpr, EFFECT: tl.constexpr,
                     S: tl.constexpr, BO: tl.constexpr, KK: tl.constexpr):
    # part[(b, c, pixel block), o, tap] (float64 [c_out, k*k] per program, taps a*k + b'); effect[b, j] (EFFECT);
    # e0 = silent[0] as in dense_grad_kernel
    e0 = tl.load(silent_ptr)
    b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1)
    blk = tl.program_id(2)
    area = h * wd
    n_pre = c_in * area
    n_post = c_out * ho * wo
    o = tl.arange(0, BO)
    tap = tl.arange(0, KK)
    u = tap // ks
    v = tap % ks
    om = o < c_out
    tm = tap < ks * ks
    kk = tl.arange(0, S)
    acc = tl.zeros([BO, KK], dtype=tl.float64)
    for p in range(blk * PB, tl.minimum(blk * PB + PB, area)):
        j = c * area + p
        cnt = tl.load(count_ptr + b * n_pre + j)
        if cnt > 0:
            x = p // wd - u
            y = p % wd - v
            valid = tm & (x >= 0) & (x < ho) & (y >= 0) & (y < wo)
            i = o[:, None] * (ho * wo) + (x * wo + y)[None, :]
            m2 = om[:, None] & valid[None, :]
            ksum = tl.zeros([S, BO, KK], dtype=tl.float64)
            for k0 in range(0, cnt, S):
                km = k0 + kk < cnt
                t = tl.load(list_ptr + (b * n_pre + j) * steps + k0 + kk, mask=km, other=0).to(tl.int64)
                kv = tl.load(k_ptr + (b * steps + t)[:, None, None] * n_post + i[None, :, :],
                             mask=km[:, None, None] & m2[None, :, :], other=0.0)
                ksum += kv.to(tl.float64)
            total = tl.sum(ksum, axis=0)
            silent = tl.load(post_count_ptr + b * n_post + i, mask=m2, other=1) == 0
            cf = tl.load(coef_ptr + b * n_post + i, mask=m2, other=0.0)
            acc += cf * (total + tl.where(silent, e0, 0.0))
            if EFFECT:
                dc = tl.load(dcoef_ptr + b * n_post + i, mask=m2, other=0.0)
                wv = tl.load(w_ptr + (o[:, None] * c_in + c) * (ks * ks) + tap[None, :], mask=m2, other=0.0)
                tl.store(effect_ptr + b * n_pre + j, tl.sum(tl.sum(dc * wv.to(tl.float64) * total, axis=1), axis=0))
    part = ((b * c_in + c) * tl.num_programs(2) + blk) * (c_out * ks * ks)
    tl.store(part_ptr + part + o[:, None] * (ks * ks) + tap[None, :], acc, mask=om[:, None] & tm[None, :])
