"""The HM2-BP gradient rules of `docs/algorithm.md` §3 on CPU: numba kernels driven by the pre spikes' lists for the
weight gradient and the effect sums, the fused gradient finish, and numpy versions of the small per-sample rules.

Every function computes what its torch reference in `hm2bp.rules.gradient` computes. The per-sample rules (output
error, silent label, side effect, lateral factor) take numpy on zero-copy views of CPU tensors: a few µs per
operation instead of ~10 µs per torch op at batch 1, and every such operation is an exactly rounded elementwise
float64 operation in the reference's order, so both give the same bits.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from hm2bp.config import LossSpec, RegularizerSpec
from hm2bp.kernels.numba.csr import step_spikes
from hm2bp.rules import gradient as rules
from hm2bp.rules.gradient import SILENT_POST_SIDE_RATIO, pre_delta
from hm2bp.rules.spsp import SILENT_POST_EFFECT


# ------------------------------------------------------------------------------------------ per-sample rules
def output_error(counts: torch.Tensor, labels: torch.Tensor, loss: LossSpec) -> torch.Tensor:
    """`hm2bp.rules.gradient.output_error` of CPU tensors: the dead-zone error, float64 `[B, n_out]`."""
    lab = labels.numpy()
    y = np.full(tuple(counts.shape), float(loss.undesired))
    y[np.arange(lab.shape[0]), lab] = float(loss.desired)
    diff = counts.numpy().astype(np.float64) - y
    return torch.from_numpy(np.where(np.abs(diff) > loss.margin, diff, 0.0))


def replace_silent_label(spikes: torch.Tensor, counts: torch.Tensor, labels: torch.Tensor,
                         desired: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`hm2bp.rules.gradient.replace_silent_label` of CPU tensors: the same objects back, checked in numpy, when no
    label neuron is silent (the common case)."""
    lab = labels.numpy()
    if not (counts.numpy()[np.arange(lab.shape[0]), lab] == 0).any():
        return spikes, counts
    return rules.replace_silent_label(spikes, counts, labels, desired)


def side_effect(side_sum: torch.Tensor, counts: torch.Tensor, row_sum: torch.Tensor, vth: float) -> torch.Tensor:
    """`hm2bp.rules.gradient.side_effect` of CPU tensors: sigma `[B, n_post]` float64."""
    o = counts.numpy().astype(np.float64)
    silent_value = SILENT_POST_SIDE_RATIO * row_sum.numpy() / vth
    with np.errstate(divide="ignore", invalid="ignore"):
        active = side_sum.numpy() / (vth * np.maximum(o, 1.0))
    return torch.from_numpy(np.where(o > 0, active, silent_value.reshape(1, -1)))


def lateral_factor(k_out: torch.Tensor, out_spikes: torch.Tensor, counts: torch.Tensor, labels: torch.Tensor,
                   vth: float, w0: float) -> torch.Tensor:
    """`hm2bp.rules.gradient.lateral_factor` of CPU tensors: gamma `[B, n]` float64. The same operations in the same
    order; the sum over l stays a torch reduction of the same contiguous `[B, l, j]` array, so it adds in the same
    order."""
    e = torch.bmm(k_out.transpose(1, 2).to(torch.float64), out_spikes.to(torch.float64)).numpy()  # [B, l, j]
    o = counts.numpy().astype(np.float64)
    both = (o[:, :, None] > 0) & (o[:, None, :] > 0)
    rho_jl = np.where(both, e / np.maximum(o, 1.0)[:, None, :], 1.0)
    rho_lj = rho_jl.transpose(0, 2, 1)
    d = (o > 0).astype(np.float64)
    d[np.arange(labels.shape[0]), labels.numpy()] = 1.0
    d = d / vth
    terms = rho_jl * rho_lj * d[:, :, None]
    terms = np.ascontiguousarray(terms * (1.0 - np.eye(o.shape[1])))
    total = torch.from_numpy(terms).sum(1).numpy() * d
    return torch.from_numpy(1.0 / (1.0 - w0 * w0 * total))


# ---------------------------------------------------------------------------------------- weight gradient
@njit(inline="always")
def weighted_readout(coef, k, indptr, samples, steps, a, t, u):
    """The pre spikes of selected sample a at step t, as `(start, stop)` in the pre lists, and (when there are any)
    `u[i] = coef[a, i] * k[a, t, i]`, the read-out row weighted per post neuron in the arithmetic of the operands
    (float32 for the weight gradient, float64 for the effect sums)."""
    start, stop = step_spikes(indptr, samples[a], steps, t)
    if start != stop:
        for i in range(u.shape[0]):
            u[i] = coef[a, i] * k[a, t, i]
    return start, stop


@njit(cache=True, nogil=True)
def _weight_gradient(k, coef, samples, indptr, idx, steps, post_counts, pre_counts, g_t):
    n_post = k.shape[2]
    n_pre = g_t.shape[0]
    u = np.empty(n_post, np.float32)
    for a in range(samples.shape[0]):
        for t in range(1, steps):
            start, stop = weighted_readout(coef, k, indptr, samples, steps, a, t, u)
            for kk in range(start, stop):
                row = g_t[idx[kk]]
                for i in range(n_post):
                    row[i] += u[i]
        # e = 0.1 for a silent post and an active pre (rank one per sample)
        any_silent = False
        for i in range(n_post):
            u[i] = np.float32(SILENT_POST_EFFECT * coef[a, i]) if post_counts[a, i] == 0 else np.float32(0.0)
            any_silent = any_silent or post_counts[a, i] == 0
        if any_silent:
            for j in range(n_pre):
                if pre_counts[a, j] > 0:
                    row = g_t[j]
                    for i in range(n_post):
                        row[i] += u[i]


@njit(cache=True, nogil=True, error_model="numpy")
def _finish_gradient(g_t, w_t, scale, factor, touched, out):
    # out[j, i] = scale g_t[j, i] + factor[i] W^T[j, i] in float32 (two products, one sum), all in storage order.
    # Rows that no pre spike reached are zero in g_t: they are not read (the regulariser alone). Rows that were read
    # are cleared, so the accumulator is zero again for the next call without a full pass. Returns the number of
    # non-finite values, counted as they are written.
    n_pre, n_post = g_t.shape
    bad = 0
    zero = np.float32(0.0)
    for j in range(n_pre):
        row = out[j]
        w_row = w_t[j]
        if touched[j]:
            g_row = g_t[j]
            for i in range(n_post):
                row[i] = scale * g_row[i] + factor[i] * w_row[i]
            g_row[:] = zero
        else:
            for i in range(n_post):
                row[i] = factor[i] * w_row[i]
        for i in range(n_post):
            bad += 0 if abs(row[i]) < np.inf else 1
    return bad


@njit(cache=True, nogil=True)
def _column_sums(w_t, sums, sumsq):
    for j in range(w_t.shape[0]):
        row = w_t[j]
        for i in range(w_t.shape[1]):
            x = np.float64(row[i])
            sums[i] += x
            sumsq[i] += x * x


def weight_row_sums(weight_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(sum_j W[i, j], sum_j W[i, j]^2)`, float64 `[n_post]` each, from the transposed weight `W^T [n_pre, n_post]`
    (one pass in storage order, accumulated in float64): the side effect's row sums (algorithm.md §3.5) and the
    regulariser's `S_i` (algorithm.md §3.7)."""
    sums = np.zeros(weight_t.shape[1], np.float64)
    sumsq = np.zeros(weight_t.shape[1], np.float64)
    _column_sums(weight_t, sums, sumsq)
    return sums, sumsq


def weight_gradient(k: np.ndarray, coef: np.ndarray, samples: np.ndarray, pre_csr: tuple, post_counts: np.ndarray,
                    pre_counts: np.ndarray, g_t: np.ndarray) -> np.ndarray:
    """Add `sum_b coef_b[i] E_b[i, j]` over the samples `samples` into `g_t` (CPU, numba), float32,
    **transposed** `[n_pre, n_post]` (finish with `finish_gradient`); returns `g_t`.

    `k` float32 `[A, T, n_post]` read-outs of those samples, `coef` `[A, n_post]`, `pre_csr` the pre spikes of the
    whole batch (`hm2bp.kernels.numba.csr.raster_to_csr`), `post_counts`/`pre_counts` int64 `[A, n]` counts of
    those samples (they give the 0.1 fallback of silent posts).
    """
    _weight_gradient(k, np.ascontiguousarray(coef, dtype=np.float32), np.ascontiguousarray(samples, dtype=np.int64),
                     pre_csr[0], pre_csr[1], k.shape[1], np.ascontiguousarray(post_counts, dtype=np.int64),
                     np.ascontiguousarray(pre_counts, dtype=np.int64), g_t)
    return g_t


def regularizer_factor(sumsq: np.ndarray, n_pre: int, reg: RegularizerSpec) -> np.ndarray:
    """Per post neuron `lam beta exp(beta (S_i - 1)) / L` (float32 `[n_post]`), `S_i = sumsq_i / (L^2 n_pre)`: the
    regulariser gradient of algorithm.md §3.7 is this factor times `W_ij`."""
    if reg.lam == 0.0 or reg.beta == 0.0:
        return np.zeros(sumsq.shape[0], np.float32)
    limit = reg.weight_limit
    s_i = np.asarray(sumsq, np.float64) / (limit * limit * n_pre)
    return (reg.lam * reg.beta * np.exp(reg.beta * (s_i - 1.0)) / limit).astype(np.float32)


def finish_gradient(g_t: np.ndarray | None, weight_t: np.ndarray, sumsq: np.ndarray, scale: float,
                    reg: RegularizerSpec, layer: str, touched: np.ndarray | None = None) -> np.ndarray:
    """Weight gradient in the transposed storage order, `[n_pre, n_post]` float32 = `scale * g_t + R(W)^T`
    (algorithm.md §3.7) (CPU; a new array). `weight_t = W^T`, `sumsq` its per-post sums of squares (`weight_row_sums`).

    `g_t` is the transposed data-gradient accumulator of `weight_gradient`; its rows `touched` (bool `[n_pre]`,
    default all: the pre neurons that spiked in the batch, the only rows the accumulation can reach) are read and
    then **cleared**, other rows are assumed zero and not read. Raises FloatingPointError naming `layer` if a value
    is not finite."""
    weight_t = np.ascontiguousarray(weight_t, dtype=np.float32)
    factor = regularizer_factor(sumsq, weight_t.shape[0], reg)
    if g_t is None:
        out = weight_t * factor[None, :]
        bad = not np.isfinite(out).all()
    else:
        if touched is None:
            touched = np.ones(weight_t.shape[0], np.bool_)
        out = np.empty(weight_t.shape, np.float32)
        bad = _finish_gradient(g_t, weight_t, np.float32(scale), factor, touched, out) > 0
    if bad:
        raise FloatingPointError(f"non-finite gradient in layer {layer!r}")
    return out


# ------------------------------------------------------------------------------------ back-propagated error
@njit(cache=True, nogil=True)
def _effect_sum(k, dcoef, w_t, samples, indptr, idx, steps, out):
    n_post = k.shape[2]
    u = np.empty(n_post, np.float64)
    for a in range(samples.shape[0]):
        for t in range(1, steps):
            start, stop = weighted_readout(dcoef, k, indptr, samples, steps, a, t, u)
            for kk in range(start, stop):
                j = idx[kk]
                acc = 0.0
                for i in range(n_post):
                    acc += u[i] * w_t[j, i]
                out[a, j] += acc


def effect_ratio_error(k: np.ndarray, delta: torch.Tensor, weight: torch.Tensor, samples: np.ndarray,
                       pre_csr: tuple[np.ndarray, np.ndarray], post_counts: torch.Tensor,
                       pre_counts: torch.Tensor) -> torch.Tensor:
    """preDelta `[A, n_pre]` float64 of algorithm.md §3.2-8 with effect ratios (CPU, numba). `delta [A, n_post]`
    float64 (after the division by vth), other arguments as in `weight_gradient`."""
    dcoef = torch.where(post_counts > 0, delta, 0.0).numpy()
    w_t = np.ascontiguousarray(weight.numpy().T, dtype=np.float64)
    out = np.zeros((k.shape[0], weight.shape[1]), np.float64)
    _effect_sum(k, np.ascontiguousarray(dcoef), w_t, np.ascontiguousarray(samples, dtype=np.int64), pre_csr[0],
                pre_csr[1], k.shape[1], out)
    return pre_delta(torch.from_numpy(out), delta, weight, post_counts, pre_counts)
