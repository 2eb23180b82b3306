"""LIF scan (docs/algorithm.md §1) with the whole time loop inside one kernel per layer.

One program per tile of (samples x neurons), `[SB, BN]`: membrane `v`, synaptic state `ep`, the refractory counter
and the last spike time stay in registers for all `T` steps. The kernel writes, per step, a spike *code* (int16)
and the spike counts. With lateral inhibition a tile holds all neurons of its samples, and the number of spikes of
the previous step is reduced per sample inside the kernel. Small layers (an output layer of 10) put several samples
in one tile so that a program still has enough lanes.

Spike code of neuron i at step t: 0 without a spike, else `min(s, D)` where `s = t - r` is the time since the end
of the previous refractory period (`r = t_prev + T_R`) and `D = W - T_R + 1` (`W` = S-PSP look-back window); a
first spike gets `D`. This is what the S-PSP read-out needs about every spike (docs/algorithm.md §3.1) without a
list of spike times.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit(do_not_specialize=["batch", "steps", "refractory", "cap"])
def lif_scan_kernel(cur_ptr, code_ptr, count_ptr, batch, steps, n, tau_m, tau_s, thr, w0, refractory, cap,
                    LATERAL: tl.constexpr, SB: tl.constexpr, BN: tl.constexpr):
    rows = tl.program_id(0) * SB + tl.arange(0, SB)
    cols = tl.program_id(1) * BN + tl.arange(0, BN)
    mask = (rows < batch)[:, None] & (cols < n)[None, :]
    base = rows.to(tl.int64)[:, None] * steps * n + cols[None, :]
    v = tl.zeros([SB, BN], dtype=tl.float32)
    ep = tl.zeros([SB, BN], dtype=tl.float32)
    t_ref = tl.zeros([SB, BN], dtype=tl.int32)
    last = tl.full([SB, BN], -1, dtype=tl.int32)
    count = tl.zeros([SB, BN], dtype=tl.int64)
    prev = tl.zeros([SB, BN], dtype=tl.int32)  # this neuron fired at t - 1
    fired_prev = tl.sum(prev, axis=1)  # spikes of the whole layer (per sample) at t - 1
    zero_f = tl.zeros([SB, BN], dtype=tl.float32)
    tl.store(code_ptr + base, tl.zeros([SB, BN], dtype=tl.int16), mask=mask)  # step 0 never fires
    # Step 0 only leaks a zero state (no input is integrated), so the loop starts at step 1 from zero.
    for t in range(1, steps):
        v = v - tl.div_rn(v, tau_m)
        ep = ep - tl.div_rn(ep, tau_s)
        r = tl.load(cur_ptr + base + (t - 1) * n, mask=mask, other=0.0)
        if LATERAL:
            others = (fired_prev[:, None] - prev).to(tl.float32)
            ep = ep + (r + (-w0) * others)
        else:
            ep = ep + r
        vv = v + tl.div_rn(ep, tau_s)
        refr = t_ref > 0
        vv = tl.where(refr, zero_f, vv)
        tr = tl.where(refr, t_ref - 1, t_ref)
        fire = (vv > thr) & mask
        s = tl.where(last >= 0, t - (last + refractory), cap)
        code = tl.where(fire, tl.minimum(s, cap), 0)
        tl.store(code_ptr + base + t * n, code.to(tl.int16), mask=mask)
        t_ref = tl.where(fire, refractory, tr)
        v = tl.where(fire, zero_f, vv)
        count += fire.to(tl.int64)
        last = tl.where(fire, t, last)
        prev = fire.to(tl.int32)
        if LATERAL:
            fired_prev = tl.sum(prev, axis=1)
    tl.store(count_ptr + rows.to(tl.int64)[:, None] * n + cols[None, :], count, mask=mask)
