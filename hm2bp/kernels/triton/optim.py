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


@triton.jit(do_not_specialize=["n_parts", "batch"])
def finish_dense_kernel(part_ptr, n_parts, w_ptr, sumsq_ptr, reg_ptr, out_ptr, flag_ptr, n_pre, n_post, batch,
                        HAS_REG: tl.constexpr, BLOCK: tl.constexpr):
    # A dense layer's gradient in its storage order [n_pre, n_post] (algorithm.md §3.7): the sum of the `n_parts`
    # partial data gradients part[s] (in order) / B + R(W)^T, with R_ij = lam beta (W_ij / L) exp(beta (S_i - 1)),
    # S_i = sumsq_i / (L^2 n_pre); reg = (lam, beta, L) float64. Rounded to float32 once; a program that meets a
    # non-finite value raises its flag (flags persist until read).
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    size = tl.cast(n_pre, tl.int64) * n_post
    mask = offs < size
    g = tl.zeros([BLOCK], dtype=tl.float64)
    for s in range(0, n_parts):
        g += tl.load(part_ptr + s * size + offs, mask=mask, other=0.0)
    g = g / tl.cast(batch, tl.float64)
    if HAS_REG:
        lam = tl.load(reg_ptr)
        beta = tl.load(reg_ptr + 1)
        limit = tl.load(reg_ptr + 2)
        s_i = tl.load(sumsq_ptr + offs % n_post, mask=mask, other=0.0) / (limit * limit * tl.cast(n_pre, tl.float64))
        factor = lam * beta * tl.exp(beta * (s_i - 1.0)) / limit
        g = g + factor * tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float64)
    g32 = g.to(tl.float32)
    tl.store(out_ptr + offs, g32, mask=mask)
    bad = tl.max(tl.where(mask & ((g32 != g32) | (tl.abs(g32) == float("inf"))), 1, 0), axis=0)
    tl.store(flag_ptr + pid, tl.maximum(tl.load(flag_ptr + pid), bad.to(tl.int8)))
