"""The `torch` kernel set: bool spike tensors and the plain torch functions of `hm2bp.rules` on any device.

The readable reference of the algorithm (the other sets are tested against it): each primitive binds one rule, the
LIF scan is a Python loop over time steps (`hm2bp.rules.lif.lif_scan`), the S-PSP read-out a product with `[T, T]`
filter matrices (`hm2bp.rules.spsp.spsp_readout`), sums run in float64. Not fast on a GPU (one launch per op and
step); the `triton` set is the CUDA path.
"""

from __future__ import annotations

from typing import Any

import torch

from hm2bp.config import NeuronParams, RegularizerSpec
from hm2bp.kernels.base import KernelSet, LayerParams, Trains, exact_matmul_precision, take
from hm2bp.rules import conv as rules_conv
from hm2bp.rules import gradient as rules
from hm2bp.rules.lif import input_current, lif_scan
from hm2bp.rules.spsp import spsp_readout

F64 = torch.float64


class TorchKernels(KernelSet):
    name = "torch"

    def __init__(self, device: torch.device) -> None:
        super().__init__(device)
        if self.device.type == "cuda":
            exact_matmul_precision()
        self._sums: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def prepare(self, layers: list) -> None:
        self._sums = {}

    # ---- forward ---------------------------------------------------------------------------------------------
    def inputs(self, spikes: torch.Tensor) -> Trains:
        return Trains(spikes, spikes.sum(1))

    def as_bool(self, trains: Trains) -> torch.Tensor:
        return trains.spikes

    def dense_current(self, layer: LayerParams, pre: Trains) -> torch.Tensor:
        return input_current(pre.spikes, layer.storage.T)

    def conv_current(self, layer: LayerParams, pre: Trains) -> torch.Tensor:
        return rules_conv.conv_current(pre.spikes, layer.storage.detach(), layer.in_shape)

    def lif(self, layer: LayerParams, current: torch.Tensor, lateral: float = 0.0, epsilon: bool = True) -> Trains:
        nrn = layer.spec.neuron
        spikes, counts = lif_scan(current, layer.vth, nrn.tau_m, nrn.tau_s, nrn.refractory, lateral, epsilon)
        return Trains(spikes, counts, current)

    # ---- output stage ----------------------------------------------------------------------------------------
    def silent_label(self, out: Trains, labels: torch.Tensor, steps: int, desired: float) -> Trains:
        spikes, counts = rules.replace_silent_label(out.spikes, out.counts, labels, desired)
        return Trains(spikes, counts, out.current)

    def active(self, delta_out: torch.Tensor) -> torch.Tensor:
        return torch.nonzero((delta_out != 0).any(1)).view(-1)

    # ---- backward --------------------------------------------------------------------------------------------
    def spsp(self, post: Trains, samples: Any, nrn: NeuronParams) -> tuple[torch.Tensor, torch.Tensor]:
        return spsp_readout(take(post.spikes, samples).bool(), take(post.current, samples), nrn.refractory,
                            nrn.tau_m, nrn.tau_s)

    def lateral_factor(self, k: torch.Tensor, post: Trains, samples: Any, counts: torch.Tensor,
                       labels: torch.Tensor, vth: float, w0: float) -> torch.Tensor:
        return rules.lateral_factor(k, take(post.spikes, samples), counts, labels, vth, w0)

    def row_sums(self, layer: LayerParams) -> tuple[torch.Tensor, torch.Tensor]:
        key = id(layer)
        if key not in self._sums:
            w = layer.storage.detach().T.reshape(layer.weight_shape[0], -1).to(F64)
            self._sums[key] = (w.sum(1), (w * w).sum(1))
        return self._sums[key]

    def new_accumulator(self, layer: LayerParams) -> dict[str, Any]:
        return {"g": None}

    @staticmethod
    def _add(acc: dict[str, Any], g: torch.Tensor) -> None:
        acc["g"] = g if acc["g"] is None else acc["g"] + g

    def dense_grad(self, acc, layer, k, coef, samples, pre, post_counts, pre_counts) -> None:
        self._add(acc, rules.weight_gradient(k, coef, take(pre.spikes, samples), post_counts, pre_counts, F64))

    def dense_effect(self, layer, k, delta, samples, pre, post_counts, pre_counts) -> torch.Tensor:
        return rules.effect_ratio_error(k, delta, layer.storage.detach().T, take(pre.spikes, samples), post_counts,
                                        pre_counts)

    def conv_grad(self, acc, layer, k, coef, samples, pre, post_counts, pre_counts) -> None:
        self._add(acc, rules_conv.conv_weight_gradient(k.to(F64), coef, take(pre.spikes, samples), post_counts,
                                                       pre_counts, layer.in_shape, layer.weight_shape))

    def conv_effect(self, layer, k, delta, samples, pre, post_counts, pre_counts) -> torch.Tensor:
        return rules_conv.conv_effect_ratio_error(k.to(F64), delta, layer.storage.detach(),
                                                  take(pre.spikes, samples), post_counts, pre_counts,
                                                  layer.in_shape)

    def pool_effect(self, layer, k, samples, pre) -> torch.Tensor:
        return rules_conv.pool_effect(k, take(pre.spikes, samples), layer.in_shape, layer.window)

    def finish(self, layer: LayerParams, acc: Any, batch: int, reg: RegularizerSpec) -> torch.Tensor:
        w = layer.storage.detach()
        if layer.kind == "conv":
            g = rules_conv.conv_regularizer_grad(w, reg)
        else:
            w = w.T
            g = rules.regularizer_grad(w, reg)
        if acc["g"] is not None:
            g = g + (acc["g"] / batch).to(torch.float32)
        if not bool(torch.isfinite(g).all()):
            raise FloatingPointError(f"non-finite gradient in layer {layer.spec.name!r}")
        return g
