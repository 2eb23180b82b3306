"""The HM2-BP gradient rules of `docs/algorithm.md` §3, as pure functions of counts, read-out matrices and weights.

Per sample b, for a layer with post counts `o` (after the silent-label replacement of algorithm.md §3.2-5), S-PSP
`E_b = K_b^T P_b + 0.1 [o_b = 0] [o_pre_b > 0]^T` (`hm2bp.spsp`), weights `W [n_post, n_pre]`:
* output error (algorithm.md §3.2-2/3/7): `delta_i = w_sample (o_i - y_i) [|o_i - y_i| > margin] / vth_out`;
* hidden error (algorithm.md §3.3): `delta_j = preDelta_j / vth`;
* side effect (algorithm.md §3.5, §3.2-9): `sigma_i = (1/vth) sum_j W_ij E_ij / o_i`, or `0.5 sum_j W_ij / vth`
  if `o_i = 0`;
* lateral factor (algorithm.md §3.6): `gamma_j = 1 / (1 - w0^2 sum_{l != j} rho_jl d_l rho_lj d_j)` (output only);
* data gradient (algorithm.md §3.2-9): `G_b[i, j] = delta_i E_ij (1 + sigma_i) gamma_i`;
  weight gradient = `mean_b G_b + R(W)`;
* back-propagated error (algorithm.md §3.2-8): `preDelta_j = sum_i delta_i ER_ij`, `ER_ij = W_ij E_ij / o_j` when
  `o_i > 0` and `o_j > 0`, else `W_ij` (`effect_ratio = false`: `preDelta = delta W`);
* regulariser (algorithm.md §3.7): `R_ij = lam beta (W_ij / L) exp(beta (S_i - 1))`, `S_i = mean_j (W_ij / L)^2`.
None of these builds a per-sample `[n_post, n_pre]` matrix: with `coef_i = delta_i (1 + sigma_i) gamma_i`,
`sum_b G_b = sum_b (coef_b * K_b)^T P_b` (+ the rank-one fallback) and
`sum_i delta_i W_ij (K^T P)_ij = sum_tau P[tau, j] sum_i delta_i K[tau, i] W_ij` (algorithm.md §3.17).
CPU arrays use numba kernels driven by the pre spikes (CSR per sample and step); `*_torch` twins run anywhere.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from hm2bp.config import LossSpec, RegularizerSpec
from hm2bp.spsp import SILENT_POST_EFFECT

SILENT_POST_SIDE_RATIO = 0.5  # e/o_i estimate for a silent post neuron in the side effect (algorithm.md §3.4)


def target_counts(labels: torch.Tensor, n_out: int, loss: LossSpec) -> torch.Tensor:
    """Desired counts `y [B, n_out]` float64: `loss.desired` for the label neuron, `loss.undesired` elsewhere."""
    y = torch.full((labels.shape[0], n_out), float(loss.undesired), dtype=torch.float64, device=labels.device)
    y[torch.arange(labels.shape[0], device=labels.device), labels] = float(loss.desired)
    return y


def _on_cpu(*tensors: torch.Tensor) -> bool:
    # Small per-sample arrays on the CPU take numpy (a few µs per op instead of ~10 µs per torch op at batch 1);
    # every such op below is an exactly rounded elementwise float64 operation, so both give the same bits.
    return all(t.device.type == "cpu" for t in tensors)


def output_error(counts: torch.Tensor, labels: torch.Tensor, loss: LossSpec) -> torch.Tensor:
    """Dead-zone error of algorithm.md §3.2-2: `o - y` where `|o - y| > margin`, else 0; float64 `[B, n_out]`."""
    if _on_cpu(counts, labels):
        lab = labels.numpy()
        y = np.full(tuple(counts.shape), float(loss.undesired))
        y[np.arange(lab.shape[0]), lab] = float(loss.desired)
        diff = counts.numpy().astype(np.float64) - y
        return torch.from_numpy(np.where(np.abs(diff) > loss.margin, diff, 0.0))
    return _output_error_torch(counts, labels, loss)


def _output_error_torch(counts: torch.Tensor, labels: torch.Tensor, loss: LossSpec) -> torch.Tensor:
    diff = counts.to(torch.float64) - target_counts(labels, counts.shape[1], loss)
    return torch.where(diff.abs() > loss.margin, diff, torch.zeros_like(diff))


def logged_cost(counts: torch.Tensor, labels: torch.Tensor, loss: LossSpec) -> torch.Tensor:
    """Logged cost of algorithm.md §3.14 per sample (`[B]` float64): sum of squared dead-zone errors, no 1/2."""
    return (output_error(counts, labels, loss) ** 2).sum(1)


def silent_label_train(steps: int, desired: float) -> np.ndarray:
    """Spike steps of the synthetic label train of algorithm.md §3.2-5: `m, 2m, ... < steps`, `m = steps //
    int(desired)`."""
    period = steps // int(desired)
    return np.arange(period, steps, period, dtype=np.int64)


def replace_silent_label(spikes: torch.Tensor, counts: torch.Tensor, labels: torch.Tensor,
                         desired: float) -> tuple[torch.Tensor, torch.Tensor]:
    """algorithm.md §3.2-5: a silent label neuron gets the regular synthetic train and its count. Returns copies only
    when
    something changes (`spikes [B, T, n]` bool/uint8, `counts [B, n]`)."""
    if _on_cpu(counts, labels):
        lab = labels.numpy()
        if not (counts.numpy()[np.arange(lab.shape[0]), lab] == 0).any():
            return spikes, counts
    rows = torch.arange(labels.shape[0], device=labels.device)
    silent = counts[rows, labels] == 0
    if not bool(silent.any()):
        return spikes, counts
    steps = spikes.shape[1]
    times = torch.as_tensor(silent_label_train(steps, desired), device=spikes.device)
    spikes = spikes.clone()
    counts = counts.clone()
    which = rows[silent]
    lab = labels[silent]
    spikes[which.view(-1, 1), times.view(1, -1), lab.view(-1, 1)] = 1
    counts[which, lab] = times.numel()
    return spikes, counts


def side_effect(side_sum: torch.Tensor, counts: torch.Tensor, row_sum: torch.Tensor, vth: float) -> torch.Tensor:
    """sigma `[B, n_post]` float64 (algorithm.md §3.2-9): `side_sum / (vth o)` for active posts, `0.5 sum_j W_ij /
    vth` else
    (`row_sum = sum_j W_ij`, float64 `[n_post]`)."""
    if _on_cpu(side_sum, counts, row_sum):
        o = counts.numpy().astype(np.float64)
        silent_value = SILENT_POST_SIDE_RATIO * row_sum.numpy() / vth
        with np.errstate(divide="ignore", invalid="ignore"):
            active = side_sum.numpy() / (vth * np.maximum(o, 1.0))
        return torch.from_numpy(np.where(o > 0, active, silent_value.reshape(1, -1)))
    return _side_effect_torch(side_sum, counts, row_sum, vth)


def _side_effect_torch(side_sum: torch.Tensor, counts: torch.Tensor, row_sum: torch.Tensor,
                       vth: float) -> torch.Tensor:
    o = counts.to(torch.float64)
    silent_value = SILENT_POST_SIDE_RATIO * row_sum / vth
    return torch.where(o > 0, side_sum / (vth * o.clamp(min=1)), silent_value.view(1, -1))


def lateral_factor(k_out: torch.Tensor, out_spikes: torch.Tensor, counts: torch.Tensor, labels: torch.Tensor,
                   vth: float, w0: float) -> torch.Tensor:
    """gamma `[B, n]` float64 of algorithm.md §3.6 over the output layer.

    `k_out [B, T, n]` read-out of the output layer, `out_spikes [B, T, n]` output trains (the silent-label
    replacement may be applied: pairs with a silent neuron use ratio 1), `counts` the **unmodified** counts.
    `E[b, l, j] = e_{l|j}` (post l, pre j), `rho_jl = e_{l|j}/o_j`, `rho_lj = e_{j|l}/o_l`, both 1 if o_j = 0 or
    o_l = 0; `d_x = 1/vth` if `o_x > 0` or x is the label, else 0.
    """
    e = torch.bmm(k_out.transpose(1, 2).to(torch.float64), out_spikes.to(torch.float64))  # [B, post l, pre j]
    if _on_cpu(e, counts, labels):
        return _lateral_factor_numpy(e.numpy(), counts.numpy(), labels.numpy(), vth, w0)
    return _lateral_factor_torch(e, counts, labels, vth, w0)


def _lateral_factor_torch(e: torch.Tensor, counts: torch.Tensor, labels: torch.Tensor, vth: float,
                          w0: float) -> torch.Tensor:
    o = counts.to(torch.float64)
    both = (o.unsqueeze(2) > 0) & (o.unsqueeze(1) > 0)  # [b, l, j]
    rho_jl = torch.where(both, e / o.clamp(min=1).unsqueeze(1), torch.ones_like(e))  # e_{l|j}/o_j at [l, j]
    rho_lj = rho_jl.transpose(1, 2)  # e_{j|l}/o_l at [l, j]
    d = (o > 0).to(torch.float64)
    d[torch.arange(labels.shape[0], device=labels.device), labels] = 1.0
    d = d / vth
    terms = rho_jl * rho_lj * d.unsqueeze(2)  # [l, j]: rho_jl rho_lj d_l
    terms = terms * (1.0 - torch.eye(o.shape[1], dtype=torch.float64, device=o.device))
    total = terms.sum(1) * d  # sum over l, times d_j
    return 1.0 / (1.0 - w0 * w0 * total)


def _lateral_factor_numpy(e: np.ndarray, counts: np.ndarray, labels: np.ndarray, vth: float,
                          w0: float) -> torch.Tensor:
    """The elementwise part of `lateral_factor` in numpy (same operations and order; the sum over l stays a torch
    reduction of the same contiguous `[B, l, j]` array, so it adds in the same order)."""
    o = counts.astype(np.float64)
    both = (o[:, :, None] > 0) & (o[:, None, :] > 0)
    rho_jl = np.where(both, e / np.maximum(o, 1.0)[:, None, :], 1.0)
    rho_lj = rho_jl.transpose(0, 2, 1)
    d = (o > 0).astype(np.float64)
    d[np.arange(labels.shape[0]), labels] = 1.0
    d = d / vth
    terms = rho_jl * rho_lj * d[:, :, None]
    terms = np.ascontiguousarray(terms * (1.0 - np.eye(o.shape[1])))
    total = torch.from_numpy(terms).sum(1).numpy() * d
    return torch.from_numpy(1.0 / (1.0 - w0 * w0 * total))


def regularizer_grad(weight: torch.Tensor, reg: RegularizerSpec) -> torch.Tensor:
    """algorithm.md §3.7 regulariser gradient `lam beta (W/L) exp(beta (S_i - 1))`, `S_i = mean_j (W_ij/L)^2`
    (float32)."""
    if reg.lam == 0.0 or reg.beta == 0.0:
        return torch.zeros_like(weight)
    scaled = weight.to(torch.float64) / reg.weight_limit
    s = (scaled**2).mean(1, keepdim=True)
    return (reg.lam * reg.beta * scaled * torch.exp(reg.beta * (s - 1.0))).to(weight.dtype)


# ---------------------------------------------------------------------------------------- weight gradient
@njit(cache=True, nogil=True)
def _weight_gradient(k, coef, samples, indptr, idx, steps, post_counts, pre_counts, g_t):
    n_post = k.shape[2]
    n_pre = g_t.shape[0]
    u = np.empty(n_post, np.float32)
    for a in range(samples.shape[0]):
        b = samples[a]
        for t in range(1, steps):
            start, stop = indptr[b * steps + t], indptr[b * steps + t + 1]
            if start == stop:
                continue
            for i in range(n_post):
                u[i] = coef[a, i] * k[a, t, i]
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
    regulariser's
    `S_i` (algorithm.md §3.7)."""
    sums = np.zeros(weight_t.shape[1], np.float64)
    sumsq = np.zeros(weight_t.shape[1], np.float64)
    _column_sums(weight_t, sums, sumsq)
    return sums, sumsq


def weight_gradient(k: np.ndarray, coef: np.ndarray, samples: np.ndarray, pre_csr: tuple, post_counts: np.ndarray,
                    pre_counts: np.ndarray, g_t: np.ndarray) -> np.ndarray:
    """Add `sum_b coef_b[i] E_b[i, j]` over the samples `samples` into `g_t` (CPU, numba), float32,
    **transposed** `[n_pre, n_post]` (finish with `finish_gradient`); returns `g_t`.

    `k` float32 `[A, T, n_post]` read-outs of those samples, `coef` `[A, n_post]`, `pre_csr` the pre spikes of the
    whole batch (`hm2bp.lif.raster_to_csr`), `post_counts`/`pre_counts` int64 `[A, n]` counts of those samples
    (they give the 0.1 fallback of silent posts).
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
    (algorithm.md §3.7)
    (CPU; a new array). `weight_t = W^T`, `sumsq` its per-post sums of squares (`weight_row_sums`).

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


def weight_gradient_torch(k: torch.Tensor, coef: torch.Tensor, pre: torch.Tensor, post_counts: torch.Tensor,
                          pre_counts: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`weight_gradient` with dense tensors on any device: `pre [A, T, n_pre]` spikes of the same samples as `k`;
    `[n_post, n_pre]`, summed in float64, returned as `dtype`."""
    scaled = (coef.to(torch.float32).unsqueeze(1) * k).reshape(-1, k.shape[2])  # [A*T, n_post]
    g = scaled.T.to(torch.float64) @ pre.reshape(-1, pre.shape[2]).to(torch.float64)
    silent = (post_counts == 0).to(torch.float64)
    active = (pre_counts > 0).to(torch.float64)
    g = g + SILENT_POST_EFFECT * (coef.to(torch.float64) * silent).T @ active
    return g.to(dtype)


# ------------------------------------------------------------------------------------ back-propagated error
@njit(cache=True, nogil=True)
def _effect_sum(k, dcoef, w_t, samples, indptr, idx, steps, out):
    n_post = k.shape[2]
    u = np.empty(n_post, np.float64)
    for a in range(samples.shape[0]):
        b = samples[a]
        for t in range(1, steps):
            start, stop = indptr[b * steps + t], indptr[b * steps + t + 1]
            if start == stop:
                continue
            for i in range(n_post):
                u[i] = dcoef[a, i] * k[a, t, i]
            for kk in range(start, stop):
                j = idx[kk]
                acc = 0.0
                for i in range(n_post):
                    acc += u[i] * w_t[j, i]
                out[a, j] += acc


def _pre_delta(effect: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, post_counts: torch.Tensor,
               pre_counts: torch.Tensor) -> torch.Tensor:
    w = weight.to(torch.float64)
    post_active = post_counts > 0
    pre_active = pre_counts > 0
    ratio_part = torch.where(pre_active, effect / pre_counts.clamp(min=1).to(torch.float64), 0.0)
    plain_silent_post = torch.where(post_active, 0.0, delta) @ w
    plain_active_post = torch.where(post_active, delta, 0.0) @ w
    return ratio_part + plain_silent_post + torch.where(pre_active, 0.0, plain_active_post)


def effect_ratio_error(k: np.ndarray, delta: torch.Tensor, weight: torch.Tensor, samples: np.ndarray,
                       pre_csr: tuple[np.ndarray, np.ndarray], post_counts: torch.Tensor,
                       pre_counts: torch.Tensor) -> torch.Tensor:
    """preDelta `[A, n_pre]` float64 of algorithm.md §3.2-8 with effect ratios (CPU, numba). `delta [A, n_post]`
    float64 (after
    the division by vth), other arguments as in `weight_gradient`."""
    dcoef = torch.where(post_counts > 0, delta, 0.0).numpy()
    w_t = np.ascontiguousarray(weight.numpy().T, dtype=np.float64)
    out = np.zeros((k.shape[0], weight.shape[1]), np.float64)
    _effect_sum(k, np.ascontiguousarray(dcoef), w_t, np.ascontiguousarray(samples, dtype=np.int64), pre_csr[0],
                pre_csr[1], k.shape[1], out)
    return _pre_delta(torch.from_numpy(out), delta, weight, post_counts, pre_counts)


def effect_ratio_error_torch(k: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, pre: torch.Tensor,
                             post_counts: torch.Tensor, pre_counts: torch.Tensor) -> torch.Tensor:
    """`effect_ratio_error` with dense tensors on any device (`pre [A, T, n_pre]`)."""
    dcoef = torch.where(post_counts > 0, delta, 0.0)
    m = torch.matmul(dcoef.unsqueeze(1) * k.to(torch.float64), weight.to(torch.float64))  # [A, T, n_pre]
    effect = (m * pre.to(torch.float64)).sum(1)
    return _pre_delta(effect, delta, weight, post_counts, pre_counts)


def plain_error(delta: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """preDelta with `effect_ratio = false` (algorithm.md §3.2-8): `delta W`, float64 `[A, n_pre]`."""
    return delta @ weight.to(torch.float64)
