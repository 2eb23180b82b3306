"""The output stage of the backward pass (docs/algorithm.md §3.2-1..5, §3.14) in one kernel, one program per
sample, without reading anything back:

* the dead-zone error of the true counts, times the sample's boost weight: `w_b (o - y) [|o - y| > margin]`;
* the silent-label replacement: if the label neuron is silent, its synthetic regular train (codes `vals` at steps
  `times`) and its count are written into the copies of the output trains and counts;
* the logged cost with the (modified) counts: `sum (o' - y)^2 [|o' - y| > margin]`.

Labels are checked before a step (`Network.backward_pass`, or once per split by the trainer). A label outside
`[0, n)` that reaches the kernels anyway touches no memory outside its sample's rows: every load and store it
indexes is masked. Such a sample is treated as having no label neuron: every output neuron gets the undesired count
as its target, no synthetic train is written, and `gamma` has no label term (only neurons that fired count).

And the lateral-inhibition factor `gamma` of the output layer (docs/algorithm.md §3.6), from its read-out `K` and
(modified) trains:
`E[l, j] = sum_tau K[tau, l] P[tau, j]` accumulated in float64, then the ratios and the sum over `l`.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit(do_not_specialize=["n_times", "steps"])
def output_stage_kernel(codes_ptr, counts_ptr, true_counts_ptr, labels_ptr, weights_ptr, times_ptr, vals_ptr,
                        loss_ptr, delta_ptr, cost_ptr, n_times, steps, n, BN: tl.constexpr, BT: tl.constexpr):
    # loss = (desired, undesired, margin) float64
    b = tl.program_id(0).to(tl.int64)
    lab = tl.load(labels_ptr + b)
    cols = tl.arange(0, BN)
    cm = cols < n
    desired = tl.load(loss_ptr)
    undesired = tl.load(loss_ptr + 1)
    margin = tl.load(loss_ptr + 2)
    y = tl.where(cols == lab, desired, undesired)
    o = tl.load(true_counts_ptr + b * n + cols, mask=cm, other=0)
    diff = o.to(tl.float64) - y
    err = tl.where(tl.abs(diff) > margin, diff, 0.0)
    tl.store(delta_ptr + b * n + cols, err * tl.load(weights_ptr + b), mask=cm)
    # silent label: the synthetic train and its count (none for a label outside [0, n): masked, see the docstring)
    lab_ok = (lab >= 0) & (lab < n)
    count = tl.load(true_counts_ptr + b * n + lab, mask=lab_ok, other=1)
    k = tl.arange(0, BT)
    km = k < n_times
    lab_k = tl.zeros([BT], dtype=tl.int64) + lab
    write = km & ((tl.zeros([BT], dtype=tl.int64) + count) == 0) & (lab_k >= 0) & (lab_k < n)
    t = tl.load(times_ptr + k, mask=km, other=0)
    v = tl.load(vals_ptr + k, mask=km, other=0)
    tl.store(codes_ptr + b * steps * n + t * n + lab_k, v, mask=write)
    o_mod = tl.where((cols == lab) & (o == 0), n_times, o)
    tl.store(counts_ptr + b * n + cols, o_mod, mask=cm)
    diff_mod = o_mod.to(tl.float64) - y
    err_mod = tl.where(tl.abs(diff_mod) > margin, diff_mod, 0.0)
    tl.store(cost_ptr + b, tl.sum(tl.where(cm, err_mod * err_mod, 0.0), axis=0))


@triton.jit(do_not_specialize=["steps"])
def lateral_factor_kernel(k_ptr, codes_ptr, counts_ptr, labels_ptr, gamma_ptr, const_ptr, steps, n,
                          BN: tl.constexpr):
    # const = (1 / vth, w0^2) float64
    b = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BN)
    cm = cols < n
    e = tl.zeros([BN, BN], dtype=tl.float64)  # [post l, pre j]
    for tau in range(0, steps):
        kv = tl.load(k_ptr + (b * steps + tau) * n + cols, mask=cm, other=0.0).to(tl.float64)
        p = (tl.load(codes_ptr + (b * steps + tau) * n + cols, mask=cm, other=0) != 0).to(tl.float64)
        e += kv[:, None] * p[None, :]
    inv_vth = tl.load(const_ptr)
    w0_sq = tl.load(const_ptr + 1)
    o = tl.load(counts_ptr + b * n + cols, mask=cm, other=0).to(tl.float64)
    lab = tl.load(labels_ptr + b)  # only compared with the columns: a label outside [0, n) matches none
    o_l = o[:, None]
    o_j = o[None, :]
    rho_jl = tl.where((o_l > 0) & (o_j > 0), e / tl.maximum(o_j, 1.0), 1.0)  # e_{l|j} / o_j at [l, j]
    rho_lj = tl.trans(rho_jl)  # e_{j|l} / o_l at [l, j]
    d = tl.where((o > 0) | (cols == lab), 1.0, 0.0) * inv_vth
    off_diag = (cols[:, None] != cols[None, :]) & cm[:, None] & cm[None, :]
    terms = tl.where(off_diag, rho_jl * rho_lj * d[:, None], 0.0)
    total = tl.sum(terms, axis=0) * d
    tl.store(gamma_ptr + b * n + cols, 1.0 / (1.0 - w0_sq * total), mask=cm)
