"""The `torch` kernel set: bool spike tensors and plain torch operations on any device.

The readable reference of the algorithm (the other sets are tested against it): the LIF scan is a Python loop over
time steps (`hm2bp.lif.lif_scan_torch`), the S-PSP read-out a product with `[T, T]` filter matrices
(`hm2bp.spsp.spsp_readout_torch`), sums run in float64. Not fast on a GPU (one launch per op and step); the
`triton` set is the CUDA path.
"""

from __future__ import annotations

from typing import Any

import torch

from hm2bp import conv as cnn
from hm2bp import hm2bp_grad as rules
from hm2bp.config import NeuronParams, RegularizerSpec
from hm2bp.kernels.base import KernelSet, Trains, take
from hm2bp.lif import input_current_torch, lif_scan_torch
from hm2bp.spsp import spsp_readout_torch

F64 = torch.float64


def exact_matmul_precision() -> None:
    """No TF32 anywhere: float32 products on CUDA would otherwise run with a 10-bit mantissa (about 1e-3
    relative error). The float64 products this project uses are unaffected, but float32 ones must be exact too."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


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

    def _lif(self, current: torch.Tensor, layer, lateral: float = 0.0, epsilon: bool = True) -> Trains:
        nrn = layer.spec.neuron
        spikes, counts = lif_scan_torch(current, layer.vth, nrn.tau_m, nrn.tau_s, nrn.refractory, lateral, epsilon)
        return Trains(spikes, counts, current)

    def dense_forward(self, pre: Trains, layer) -> Trains:
        return self._lif(input_current_torch(pre.spikes, layer.weight), layer, layer.spec.lateral_inhibition)

    def conv_forward(self, pre: Trains, layer) -> Trains:
        cur = cnn.conv_current_torch(pre.spikes, layer.weight.detach(), layer.in_shape)
        return self._lif(cur, layer, epsilon=False)

    def pool_forward(self, pre: Trains, layer) -> Trains:
        return self._lif(cnn.pool_current(pre.spikes, layer.in_shape, layer.window), layer)

    def as_bool(self, trains: Trains) -> torch.Tensor:
        return trains.spikes

    # ---- output stage ----------------------------------------------------------------------------------------
    def silent_label(self, out: Trains, labels: torch.Tensor, steps: int, desired: float,
                     nrn: NeuronParams) -> Trains:
        spikes, counts = rules.replace_silent_label(out.spikes, out.counts, labels, desired)
        return Trains(spikes, counts, out.current)

    def active(self, delta_out: torch.Tensor) -> torch.Tensor:
        return torch.nonzero((delta_out != 0).any(1)).view(-1)

    # ---- backward --------------------------------------------------------------------------------------------
    def spsp(self, post: Trains, samples: Any, nrn: NeuronParams) -> tuple[torch.Tensor, torch.Tensor]:
        return spsp_readout_torch(take(post.spikes, samples).bool(), take(post.current, samples), nrn.refractory,
                                  nrn.tau_m, nrn.tau_s)

    def lateral_factor(self, k: torch.Tensor, post: Trains, samples: Any, counts: torch.Tensor,
                       labels: torch.Tensor, vth: float, w0: float) -> torch.Tensor:
        return rules.lateral_factor(k, take(post.spikes, samples), counts, labels, vth, w0)

    def row_sums(self, layer) -> tuple[torch.Tensor, torch.Tensor]:
        key = id(layer)
        if key not in self._sums:
            w = layer.weight.detach().reshape(layer.weight_shape[0], -1).to(F64)
            self._sums[key] = (w.sum(1), (w * w).sum(1))
        return self._sums[key]

    def new_accumulator(self, layer) -> dict[str, Any]:
        return {"g": None}

    def merge(self, accs: list[Any], layer) -> Any:
        return accs[0]

    @staticmethod
    def _add(acc: dict[str, Any], g: torch.Tensor) -> None:
        acc["g"] = g if acc["g"] is None else acc["g"] + g

    def dense_grad(self, acc, layer, k, coef, samples, pre, post_counts, pre_counts) -> None:
        g = rules.weight_gradient_torch(k, coef, take(pre.spikes, samples), post_counts, pre_counts, F64)
        self._add(acc, g)

    def dense_effect(self, layer, k, delta, samples, pre, post_counts, pre_counts) -> torch.Tensor:
        return rules.effect_ratio_error_torch(k, delta, layer.weight.detach(), take(pre.spikes, samples),
                                              post_counts, pre_counts)

    def conv_grad(self, acc, layer, k, coef, samples, pre, post_counts, pre_counts) -> None:
        g = cnn.conv_weight_gradient_torch(k.to(F64), coef, take(pre.spikes, samples), post_counts, pre_counts,
                                           layer.in_shape, layer.weight_shape)
        self._add(acc, g)

    def conv_effect(self, layer, k, delta, samples, pre, post_counts, pre_counts) -> torch.Tensor:
        return cnn.conv_effect_ratio_error_torch(k.to(F64), delta, layer.weight.detach(), take(pre.spikes, samples),
                                                 post_counts, pre_counts, layer.in_shape)

    def pool_effect(self, layer, k, samples, pre) -> torch.Tensor:
        return cnn.pool_effect(k, take(pre.spikes, samples), layer.in_shape, layer.window)

    def finish(self, layer, acc, batch: int, reg: RegularizerSpec) -> torch.Tensor:
        w = layer.weight.detach()
        g = cnn.conv_regularizer_grad(w, reg) if layer.kind == "conv" else rules.regularizer_grad(w, reg)
        if acc["g"] is not None:
            g = g + (acc["g"] / batch).to(torch.float32)
        if not bool(torch.isfinite(g).all()):
            raise FloatingPointError(f"non-finite gradient in layer {layer.spec.name!r}")
        return g
