"""Fused optimiser updates (docs/algorithm.md §3.9): one elementwise pass per layer over weight, gradient and
state, in the float32 operation order of the numba kernels of `hm2bp.optim` (correctly rounded division and square
root, no fused multiply-add)."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def adam_kernel(w_ptr, g_ptr, m_ptr, v_ptr, n, b1, b1c, b2, b2c, lr, c1, c2, eps, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(g_ptr + offs, mask=mask, other=0.0)
    m = b1 * tl.load(m_ptr + offs, mask=mask, other=0.0) + b1c * g
    v = b2 * tl.load(v_ptr + offs, mask=mask, other=0.0) + (b2c * g) * g
    w = tl.load(w_ptr + offs, mask=mask, other=0.0)
    w = w - tl.div_rn(lr * tl.div_rn(m, c1), tl.sqrt_rn(tl.div_rn(v, c2)) + eps)
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)
    tl.store(w_ptr + offs, w, mask=mask)


@triton.jit
def sgd_kernel(w_ptr, g_ptr, u_ptr, n, mu, lr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    u = mu * tl.load(u_ptr + offs, mask=mask, other=0.0) + lr * tl.load(g_ptr + offs, mask=mask, other=0.0)
    tl.store(u_ptr + offs, u, mask=mask)
    tl.store(w_ptr + offs, tl.load(w_ptr + offs, mask=mask, other=0.0) - u, mask=mask)
