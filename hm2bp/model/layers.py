"""The layer kinds of an HM2-BP network: each owns its weights and hands its spikes to the network's kernel set
(`hm2bp.kernels`, chosen when the network is built) once per direction: forward (docs/algorithm.md §1) and the
HM2-BP backward (docs/algorithm.md §3.2-§3.7, §3.16 for conv and pool), whose composition the kernel set holds.
A layer's attributes are plain values (`hm2bp.kernels.base.LayerParams`): the kernel set reads them, never calls
back.

Neurons of a conv / pool layer `[C, H, W]` are flattened channel-major (`c*H*W + x*W + y`), so a dense layer after
them sees exactly the reference's order.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from hm2bp.config import LayerSpec
from hm2bp.geometry import conv_output_shape, pool_output_shape
from hm2bp.kernels.base import BackwardStep, KernelSet, Trains


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
        self.vth = float(spec.threshold)
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

    def forward(self, ks: KernelSet, pre: Trains) -> Trains:
        """This layer's trains from the pre trains (algorithm.md §1)."""
        return ks.dense_forward(self, pre)

    def backward(self, ks: KernelSet, post: Trains, pre: Trains, step: BackwardStep, acc: Any) -> torch.Tensor | None:
        """Adds this layer's data gradient for the visited samples into `acc`; returns the error back-propagated to
        the layer below (float64 `[A, n_pre]`, before its division by that layer's vth), or None."""
        return ks.dense_backward(self, post, pre, step, acc)

    def __repr__(self) -> str:
        return f"DenseLayer({self.spec.name!r}, {self.n_pre} -> {self.n_post}, vth={self.vth:g})"


class ConvLayer(DenseLayer):
    """A spiking convolution (algorithm.md §1): `weight [c_out, c_in, k, k]` float32 (settable), valid
    cross-correlation, stride 1, fires iff `v > vth` exactly. Neurons `out_shape = (c_out, H-k+1, W-k+1)`."""

    kind = "conv"
    _transposed = False

    def __init__(self, spec: LayerSpec, in_shape: tuple[int, int, int], generator: torch.Generator) -> None:
        self.spec = spec
        self.vth = float(spec.threshold)
        self.in_shape = in_shape
        self.out_shape = conv_output_shape(in_shape, int(spec.channels), int(spec.kernel))
        self.n_pre = math.prod(in_shape)
        self.n_post = math.prod(self.out_shape)
        self.weight_shape = (int(spec.channels), in_shape[0], int(spec.kernel), int(spec.kernel))
        self.storage = torch.empty(0)
        self.weight = _init_weight(self.weight_shape, spec, generator)

    def forward(self, ks: KernelSet, pre: Trains) -> Trains:
        return ks.conv_forward(self, pre)

    def backward(self, ks: KernelSet, post: Trains, pre: Trains, step: BackwardStep, acc: Any) -> torch.Tensor | None:
        return ks.conv_backward(self, post, pre, step, acc)

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
        self.vth = float(spec.threshold)
        self.in_shape = in_shape
        self.window = int(spec.window)
        self.out_shape = pool_output_shape(in_shape, self.window)
        self.n_pre = math.prod(in_shape)
        self.n_post = math.prod(self.out_shape)

    def forward(self, ks: KernelSet, pre: Trains) -> Trains:
        return ks.pool_forward(self, pre)

    def backward(self, ks: KernelSet, post: Trains, pre: Trains, step: BackwardStep, acc: Any) -> torch.Tensor | None:
        return ks.pool_backward(self, post, pre, step, acc)

    def __repr__(self) -> str:
        c, h, w = self.in_shape
        return f"PoolLayer({self.spec.name!r}, {c}x{h}x{w} -> {'x'.join(map(str, self.out_shape))}, vth={self.vth:g})"


Layer = DenseLayer | ConvLayer | PoolLayer
