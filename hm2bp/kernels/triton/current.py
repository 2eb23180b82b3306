"""The forward current of a dense layer from its pre spikes' lists (docs/algorithm.md §1, "fast input response").

Spike rasters are sparse (MNIST input ~2.5 % dense), so instead of a float64 product with the whole 0/1 raster
the current of each (sample, step) row is the sum of the rows of `W^T` of the pre neurons that spiked, `S` at a
time (S independent loads in flight), in float64, rounded once to float32: the numba kernel's value
(`hm2bp.kernels.numba.lif.input_current`), bit for bit. A float64 sum of float32 weights is exact, hence the same in
any order, unless a partial sum exceeds about 2^29 times the smallest weight in it (docs/trainer.md, "Forward").
`compact_rows_kernel` turns a raster (bool or int16 codes) into per-row spike lists first (a prefix sum per row, no
host synchronisation: the lists have the capacity of a full row).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit(do_not_specialize=["n_rows"])
def compact_rows_kernel(spk_ptr, idx_ptr, cnt_ptr, n_rows, n, RB: tl.constexpr, BN: tl.constexpr):
    cols = tl.arange(0, BN)
    for rr in range(0, RB):
        r = tl.program_id(0) * RB + rr
        if r < n_rows:
            r64 = r.to(tl.int64)
            offset = 0
            for c0 in range(0, n, BN):
                c = c0 + cols
                v = (tl.load(spk_ptr + r64 * n + c, mask=c < n, other=0) != 0) & (c < n)
                pos = offset + tl.cumsum(v.to(tl.int32), axis=0) - 1
                tl.store(idx_ptr + r64 * n + pos, c.to(idx_ptr.dtype.element_ty), mask=v)
                offset += tl.sum(v.to(tl.int32), axis=0)
            tl.store(cnt_ptr + r64, offset)


@triton.jit(do_not_specialize=["n_rows"])
def sparse_current_kernel(idx_ptr, cnt_ptr, wt_ptr, out_ptr, n_rows, n_pre, n_post, RB: tl.constexpr,
                          S: tl.constexpr, BN: tl.constexpr):
    # per row: the W^T rows of its pre spikes, S at a time (S independent loads in flight), summed in float64
    cols = tl.program_id(1) * BN + tl.arange(0, BN)
    cm = cols < n_post
    kk = tl.arange(0, S)
    for rr in range(0, RB):
        r = tl.program_id(0) * RB + rr
        if r < n_rows:
            r64 = r.to(tl.int64)
            acc = tl.zeros([S, BN], dtype=tl.float64)
            cnt = tl.load(cnt_ptr + r64)
            for k0 in range(0, cnt, S):
                km = k0 + kk < cnt
                j = tl.load(idx_ptr + r64 * n_pre + k0 + kk, mask=km, other=0).to(tl.int64)
                acc += tl.load(wt_ptr + j[:, None] * n_post + cols[None, :], mask=km[:, None] & cm[None, :],
                               other=0.0).to(tl.float64)
            tl.store(out_ptr + r64 * n_post + cols, tl.sum(acc, axis=0).to(tl.float32), mask=cm)
