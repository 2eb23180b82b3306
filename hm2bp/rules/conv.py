"""Spiking convolution and pooling layers of the HM2-BP CNN (`docs/algorithm.md` §1 and §3.16), pure torch functions.

Layout: a layer's neurons `[C, H, W]` are flattened channel-major, `index = c*H*W + x*W + y`, so a spike tensor
`[B, T, C*H*W]` is viewed as `[B*T, C, H, W]` (time folded into the batch axis). Times are steps.

Forward (algorithm.md §1):
* conv: `R[b, t, o, x, y] = sum_{c, a, b'} W[o, c, a, b'] s[b, t, c, x+a, y+b']` (valid cross-correlation, stride 1,
  no padding, no bias), weight `[c_out, c_in, k, k]`; the LIF of algorithm.md §1 fires iff `v > vth` (no epsilon,
  `ConvSpiking.cu:846`);
* pool: `R[b, t, c, X, Y] = number of spikes in the window [wX, wX+w) x [wY, wY+w)` (weight 1, non-overlapping),
  LIF threshold `vth - 1e-6` (`PoolingSpiking.cu:362`).
The current is the correctly rounded float32 value of the exact sum (float64 accumulation), as `hm2bp.rules.lif` does
for dense layers, so it does not depend on the summation order.

Backward (algorithm.md §3.16), per sample, with the read-out `K [T, n_post]` of the layer's post trains
(`hm2bp.rules.spsp`) so that
`e_{i|j} = sum_tau K[tau, i] P[tau, j]` (+ 0.1 for a silent post i and active pre j, algorithm.md §3.1):
* conv, with `delta = preDelta / vth_conv` on its neurons `i = (o, x, y)` and pre `j = (c, x+a, y+b)`:
  side effect `sigma_i = (1/vth) sum_{c,a,b} W[o,c,a,b] e_ij / o_i`, or `0.5 sum W[o] / vth` if `o_i = 0`;
  weight gradient `G[o,c,a,b] = sum_{x,y} e_ij (1 + sigma_i) delta_i` (batch mean + per-kernel regulariser
  algorithm.md §3.7);
  error to the input `preDelta_j = sum_{i over j's fan-out} delta_i W[o,c,a,b] rho_ij`, `rho = e_ij / o_j`, 1 if
  `o_i = 0` or `o_j = 0` (the first conv layer computes none);
* pool (no weight, no division by its vth): `delta_p = delta_q / w^2 * rho`, `rho = e_{q|p} / o_p` (1 if either
  is silent), for the children p of pool neuron q.
None of these builds a per-pair S-PSP: `sum_b G_b` is a correlation of `coef*K` with the pre spikes
(`conv2d_weight` over `B*T`), the effect sum is a transposed convolution of `delta*K` gathered at the pre spikes.
Any device; the kernel sets (`hm2bp.kernels`) compute the same (on CPU from the pre spikes' lists).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hm2bp.config import RegularizerSpec
from hm2bp.geometry import Shape3, conv_output_shape, pool_output_shape
from hm2bp.rules.gradient import regularizer_grad, side_effect
from hm2bp.rules.lif import lif_scan
from hm2bp.rules.spsp import SILENT_POST_EFFECT


# --------------------------------------------------------------------------------------------------- forward
def conv_current(spikes: torch.Tensor, weight: torch.Tensor, in_shape: Shape3) -> torch.Tensor:
    """Conv forward current: `spikes [B, T, c_in*H*W]`, `weight [c_out, c_in, k, k]` -> float32
    `[B, T, c_out*H'*W']` (float64 conv2d, time folded into the batch axis, exact sum rounded once)."""
    batch, steps = spikes.shape[:2]
    x = spikes.reshape(batch * steps, *in_shape).to(torch.float64)
    r = F.conv2d(x, weight.to(torch.float64))
    return r.reshape(batch, steps, -1).to(torch.float32)


def conv_lif_scan(current: torch.Tensor, vth: float, tau_m: float, tau_s: float,
                  refractory: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`hm2bp.rules.lif.lif_scan` with the conv threshold `v > vth` (no epsilon, exact for every vth)."""
    return lif_scan(current, vth, tau_m, tau_s, refractory, epsilon=False)


def pool_current(spikes: torch.Tensor, in_shape: Shape3, window: int) -> torch.Tensor:
    """Pool forward current float32 `[B, T, C*(H/w)*(W/w)]`: spikes per non-overlapping `w x w` window (exact
    small integers), any device. `spikes [B, T, C*H*W]` bool/uint8/float."""
    c, h, w = in_shape
    _, ho, wo = pool_output_shape(in_shape, window)
    batch, steps = spikes.shape[:2]
    x = spikes.reshape(batch * steps, c, ho, window, wo, window).to(torch.float32)
    return x.sum((3, 5)).reshape(batch, steps, c * ho * wo)


# -------------------------------------------------------------------------------------------- side effect
def conv_row_sums(weight: torch.Tensor, n_post: int) -> torch.Tensor:
    """`sum_j W_ij` of every conv neuron i (the sum of its output channel's kernel), float64 `[n_post]`."""
    per_pos = n_post // weight.shape[0]
    return weight.to(torch.float64).sum((1, 2, 3)).repeat_interleave(per_pos)


def conv_side_effect(side_sum: torch.Tensor, counts: torch.Tensor, weight: torch.Tensor, vth: float) -> torch.Tensor:
    """sigma `[A, c_out*H'*W']` float64 (algorithm.md §3.16): `side_sum / (vth o)` for active neurons, `0.5 sum W[o] /
    vth` for silent ones. `side_sum[a, i] = sum_tau K[tau, i] R[tau, i]` = `sum_j W_ij E_ij` (`hm2bp.rules.spsp`)."""
    return side_effect(side_sum, counts, conv_row_sums(weight, counts.shape[1]).to(side_sum.device), vth)


# ------------------------------------------------------------------------------------------ weight gradient
def conv_weight_gradient(k: torch.Tensor, coef: torch.Tensor, pre: torch.Tensor, post_counts: torch.Tensor,
                         pre_counts: torch.Tensor, in_shape: Shape3, weight_shape: tuple) -> torch.Tensor:
    """`sum_a sum_{x,y} coef_a[i] e_a[i, j]` for every kernel entry: `[c_out, c_in, k, k]` float64, summed (not
    averaged) over the samples (`conv2d_weight` with time folded into the batch axis). `k [A, T, n_post]`
    read-outs, `coef [A, n_post]` (`delta (1 + sigma)`), `pre [A, T, n_pre]` spikes of the same samples,
    `post_counts`/`pre_counts` `[A, n]`. Computes in `k`'s dtype."""
    n, steps = k.shape[:2]
    c_out = int(weight_shape[0])
    dt = k.dtype
    _, h_out, w_out = conv_output_shape(in_shape, c_out, int(weight_shape[2]))
    grad_out = (coef.to(dt).unsqueeze(1) * k).reshape(n * steps, c_out, h_out, w_out)
    x = pre.reshape(n * steps, *in_shape).to(dt)
    g = torch.nn.grad.conv2d_weight(x, tuple(weight_shape), grad_out).to(torch.float64)
    silent = torch.where(post_counts == 0, coef.to(torch.float64), 0.0).reshape(n, c_out, h_out, w_out)
    active = (pre_counts > 0).to(torch.float64).reshape(n, *in_shape)
    return g + SILENT_POST_EFFECT * torch.nn.grad.conv2d_weight(active, tuple(weight_shape), silent)


def conv_regularizer_grad(weight: torch.Tensor, reg: RegularizerSpec) -> torch.Tensor:
    """algorithm.md §3.7 per output kernel: `S_o` is the mean of `(W/L)^2` over its `c_in*k*k` entries
    (`ConvSpiking.cu`)."""
    return regularizer_grad(weight.reshape(weight.shape[0], -1), reg).reshape(weight.shape)


# ----------------------------------------------------------------------------------- back-propagated error
def transpose_conv(x: torch.Tensor, weight: torch.Tensor, out_shape: Shape3) -> torch.Tensor:
    """`y_j = sum_i x_i W_ij` over the conv's connections: `x [A, c_out*H'*W']` -> float64 `[A, c_in*H*W]`."""
    n = x.shape[0]
    c_out = weight.shape[0]
    y = F.conv_transpose2d(x.to(torch.float64).reshape(n, c_out, out_shape[1], out_shape[2]),
                           weight.to(torch.float64))
    return y.reshape(n, -1)


def conv_pre_delta(effect: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, post_counts: torch.Tensor,
                   pre_counts: torch.Tensor, out_shape: Shape3) -> torch.Tensor:
    """preDelta `[A, c_in*H*W]` float64 of a conv layer (algorithm.md §3.16) from the effect sums `effect[a, j] =
    sum_i delta_i W_ij e_ij` over active posts: `ER_ij = W_ij e_ij / o_j` if `o_i > 0` and `o_j > 0`, else `W_ij`
    (the dense rule of `hm2bp.rules.gradient.pre_delta` on conv connections)."""
    post_active = post_counts > 0
    pre_active = pre_counts > 0
    ratio_part = torch.where(pre_active, effect / pre_counts.clamp(min=1).to(torch.float64), 0.0)
    plain_silent_post = transpose_conv(torch.where(post_active, 0.0, delta), weight, out_shape)
    plain_active_post = transpose_conv(torch.where(post_active, delta, 0.0), weight, out_shape)
    return ratio_part + plain_silent_post + torch.where(pre_active, 0.0, plain_active_post)


def conv_effect_ratio_error(k: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, pre: torch.Tensor,
                            post_counts: torch.Tensor, pre_counts: torch.Tensor, in_shape: Shape3) -> torch.Tensor:
    """preDelta `[A, c_in*H*W]` float64 of a conv layer with effect ratios (algorithm.md §3.16): the effect sums
    `sum_tau P[tau] * conv_transpose(dcoef * K[tau], W)` with time folded into the batch axis. `delta [A, n_post]`
    float64 after the division by vth_conv, `pre [A, T, n_pre]` spikes of the same samples as `k`. Computes in
    `k`'s dtype."""
    n, steps = k.shape[:2]
    c_out = weight.shape[0]
    out_shape = conv_output_shape(in_shape, c_out, weight.shape[2])
    dt = k.dtype
    dcoef = torch.where(post_counts > 0, delta, 0.0).to(dt)
    m = F.conv_transpose2d((dcoef.unsqueeze(1) * k).reshape(n * steps, c_out, out_shape[1], out_shape[2]),
                           weight.to(dt))
    effect = (m.reshape(n, steps, -1).to(torch.float64) * pre.to(torch.float64)).sum(1)
    return conv_pre_delta(effect, delta, weight, post_counts, pre_counts, out_shape)


def conv_plain_error(delta: torch.Tensor, weight: torch.Tensor, in_shape: Shape3) -> torch.Tensor:
    """preDelta with `effect_ratio = false`: `sum_i delta_i W_ij` over the conv connections, float64."""
    return transpose_conv(delta, weight, conv_output_shape(in_shape, weight.shape[0], weight.shape[2]))


def _pool_up(x: torch.Tensor, in_shape: Shape3, window: int) -> torch.Tensor:
    """`[..., C*ho*wo] -> [..., C*H*W]`: every child of a pool neuron gets its parent's value."""
    c, h, w = in_shape
    _, ho, wo = pool_output_shape(in_shape, window)
    lead = x.shape[:-1]
    x = x.reshape(*lead, c, ho, 1, wo, 1).expand(*lead, c, ho, window, wo, window)
    return x.reshape(*lead, c * h * w)


def pool_effect(k: torch.Tensor, pre: torch.Tensor, in_shape: Shape3, window: int) -> torch.Tensor:
    """`e_{q|p} = sum_tau K[tau, q] P[tau, p]` for every child p of pool neuron q, float64 `[A, C*H*W]` (any device;
    without the silent-post fallback, which gets ratio 1 anyway). `k [A, T, n_pool]`, `pre [A, T, C*H*W]` spikes.
    The products are exact (P is 0/1); the sum over time runs in float64."""
    c, h, w = in_shape
    _, ho, wo = pool_output_shape(in_shape, window)
    n, steps = k.shape[:2]
    kk = k.reshape(n, steps, c, ho, 1, wo, 1).to(torch.float64)
    pp = pre.reshape(n, steps, c, ho, window, wo, window).to(torch.float64)
    return (kk * pp).sum(1).reshape(n, c * h * w)


def pool_error(effect: torch.Tensor | None, delta: torch.Tensor, post_counts: torch.Tensor,
               pre_counts: torch.Tensor, in_shape: Shape3, window: int) -> torch.Tensor:
    """Error passed through a pool layer (algorithm.md §3.16, any device): float64 `[A, C*H*W]`,
    `delta_p = delta_q / w^2 * e_{q|p} / o_p` (1 instead of the ratio if `o_q = 0` or `o_p = 0`).

    `effect` = `pool_effect(...)` (None: `effect_ratio = false`, every child gets `delta_q / w^2`), `delta
    [A, n_pool]` the error arriving at the pool neurons (no division by the pool's vth), counts `[A, n]`."""
    share = _pool_up(delta.to(torch.float64), in_shape, window) / float(window * window)
    if effect is None:
        return share
    both = (_pool_up(post_counts, in_shape, window) > 0) & (pre_counts > 0)
    return share * torch.where(both, effect / pre_counts.clamp(min=1).to(torch.float64), 1.0)
