"""The HM2-BP gradient rules of `docs/algorithm.md` §3, as pure functions of counts, read-out matrices and weights.

Per sample b, for a layer with post counts `o` (after the silent-label replacement of algorithm.md §3.2-5), S-PSP
`E_b = K_b^T P_b + 0.1 [o_b = 0] [o_pre_b > 0]^T` (`hm2bp.rules.spsp`), weights `W [n_post, n_pre]`:
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
Pure torch functions on any device: the reference the kernel sets (`hm2bp.kernels`) are tested against.
"""

from __future__ import annotations

import numpy as np
import torch

from hm2bp.config import LossSpec, RegularizerSpec
from hm2bp.rules.spsp import SILENT_POST_EFFECT

SILENT_POST_SIDE_RATIO = 0.5  # e/o_i estimate for a silent post neuron in the side effect (algorithm.md §3.4)


def target_counts(labels: torch.Tensor, n_out: int, loss: LossSpec) -> torch.Tensor:
    """Desired counts `y [B, n_out]` float64: `loss.desired` for the label neuron, `loss.undesired` elsewhere."""
    y = torch.full((labels.shape[0], n_out), float(loss.undesired), dtype=torch.float64, device=labels.device)
    y[torch.arange(labels.shape[0], device=labels.device), labels] = float(loss.desired)
    return y


def output_error(counts: torch.Tensor, labels: torch.Tensor, loss: LossSpec) -> torch.Tensor:
    """Dead-zone error of algorithm.md §3.2-2: `o - y` where `|o - y| > margin`, else 0; float64 `[B, n_out]`."""
    diff = counts.to(torch.float64) - target_counts(labels, counts.shape[1], loss)
    return torch.where(diff.abs() > loss.margin, diff, torch.zeros_like(diff))


def logged_cost(counts: torch.Tensor, labels: torch.Tensor, loss: LossSpec) -> torch.Tensor:
    """Logged cost of algorithm.md §3.14 per sample (`[B]` float64): sum of squared dead-zone errors, no 1/2."""
    return cost_of_error(output_error(counts, labels, loss))


def cost_of_error(error: torch.Tensor) -> torch.Tensor:
    """The logged cost (algorithm.md §3.14) of dead-zone errors `[B, n_out]`: `sum_i error_i^2` per sample."""
    return (error**2).sum(1)


def silent_label_train(steps: int, desired: float) -> np.ndarray:
    """Spike steps of the synthetic label train of algorithm.md §3.2-5: `m, 2m, ... < steps`, `m = steps //
    int(desired)`."""
    period = steps // int(desired)
    return np.arange(period, steps, period, dtype=np.int64)


def replace_silent_label(spikes: torch.Tensor, counts: torch.Tensor, labels: torch.Tensor,
                         desired: float) -> tuple[torch.Tensor, torch.Tensor]:
    """algorithm.md §3.2-5: a silent label neuron gets the regular synthetic train and its count. Returns copies only
    when something changes (`spikes [B, T, n]` bool/uint8, `counts [B, n]`)."""
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
    """sigma `[B, n_post]` float64 (algorithm.md §3.2-9): `side_sum / (vth o)` for active posts, `0.5 sum_j W_ij / vth`
    else (`row_sum = sum_j W_ij`, float64 `[n_post]`)."""
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


def regularizer_grad(weight: torch.Tensor, reg: RegularizerSpec) -> torch.Tensor:
    """algorithm.md §3.7 regulariser gradient `lam beta (W/L) exp(beta (S_i - 1))`, `S_i = mean_j (W_ij/L)^2`
    (float32)."""
    if reg.lam == 0.0 or reg.beta == 0.0:
        return torch.zeros_like(weight)
    scaled = weight.to(torch.float64) / reg.weight_limit
    s = (scaled**2).mean(1, keepdim=True)
    return (reg.lam * reg.beta * scaled * torch.exp(reg.beta * (s - 1.0))).to(weight.dtype)


# ---------------------------------------------------------------------------------------- weight gradient
def weight_gradient(k: torch.Tensor, coef: torch.Tensor, pre: torch.Tensor, post_counts: torch.Tensor,
                    pre_counts: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`sum_a coef_a[i] E_a[i, j]` (algorithm.md §3.2-9, the data gradient summed over samples) as `[n_post, n_pre]`,
    summed in float64, returned as `dtype`: `k` float32 `[A, T, n_post]` read-outs, `coef [A, n_post]`, `pre
    [A, T, n_pre]` the pre spikes of the same samples, `post_counts`/`pre_counts` `[A, n]` (they give the 0.1
    fallback of silent posts)."""
    scaled = (coef.to(torch.float32).unsqueeze(1) * k).reshape(-1, k.shape[2])  # [A*T, n_post]
    g = scaled.T.to(torch.float64) @ pre.reshape(-1, pre.shape[2]).to(torch.float64)
    silent = (post_counts == 0).to(torch.float64)
    active = (pre_counts > 0).to(torch.float64)
    g = g + SILENT_POST_EFFECT * (coef.to(torch.float64) * silent).T @ active
    return g.to(dtype)


# ------------------------------------------------------------------------------------ back-propagated error
def pre_delta(effect: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, post_counts: torch.Tensor,
              pre_counts: torch.Tensor) -> torch.Tensor:
    """preDelta `[A, n_pre]` float64 of algorithm.md §3.2-8 from the effect sums `effect[a, j] = sum_i delta_i W_ij
    E_ij` over active posts (`[A, n_pre]` float64): the ratio part where pre j fired, `delta W` elsewhere."""
    w = weight.to(torch.float64)
    post_active = post_counts > 0
    pre_active = pre_counts > 0
    ratio_part = torch.where(pre_active, effect / pre_counts.clamp(min=1).to(torch.float64), 0.0)
    plain_silent_post = torch.where(post_active, 0.0, delta) @ w
    plain_active_post = torch.where(post_active, delta, 0.0) @ w
    return ratio_part + plain_silent_post + torch.where(pre_active, 0.0, plain_active_post)


def effect_ratio_error(k: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, pre: torch.Tensor,
                       post_counts: torch.Tensor, pre_counts: torch.Tensor) -> torch.Tensor:
    """preDelta `[A, n_pre]` float64 of algorithm.md §3.2-8 with effect ratios: `delta [A, n_post]` float64 (after
    the division by vth), `k [A, T, n_post]` read-outs, `pre [A, T, n_pre]` pre spikes of the same samples."""
    dcoef = torch.where(post_counts > 0, delta, 0.0)
    m = torch.matmul(dcoef.unsqueeze(1) * k.to(torch.float64), weight.to(torch.float64))  # [A, T, n_pre]
    effect = (m * pre.to(torch.float64)).sum(1)
    return pre_delta(effect, delta, weight, post_counts, pre_counts)


def plain_error(delta: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """preDelta with `effect_ratio = false` (algorithm.md §3.2-8): `delta W`, float64 `[A, n_pre]`."""
    return delta @ weight.to(torch.float64)
