"""The layer kinds of an HM2-BP network: each owns its weights, its forward pass (docs/algorithm.md §1) and its
HM2-BP backward pass (docs/algorithm.md §3.2-§3.7, §3.16 for conv and pool), written once. Every operation on
spikes goes through the network's kernel set (`hm2bp.kernels`), chosen when the network is built.

Neurons of a conv / pool layer `[C, H, W]` are flattened channel-major (`c*H*W + x*W + y`), so a dense layer after
them sees exactly the reference's order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hm2bp import conv as cnn
from hm2bp import hm2bp_grad as rules
from hm2bp.config import LayerSpec
from hm2bp.kernels.base import KernelSet, Trains, take


@dataclass
class BackwardStep:
    """What a layer's backward pass gets besides the trains.

    `samples` the samples visited (kernel-set convention), `delta` float64 `[A, n_post]` the layer's error (already
    divided by its vth where the rules say so), `need_pre_delta` False for the first layer, `lateral` the true
    output counts and labels of the visited samples when the lateral factor applies (output layer with lateral
    inhibition), else None."""

    samples: Any
    delta: torch.Tensor
    need_pre_delta: bool
    effect_ratio: bool
    lateral: tuple[torch.Tensor, torch.Tensor] | None = None


def _init_weight(shape: tuple[int, ...], spec: LayerSpec, generator: torch.Generator) -> torch.Tensor:
    """U[-scale, scale] (or N(0, scale^2)) float32 of `shape`, drawn from `generator` (layer order)."""
    if spec.init_kind == "uniform":
        return (torch.rand(shape, generator=generator, dtype=torch.float32) * 2.0 - 1.0) * spec.init_scale
    return torch.randn(shape, generator=generator, dtype=torch.float32) * spec.init_scale


class DenseLayer:
    """A fully connected LIF layer: `weight [n_post, n_pre]` float32 (settable), optional lateral inhibition.

    The weights are stored transposed, `[n_pre, n_post]` contiguous (`storage`), and `weight` is the transposed view
    of that storage: the input current adds rows of `W^T` (one per pre spike), the gradient is accumulated in rows of
    `W^T`, and the optimiser updates the storage in its own order, so no step ever transposes the full matrix."""

    kind = "dense"
    trainable = True
    _transposed = True  # storage is `weight.T` (dense); conv kernels are stored as they are

    def __init__(self, spec: LayerSpec, n_pre: int, generator: torch.Generator) -> None:
        self.spec = spec
        self.n_pre = int(n_pre)
        self.n_post = int(spec.size)
        self.weight_shape: tuple[int, ...] = (self.n_post, self.n_pre)
        self.storage = torch.empty(0)
        self.weight = _init_weight(self.weight_shape, spec, generator)

    @property
    def weight(self) -> torch.Tensor:
        """Trainable weights `weight_shape` float32: a live view of the storage (in-place changes are seen)."""
        return self.storage.T if self._transposed else self.storage

    @weight.setter
    def weight(self, value: torch.Tensor) -> None:
        value = torch.as_tensor(value)
        if tuple(value.shape) != self.weight_shape:
            raise ValueError(f"layer {self.spec.name!r}: weight must have shape {self.weight_shape}, "
                             f"got {tuple(value.shape)}")
        if not value.is_floating_point():
            raise ValueError(f"layer {self.spec.name!r}: weight must be floating point, got {value.dtype}")
        device = self.storage.device if self.storage.numel() else value.device
        value = value.detach().to(device=device, dtype=torch.float32)
        self.storage = (value.T if self._transposed else value).contiguous()

    @property
    def vth(self) -> float:
        return float(self.spec.threshold)

    def forward(self, ks: KernelSet, pre: Trains) -> Trains:
        return ks.dense_forward(pre, self)

    def _coef(self, ks: KernelSet, k: Any, side: torch.Tensor, post: Trains, pc: torch.Tensor,
              step: BackwardStep) -> torch.Tensor:
        """`delta (1 + sigma) gamma` (algorithm.md §3.2-9, §3.5, §3.6)."""
        sigma = rules.side_effect(side, pc, ks.row_sums(self)[0], self.vth)
        coef = step.delta * (1.0 + sigma)
        if step.lateral is not None:
            counts, labels = step.lateral
            coef = coef * ks.lateral_factor(k, post, step.samples, counts, labels, self.vth,
                                            self.spec.lateral_inhibition)
        return coef

    def backward(self, ks: KernelSet, post: Trains, pre: Trains, step: BackwardStep, acc: Any) -> torch.Tensor | None:
        """Adds this layer's data gradient for the visited samples into `acc`; returns the error back-propagated to
        the layer below (float64 `[A, n_pre]`, before its division by that layer's vth), or None."""
        k, side = ks.spsp(post, step.samples, self.spec.neuron)
        pc, prc = take(post.counts, step.samples), take(pre.counts, step.samples)
        coef = self._coef(ks, k, side, post, pc, step)
        ks.dense_grad(acc, self, k, coef, step.samples, pre, pc, prc)
        if not step.need_pre_delta:
            return None
        if step.effect_ratio:
            return ks.dense_effect(self, k, step.delta, step.samples, pre, pc, prc)
        return rules.plain_error(step.delta, self.weight.detach())

    def __repr__(self) -> str:
        return f"DenseLayer({self.spec.name!r}, {self.n_pre} -> {self.n_post}, vth={self.vth:g})"


class ConvLayer(DenseLayer):
    """A spiking convolution (algorithm.md §1): `weight [c_out, c_in, k, k]` float32 (settable), valid
    cross-correlation, stride 1, fires iff `v > vth` exactly. Neurons `out_shape = (c_out, H-k+1, W-k+1)`."""

    kind = "conv"
    _transposed = False

    def __init__(self, spec: LayerSpec, in_shape: tuple[int, int, int], generator: torch.Generator) -> None:
        self.spec = spec
        self.in_shape = in_shape
        self.out_shape = cnn.conv_output_shape(in_shape, int(spec.channels), int(spec.kernel))
        self.n_pre = int(np.prod(in_shape))
        self.n_post = int(np.prod(self.out_shape))
        self.weight_shape = (int(spec.channels), in_shape[0], int(spec.kernel), int(spec.kernel))
        self.storage = torch.empty(0)
        self.weight = _init_weight(self.weight_shape, spec, generator)

    def forward(self, ks: KernelSet, pre: Trains) -> Trains:
        return ks.conv_forward(pre, self)

    def backward(self, ks: KernelSet, post: Trains, pre: Trains, step: BackwardStep, acc: Any) -> torch.Tensor | None:
        k, side = ks.spsp(post, step.samples, self.spec.neuron)
        pc, prc = take(post.counts, step.samples), take(pre.counts, step.samples)
        w = self.weight.detach()
        coef = step.delta * (1.0 + cnn.conv_side_effect(side, pc, w, self.vth))
        ks.conv_grad(acc, self, k, coef, step.samples, pre, pc, prc)
        if not step.need_pre_delta:
            return None
        if step.effect_ratio:
            return ks.conv_effect(self, k, step.delta, step.samples, pre, pc, prc)
        return cnn.conv_plain_error(step.delta, w, self.in_shape)

    def __repr__(self) -> str:
        c, h, w = self.in_shape
        o, ho, wo = self.out_shape
        return f"ConvLayer({self.spec.name!r}, {c}x{h}x{w} -> {o}x{ho}x{wo}, k={self.spec.kernel}, vth={self.vth:g})"


class PoolLayer:
    """Spiking pooling (algorithm.md §1): weight 1 over non-overlapping `w x w` windows, threshold `vth - 1e-6`;
    nothing to train (`weight` is None). Its backward passes the error on without dividing by its own vth."""

    kind = "pool"
    trainable = False
    weight = None

    def __init__(self, spec: LayerSpec, in_shape: tuple[int, int, int]) -> None:
        self.spec = spec
        self.in_shape = in_shape
        self.window = int(spec.window)
        self.out_shape = cnn.pool_output_shape(in_shape, self.window)
        self.n_pre = int(np.prod(in_shape))
        self.n_post = int(np.prod(self.out_shape))

    @property
    def vth(self) -> float:
        return float(self.spec.threshold)

    def forward(self, ks: KernelSet, pre: Trains) -> Trains:
        return ks.pool_forward(pre, self)

    def backward(self, ks: KernelSet, post: Trains, pre: Trains, step: BackwardStep, acc: Any) -> torch.Tensor | None:
        if not step.need_pre_delta:
            return None
        pc, prc = take(post.counts, step.samples), take(pre.counts, step.samples)
        effect = None
        if step.effect_ratio:
            k, _ = ks.spsp(post, step.samples, self.spec.neuron)
            effect = ks.pool_effect(self, k, step.samples, pre)
        return cnn.pool_error(effect, step.delta, pc, prc, self.in_shape, self.window)

    def __repr__(self) -> str:
        c, h, w = self.in_shape
        return f"PoolLayer({self.spec.name!r}, {c}x{h}x{w} -> {'x'.join(map(str, self.out_shape))}, vth={self.vth:g})"


Layer = DenseLayer | ConvLayer | PoolLayer
