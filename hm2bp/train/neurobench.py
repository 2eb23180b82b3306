"""NeuroBench's cost metrics of a network, computed from its weights and its forward spike counts (no hooks): what
`hm2bp eval` reports beside the accuracy. Definitions as NeuroBench 2.x publishes them (`neurobench.metrics`);
docs/neurobench.md states them and how the network maps onto NeuroBench's model.

Static (`network_cost`):
* **footprint**: bytes of the model's parameters, here every synaptic weight as float32 (the trainable weights and
  the fixed lateral-inhibition matrix `[n, n]` of a layer that has one; pool layers have none);
* **connection sparsity**: zero weights / all weights of the connection layers (dense, conv, lateral).

Workload (`NeuroBenchMeter`, accumulated over the samples of an evaluation):
* **activation sparsity**: 1 - spikes / (samples x steps x neurons) over every spiking layer (pool layers
  included; the input is not an activation), and the same per layer;
* **synaptic operations** per sample: `Dense` = steps x the connections' dense products (`n_out x n_in` per step for
  a dense layer, `c_out H' W' c_in k^2` for a conv layer, `n^2` for lateral inhibition); `Effective_ACs` = the
  accumulates the spikes cause: every spike of a presynaptic neuron (or input unit) counts its non-zero outgoing
  weights; `Effective_MACs` = 0, since every layer's input is binary spikes. Pooling is no connection layer in
  NeuroBench (its fixed unit-weight sums are not counted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

#: Bytes of one stored weight (float32).
WEIGHT_BYTES = 4


@dataclass
class Connection:
    """One connection layer as NeuroBench counts it: `source` the layer whose spikes drive it (None: the network's
    input), `fanout` float64 `[n_pre]` the non-zero outgoing weights of every presynaptic neuron, `dense_per_step`
    the products of one step with every input and weight counted, `weights` / `zeros` its weight entries."""

    name: str
    source: str | None
    fanout: torch.Tensor
    dense_per_step: int
    weights: int
    zeros: int


def conv_fanout(weight: torch.Tensor, in_shape: tuple[int, int, int], out_shape: tuple[int, int, int]) -> torch.Tensor:
    """Non-zero outgoing weights of every input unit of a valid conv (`[c_in*H*W]` float64): the transposed conv of
    ones with the binary kernel, so border units count only the outputs they reach."""
    nonzero = (weight.detach().cpu() != 0).to(torch.float64)
    ones = torch.ones(1, *out_shape, dtype=torch.float64)
    return F.conv_transpose2d(ones, nonzero).reshape(math.prod(in_shape))


def connections(network) -> list[Connection]:
    """The connection layers of a network, input side first (pool layers have none: NeuroBench counts no pooling)."""
    out, source = [], None
    for name in network.layer_names:
        layer = network.layer(name)
        if layer.kind != "pool":
            w = layer.weight.detach().cpu()
            if layer.kind == "conv":
                fanout = conv_fanout(w, layer.in_shape, layer.out_shape)
                dense = layer.n_post * math.prod(w.shape[1:])
            else:
                fanout, dense = (w != 0).sum(0).to(torch.float64), layer.n_post * layer.n_pre
            out.append(Connection(name, source, fanout, dense, w.numel(), int((w == 0).sum())))
            n, w0 = layer.n_post, layer.spec.lateral_inhibition
            if layer.kind == "dense" and w0 != 0.0:  # -w0 off the diagonal, 0 on it
                out.append(Connection(f"{name}.lateral", name, torch.full((n,), n - 1.0, dtype=torch.float64),
                                      n * n, n * n, n))
        source = name
    return out


def network_cost(network) -> dict[str, Any]:
    """NeuroBench's static metrics: `footprint` (bytes), `connection_sparsity`, and `parameters` (weights counted)."""
    conns = connections(network)
    n = sum(c.weights for c in conns)
    return {"footprint": WEIGHT_BYTES * n, "connection_sparsity": sum(c.zeros for c in conns) / n if n else 0.0,
            "parameters": n}


class NeuroBenchMeter:
    """Accumulates NeuroBench's workload metrics over forward passes: `add(*network.spike_counts(spikes))` per
    batch, `result()` at the end. Sums stay on the network's device until then."""

    def __init__(self, network) -> None:
        self.steps = int(network.steps)
        self.neurons = {name: network.layer(name).n_post for name in network.layer_names}
        self.connections = connections(network)
        device = network.device
        for c in self.connections:
            c.fanout = c.fanout.to(device)
        self.spikes = {name: torch.zeros((), dtype=torch.int64, device=device) for name in self.neurons}
        self.effective = {c.name: torch.zeros((), dtype=torch.float64, device=device) for c in self.connections}
        self.samples = 0
        self.static = network_cost(network)

    def add(self, inputs: torch.Tensor, counts: dict[str, torch.Tensor]) -> None:
        """One batch: the input units' spike counts `int64 [B, n_inputs]` and every layer's `{layer: int64 [B, n]}`
        (`Network.spike_counts`)."""
        totals = {name: c.sum(0) for name, c in counts.items()}
        totals[None] = inputs.sum(0)
        for c in self.connections:
            self.effective[c.name] += totals[c.source].to(torch.float64) @ c.fanout
        for name, total in totals.items():
            if name is not None:
                self.spikes[name] += total.sum()
        self.samples += int(inputs.shape[0])

    def result(self) -> dict[str, Any]:
        """The metrics (per sample where NeuroBench says so), JSON-ready; see the module docstring."""
        per = max(self.samples, 1)
        slots = {name: self.samples * self.steps * n for name, n in self.neurons.items()}
        spikes = {name: int(s) for name, s in self.spikes.items()}
        by_layer = {name: 1.0 - spikes[name] / slots[name] if slots[name] else 0.0 for name in slots}
        total_slots = sum(slots.values())
        by_conn = {c.name: {"Effective_ACs": float(self.effective[c.name]) / per,
                            "Dense": float(self.steps * c.dense_per_step) if self.samples else 0.0}
                   for c in self.connections}
        return {
            **self.static, "samples": self.samples,
            "activation_sparsity": 1.0 - sum(spikes.values()) / total_slots if total_slots else 0.0,
            "activation_sparsity_by_layer": by_layer,
            "synaptic_operations": {"Effective_MACs": 0.0,
                                    "Effective_ACs": sum(v["Effective_ACs"] for v in by_conn.values()),
                                    "Dense": sum(v["Dense"] for v in by_conn.values())},
            "synaptic_operations_by_connection": by_conn,
        }


def format_neurobench(result: dict[str, Any]) -> str:
    """Two lines for the console: the workload and the static metrics."""
    ops = result["synaptic_operations"]
    layers = ", ".join(f"{k} {v:.4f}" for k, v in result["activation_sparsity_by_layer"].items())
    return (f"NeuroBench, per sample: synaptic operations {ops['Effective_ACs']:.4g} effective ACs of "
            f"{ops['Dense']:.4g} dense ({ops['Effective_MACs']:g} MACs); activation sparsity "
            f"{result['activation_sparsity']:.4f} ({layers})\n"
            f"NeuroBench, static: footprint {result['footprint']:,} bytes ({result['parameters']:,} float32 weights), "
            f"connection sparsity {result['connection_sparsity']:.4f}")
