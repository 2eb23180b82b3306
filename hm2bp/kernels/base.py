"""What a kernel set is: the operations the layers of `hm2bp.layers` call, with one signature for every set.

A kernel set owns the representation of spike trains on its device and everything that touches them:

* `numba`: numpy uint8 rasters plus per-(sample, step) spike lists (CSR), spike-driven numba kernels, the batch
  cut into small chunks spread over CPU threads (CPU tensors only);
* `torch`: bool tensors and plain torch ops, the readable reference, on any device;
* `triton`: int16 spike codes (`hm2bp.kernels.triton.lif`), one fused Triton kernel per layer for the LIF scan,
  the S-PSP read-out and the effect-ratio sums, float64 cuBLAS/cuDNN products for the currents and the weight
  gradients, no host synchronisation (CUDA; CPU tensors under `TRITON_INTERPRET=1`).

Conventions shared by every set (shapes `[batch, time, unit]`, time in steps):
* `Trains.counts` is an int64 torch tensor `[B, n]` on the network's device in every set;
* `samples` selects the samples of a chunk that the backward pass visits (those with a non-zero output error; a
  zero error gives an exactly zero data gradient): an index array (numba: numpy, torch: tensor) or None = all
  samples (triton: selecting would need the host to read the errors);
* `K` (S-PSP read-out, `hm2bp.spsp`) has one row per selected sample, `[A, T, n_post]` float32, so that
  `E_b = K_b^T P_b` (+ the 0.1 fallback); `side` is float64 `[A, n_post]`;
* every error, ratio and coefficient is a float64 torch tensor `[A, n]` on the network's device;
* gradients are accumulated per layer in an accumulator the set owns and finished (batch mean + regulariser) into a
  float32 tensor of the layer's `weight_shape` (a view of the weight's storage order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hm2bp import hm2bp_grad as rules
from hm2bp.config import LossSpec, NeuronParams, RegularizerSpec


@dataclass
class Trains:
    """The spikes of one layer (or of the network input) for a chunk of samples, in the set's representation.

    `spikes` [B, T, n] (numba: uint8 numpy; torch: bool tensor; triton: int16 codes, or the bool input),
    `counts` int64 tensor [B, n], `current` float32 [B, T, n] forward current of the layer (None for the input),
    `csr` the numba set's spike lists (None elsewhere), `regular` False when the trains may break the refractory
    gap (the synthetic train of a silent label with a period <= T_R; only the triton set cares)."""

    spikes: Any
    counts: torch.Tensor
    current: Any = None
    csr: tuple | None = None
    regular: bool = True


def take(x: torch.Tensor, samples: Any) -> torch.Tensor:
    """Rows `samples` of a per-sample tensor (all rows when `samples` is None)."""
    if samples is None:
        return x
    if not isinstance(samples, torch.Tensor):
        samples = torch.from_numpy(samples)
    return x[samples.to(x.device)]


class KernelSet:
    """The interface (see the module docstring). Subclasses implement every method; the layers call nothing else.

    `name` is the backend name (`Network.backend`); `device` the device the network's tensors live on."""

    name = "base"

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)

    # ---- batch layout ----------------------------------------------------------------------------------------
    def chunks(self, batch: int) -> list[slice]:
        """How a batch is cut for forward + backward (each chunk sees the same weights)."""
        return [slice(0, batch)]

    def workers(self, n_chunks: int) -> int:
        """Threads that process the chunks (1: in the calling thread)."""
        return 1

    def prepare(self, layers: list) -> None:
        """Called once at the start of every network call, before any thread runs: per-call caches."""

    # ---- forward ---------------------------------------------------------------------------------------------
    def inputs(self, spikes: torch.Tensor) -> Trains:
        raise NotImplementedError

    def dense_forward(self, pre: Trains, layer) -> Trains:
        raise NotImplementedError

    def conv_forward(self, pre: Trains, layer) -> Trains:
        raise NotImplementedError

    def pool_forward(self, pre: Trains, layer) -> Trains:
        raise NotImplementedError

    def as_bool(self, trains: Trains) -> torch.Tensor:
        """The spikes as a bool tensor `[B, T, n]` on the network's device."""
        raise NotImplementedError

    # ---- output stage ----------------------------------------------------------------------------------------
    def output_stage(self, out: Trains, labels: torch.Tensor, weights: torch.Tensor, loss: LossSpec,
                     nrn: NeuronParams, steps: int) -> tuple[Trains, torch.Tensor, torch.Tensor]:
        """algorithm.md §3.2-1..5 and §3.14: (the output trains with the silent-label replacement, the dead-zone
        error of the true counts times the sample weights `[B, n]` float64, the logged cost `[B]` float64)."""
        error = rules.output_error(out.counts, labels, loss) * weights.view(-1, 1)
        post = self.silent_label(out, labels, steps, loss.desired, nrn)
        return post, error, rules.logged_cost(post.counts, labels, loss)

    def silent_label(self, out: Trains, labels: torch.Tensor, steps: int, desired: float,
                     nrn: NeuronParams) -> Trains:
        """algorithm.md §3.2-5: the output trains with the synthetic regular train for a silent label neuron."""
        raise NotImplementedError

    def active(self, delta_out: torch.Tensor) -> Any:
        """`samples` for the backward pass: those with a non-zero output error (None = all)."""
        raise NotImplementedError

    # ---- backward --------------------------------------------------------------------------------------------
    def spsp(self, post: Trains, samples: Any, nrn: NeuronParams) -> tuple[Any, torch.Tensor]:
        """(K, side) of a layer's (possibly modified) trains for the selected samples."""
        raise NotImplementedError

    def lateral_factor(self, k: Any, post: Trains, samples: Any, counts: torch.Tensor, labels: torch.Tensor,
                       vth: float, w0: float) -> torch.Tensor:
        raise NotImplementedError

    def row_sums(self, layer) -> tuple[torch.Tensor, torch.Tensor]:
        """`(sum_j W_ij, sum_j W_ij^2)` float64 `[n_post]` (dense) of the layer's current weights."""
        raise NotImplementedError

    def new_accumulator(self, layer) -> Any:
        raise NotImplementedError

    def merge(self, accs: list[Any], layer) -> Any:
        """One accumulator holding the sum of several (one per worker thread)."""
        raise NotImplementedError

    def dense_grad(self, acc: Any, layer, k: Any, coef: torch.Tensor, samples: Any, pre: Trains,
                   post_counts: torch.Tensor, pre_counts: torch.Tensor) -> None:
        raise NotImplementedError

    def dense_effect(self, layer, k: Any, delta: torch.Tensor, samples: Any, pre: Trains,
                     post_counts: torch.Tensor, pre_counts: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def conv_grad(self, acc: Any, layer, k: Any, coef: torch.Tensor, samples: Any, pre: Trains,
                  post_counts: torch.Tensor, pre_counts: torch.Tensor) -> None:
        raise NotImplementedError

    def conv_effect(self, layer, k: Any, delta: torch.Tensor, samples: Any, pre: Trains,
                    post_counts: torch.Tensor, pre_counts: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pool_effect(self, layer, k: Any, samples: Any, pre: Trains) -> torch.Tensor:
        raise NotImplementedError

    def finish(self, layer, acc: Any, batch: int, reg: RegularizerSpec) -> torch.Tensor:
        """The layer's gradient: `acc / batch + R(W)` (algorithm.md §3.7), float32 `weight_shape`; raises
        FloatingPointError on a non-finite value where the check is free of host synchronisation."""
        raise NotImplementedError

    def check_finite(self) -> None:
        """Raise FloatingPointError if the last call's gradients were flagged non-finite (sets that check in
        `finish` have nothing left to do)."""

    # ---- optimiser -------------------------------------------------------------------------------------------
    optimizer_backend = "torch"  # the fused optimiser update `hm2bp.optim` uses for this set's weights
