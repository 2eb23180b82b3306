"""What a kernel set is: the HM2-BP composition of a layer's forward and backward, written once, over primitives that
every set implements with one signature.

A layer makes one call per direction (`dense_forward`, `dense_backward`, ... below); that call composes the
primitives (the LIF scan, the S-PSP read-out, the side effect, the gradient, the back-propagated error) in the order
of `docs/algorithm.md` §1 and §3, and returns the next layer's trains or error. A set may override a whole
composition to fuse it (the triton set's output stage).

A kernel set owns the representation of spike trains on its device and everything that touches them:

* `numba`: numpy uint8 rasters plus per-(sample, step) spike lists (CSR), spike-driven numba kernels, the batch
  cut into small chunks spread over CPU threads (CPU tensors only);
* `torch`: bool tensors and the plain torch functions of `hm2bp.rules`, the readable reference, on any device;
* `triton`: int16 spike codes (`hm2bp.kernels.triton.lif`), one fused Triton kernel per layer for the LIF scan,
  the S-PSP read-out and the effect-ratio sums, float64 cuBLAS/cuDNN products for the currents and the weight
  gradients, no host synchronisation (CUDA; CPU tensors under `TRITON_INTERPRET=1`).

Conventions shared by every set (shapes `[batch, time, unit]`, time in steps):
* `Trains.counts` is an int64 torch tensor `[B, n]` on the network's device in every set;
* `samples` selects the samples of a chunk that the backward pass visits (those with a non-zero output error; a
  zero error gives an exactly zero data gradient): an index array (numba: numpy, torch: tensor) or None = all
  samples (triton: selecting would need the host to read the errors);
* `K` (S-PSP read-out, `hm2bp.rules.spsp`) has one row per selected sample, `[A, T, n_post]` float32, so that
  `E_b = K_b^T P_b` (+ the 0.1 fallback); `side` is float64 `[A, n_post]`;
* every error, ratio and coefficient is a float64 torch tensor `[A, n]` on the network's device;
* gradients are accumulated per layer in an accumulator the set owns and finished (batch mean + regulariser) into a
  float32 tensor of the layer's `weight_shape` (a view of the weight's storage order).

A set reads a layer's plain attributes only (`LayerParams`); it never calls back into the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import torch

from hm2bp.config import LayerSpec, LossSpec, NeuronParams, RegularizerSpec
from hm2bp.rules import conv as rules_conv
from hm2bp.rules import gradient as rules


@dataclass
class Trains:
    """The spikes of one layer (or of the network input) for a chunk of samples, in the set's representation.

    `spikes` [B, T, n] (numba: uint8 numpy; torch: bool tensor; triton: int16 codes, or the bool input),
    `counts` int64 tensor [B, n], `current` float32 [B, T, n] forward current of the layer (None for the input),
    `csr` the set's spike lists (numba, triton; None until made), `regular` False when the trains may break the
    refractory gap (the synthetic train of a silent label with a period <= T_R; only the triton set cares)."""

    spikes: Any
    counts: torch.Tensor
    current: Any = None
    csr: tuple | None = None
    regular: bool = True


@dataclass
class BackwardStep:
    """What a layer's backward pass gets besides the trains.

    `samples` the samples visited (kernel-set convention), `delta` float64 `[A, n_post]` the layer's error (already
    divided by its vth where the rules say so), `need_pre_delta` False for the first layer, `effect_ratio` the
    config's choice of back-propagated error, `lateral` the true output counts and labels of the visited samples
    when the lateral factor applies (output layer with lateral inhibition), else None."""

    samples: Any
    delta: torch.Tensor
    need_pre_delta: bool
    effect_ratio: bool
    lateral: tuple[torch.Tensor, torch.Tensor] | None = None


@dataclass
class OutputError:
    """What the output stage (algorithm.md §3.2-1..5, §3.14) hands the backward walk: `post` the output trains with
    the silent-label replacement, `samples` the samples to visit, `delta` float64 `[A, n_out]` their dead-zone error
    times the sample weights over the output vth, `lateral` (true counts, labels) of those samples when the output
    layer has lateral inhibition, `cost` float64 `[B]` the logged cost of every sample."""

    post: Trains
    samples: Any
    delta: torch.Tensor
    lateral: tuple[torch.Tensor, torch.Tensor] | None
    cost: torch.Tensor

    @property
    def nothing_to_do(self) -> bool:
        """True when no sample has an error (the data gradient is exactly zero)."""
        return self.samples is not None and len(self.samples) == 0


class LayerParams(Protocol):
    """The plain attributes of a layer (`hm2bp.model.layers`) that a kernel set reads.

    `storage` holds the weights in storage order: dense `W^T [n_pre, n_post]` contiguous, conv
    `W [c_out, c_in, k, k]`; pool layers have none. `in_shape`/`out_shape` `(C, H, W)` and `window` exist for
    spatial layers only."""

    kind: str
    spec: LayerSpec
    vth: float
    n_pre: int
    n_post: int
    storage: torch.Tensor
    weight_shape: tuple[int, ...]


def take(x: torch.Tensor, samples: Any) -> torch.Tensor:
    """Rows `samples` of a per-sample tensor (all rows when `samples` is None)."""
    if samples is None:
        return x
    if not isinstance(samples, torch.Tensor):
        samples = torch.from_numpy(samples)
    return x[samples.to(x.device)]


def exact_matmul_precision() -> None:
    """No TF32 anywhere: float32 products on CUDA would otherwise run with a 10-bit mantissa (about 1e-3
    relative error). The float64 products this project uses are unaffected, but float32 ones must be exact too."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def flat_float32(*tensors: torch.Tensor) -> list[torch.Tensor] | None:
    """Flat float32 views of the memory of `tensors` (all in the same element order), or None unless all are
    float32 tensors on one device that are contiguous or, all alike, transposed-contiguous 2-D views (a dense
    layer's `weight` is the transposed view of its `[n_pre, n_post]` storage). The optimiser updates are
    elementwise, so storage order is as good as any: a fused update runs on these views."""
    out = []
    transposed = None
    for t in tensors:
        if t.dtype != torch.float32 or t.device != tensors[0].device:
            return None
        if t.is_contiguous():
            flip = False
        elif t.dim() == 2 and t.T.is_contiguous():
            flip = True
        else:
            return None
        if transposed is None:
            transposed = flip
        elif flip != transposed:
            return None
        out.append((t.detach().T if flip else t.detach()).reshape(-1))
    return out


def adam_scalars(lr: float, c1: float, c2: float, beta1: float, beta2: float,
                 eps: float) -> tuple[np.float32, ...]:
    """The float32 scalars of a fused Adam update, in kernel order: `b1, 1 - b1, b2, 1 - b2, lr, c1, c2, eps`
    (each rounded once, as a float32 tensor op would)."""
    f32 = np.float32
    return f32(beta1), f32(1.0 - beta1), f32(beta2), f32(1.0 - beta2), f32(lr), f32(c1), f32(c2), f32(eps)


class KernelSet:
    """The interface (see the module docstring): the compositions below, over primitives that every subclass
    implements; the layers and the network call nothing else.

    `name` is the backend name (`Network.backend`); `device` the device the network's tensors live on; `threads`
    and `chunk_size` how the set cuts a batch (1 and 0: whole, in the calling thread)."""

    name = "base"
    threads = 1
    chunk_size = 0

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)

    # ---- batch layout ----------------------------------------------------------------------------------------
    def configure(self, threads: int | None = None, chunk_size: int | None = None) -> None:
        """Set the threads / samples per chunk of a set that cuts batches (others ignore both)."""

    def chunks(self, batch: int) -> list[slice]:
        """How a batch is cut for forward + backward (each chunk sees the same weights)."""
        return [slice(0, batch)]

    def workers(self, n_chunks: int) -> int:
        """Threads that process the chunks (1: in the calling thread)."""
        return 1

    def prepare(self, layers: list) -> None:
        """Called once at the start of every network call, before any thread runs: per-call caches."""

    def jit_modules(self, kinds: set[str]) -> list[ModuleType]:
        """The modules whose compiled kernels a network of these layer kinds runs (for a first-run note)."""
        return []

    # ---- one call per layer and direction: the HM2-BP composition ---------------------------------------------
    def dense_forward(self, layer: LayerParams, pre: Trains) -> Trains:
        """algorithm.md §1: the layer's trains (current included) from the pre trains."""
        return self.lif(layer, self.dense_current(layer, pre), layer.spec.lateral_inhibition)

    def conv_forward(self, layer: LayerParams, pre: Trains) -> Trains:
        """algorithm.md §1, conv: fires iff `v > vth` (no epsilon)."""
        return self.lif(layer, self.conv_current(layer, pre), epsilon=False)

    def pool_forward(self, layer: LayerParams, pre: Trains) -> Trains:
        return self.lif(layer, self.pool_current(layer, pre))

    def output_stage(self, layer: LayerParams, out: Trains, labels: torch.Tensor, weights: torch.Tensor,
                     loss: LossSpec, steps: int) -> OutputError:
        """algorithm.md §3.2-1..5 and §3.14 for the output layer's trains `out`: the errors, the silent label, the
        samples to visit and the logged cost."""
        post, error, cost = self.output_errors(out, labels, weights, loss, layer.spec.neuron, steps)
        samples = self.active(error)  # a zero error gives an exactly zero data gradient
        lateral = None
        if layer.kind == "dense" and layer.spec.lateral_inhibition != 0.0:
            lateral = (take(out.counts, samples), take(labels, samples))
        return OutputError(post, samples, take(error, samples) / layer.vth, lateral, cost)

    def dense_backward(self, layer: LayerParams, post: Trains, pre: Trains, step: BackwardStep,
                       acc: Any) -> torch.Tensor | None:
        """algorithm.md §3.2-§3.6: adds the layer's data gradient of the visited samples into `acc`; returns the
        error back-propagated to the layer below (float64 `[A, n_pre]`, before its division by that layer's vth),
        or None for the first layer."""
        k, side = self.spsp(post, step.samples, layer.spec.neuron)
        pc, prc = take(post.counts, step.samples), take(pre.counts, step.samples)
        # coef = delta (1 + sigma) gamma (algorithm.md §3.2-9, §3.5, §3.6)
        coef = step.delta * (1.0 + self.side_effect(side, pc, self.row_sums(layer)[0], layer.vth))
        if step.lateral is not None:
            counts, labels = step.lateral
            coef = coef * self.lateral_factor(k, post, step.samples, counts, labels, layer.vth,
                                              layer.spec.lateral_inhibition)
        effect_delta = step.delta if step.need_pre_delta and step.effect_ratio else None
        error = self.dense_grad_and_effect(acc, layer, k, coef, effect_delta, step.samples, pre, pc, prc)
        if not step.need_pre_delta:
            return None
        if step.effect_ratio:
            return error
        return rules.plain_error(step.delta, layer.storage.detach().T)

    def conv_backward(self, layer: LayerParams, post: Trains, pre: Trains, step: BackwardStep,
                      acc: Any) -> torch.Tensor | None:
        """algorithm.md §3.16 for a conv layer (as `dense_backward`; the error below is over its input units)."""
        k, side = self.spsp(post, step.samples, layer.spec.neuron)
        pc, prc = take(post.counts, step.samples), take(pre.counts, step.samples)
        w = layer.storage.detach()
        coef = step.delta * (1.0 + self.side_effect(side, pc, rules_conv.conv_row_sums(w, layer.n_post), layer.vth))
        effect_delta = step.delta if step.need_pre_delta and step.effect_ratio else None
        error = self.conv_grad_and_effect(acc, layer, k, coef, effect_delta, step.samples, pre, pc, prc)
        if not step.need_pre_delta:
            return None
        if step.effect_ratio:
            return error
        return rules_conv.conv_plain_error(step.delta, w, layer.in_shape)

    def pool_backward(self, layer: LayerParams, post: Trains, pre: Trains, step: BackwardStep,
                      acc: Any) -> torch.Tensor | None:
        """algorithm.md §3.16 for a pool layer: nothing to train; the error passed to its inputs (not divided by
        its own vth)."""
        if not step.need_pre_delta:
            return None
        pc, prc = take(post.counts, step.samples), take(pre.counts, step.samples)
        effect = None
        if step.effect_ratio:
            k, _ = self.spsp(post, step.samples, layer.spec.neuron)
            effect = self.pool_effect(layer, k, step.samples, pre)
        return rules_conv.pool_error(effect, step.delta, pc, prc, layer.in_shape, layer.window)

    # ---- forward primitives ----------------------------------------------------------------------------------
    def inputs(self, spikes: torch.Tensor) -> Trains:
        """The network input (bool `[B, T, n]` on the network's device) as trains."""
        raise NotImplementedError

    def as_bool(self, trains: Trains) -> torch.Tensor:
        """The spikes as a bool tensor `[B, T, n]` on the network's device."""
        raise NotImplementedError

    def dense_current(self, layer: LayerParams, pre: Trains) -> Any:
        """float32 `[B, T, n_post]` current `R = P W^T` (the exact sum rounded once)."""
        raise NotImplementedError

    def conv_current(self, layer: LayerParams, pre: Trains) -> Any:
        raise NotImplementedError

    def pool_current(self, layer: LayerParams, pre: Trains) -> Any:
        return rules_conv.pool_current(self.as_bool(pre), layer.in_shape, layer.window)

    def lif(self, layer: LayerParams, current: Any, lateral: float = 0.0, epsilon: bool = True) -> Trains:
        """The LIF scan of algorithm.md §1 over `current`: the layer's trains."""
        raise NotImplementedError

    # ---- output primitives -----------------------------------------------------------------------------------
    def output_errors(self, out: Trains, labels: torch.Tensor, weights: torch.Tensor, loss: LossSpec,
                      nrn: NeuronParams, steps: int) -> tuple[Trains, torch.Tensor, torch.Tensor]:
        """(the output trains with the silent-label replacement, the dead-zone error of the true counts times the
        sample weights `[B, n]` float64, the logged cost `[B]` float64)."""
        error = self.output_error(out.counts, labels, loss) * weights.view(-1, 1)
        post = self.silent_label(out, labels, steps, loss.desired)
        return post, error, rules.cost_of_error(self.output_error(post.counts, labels, loss))

    def output_error(self, counts: torch.Tensor, labels: torch.Tensor, loss: LossSpec) -> torch.Tensor:
        return rules.output_error(counts, labels, loss)

    def silent_label(self, out: Trains, labels: torch.Tensor, steps: int, desired: float) -> Trains:
        """algorithm.md §3.2-5: the output trains with the synthetic regular train for a silent label neuron."""
        raise NotImplementedError

    def active(self, delta_out: torch.Tensor) -> Any:
        """`samples` for the backward pass: those with a non-zero output error (None = all)."""
        raise NotImplementedError

    # ---- backward primitives ---------------------------------------------------------------------------------
    def spsp(self, post: Trains, samples: Any, nrn: NeuronParams) -> tuple[Any, torch.Tensor]:
        """(K, side) of a layer's (possibly modified) trains for the selected samples."""
        raise NotImplementedError

    def side_effect(self, side: torch.Tensor, counts: torch.Tensor, row_sum: torch.Tensor,
                    vth: float) -> torch.Tensor:
        return rules.side_effect(side, counts, row_sum, vth)

    def lateral_factor(self, k: Any, post: Trains, samples: Any, counts: torch.Tensor, labels: torch.Tensor,
                       vth: float, w0: float) -> torch.Tensor:
        raise NotImplementedError

    def row_sums(self, layer: LayerParams) -> tuple[torch.Tensor, torch.Tensor]:
        """`(sum_j W_ij, sum_j W_ij^2)` float64 `[n_post]` (dense) of the layer's current weights."""
        raise NotImplementedError

    def new_accumulator(self, layer: LayerParams) -> Any:
        raise NotImplementedError

    def merge(self, accs: list[Any], layer: LayerParams) -> Any:
        """One accumulator holding the sum of several (one per worker thread; one unless the set has threads)."""
        return accs[0]

    def dense_grad(self, acc: Any, layer: LayerParams, k: Any, coef: torch.Tensor, samples: Any, pre: Trains,
                   post_counts: torch.Tensor, pre_counts: torch.Tensor) -> None:
        raise NotImplementedError

    def dense_effect(self, layer: LayerParams, k: Any, delta: torch.Tensor, samples: Any, pre: Trains,
                     post_counts: torch.Tensor, pre_counts: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def dense_grad_and_effect(self, acc: Any, layer: LayerParams, k: Any, coef: torch.Tensor,
                              delta: torch.Tensor | None, samples: Any, pre: Trains, post_counts: torch.Tensor,
                              pre_counts: torch.Tensor) -> torch.Tensor | None:
        """`dense_grad`, then (`delta` given) `dense_effect`'s error: one primitive, so that a set can walk the pre
        spikes once for both (a set overrides either this or the two it composes; the layer walk calls only this)."""
        self.dense_grad(acc, layer, k, coef, samples, pre, post_counts, pre_counts)
        if delta is None:
            return None
        return self.dense_effect(layer, k, delta, samples, pre, post_counts, pre_counts)

    def conv_grad(self, acc: Any, layer: LayerParams, k: Any, coef: torch.Tensor, samples: Any, pre: Trains,
                  post_counts: torch.Tensor, pre_counts: torch.Tensor) -> None:
        raise NotImplementedError

    def conv_effect(self, layer: LayerParams, k: Any, delta: torch.Tensor, samples: Any, pre: Trains,
                    post_counts: torch.Tensor, pre_counts: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def conv_grad_and_effect(self, acc: Any, layer: LayerParams, k: Any, coef: torch.Tensor, delta: torch.Tensor | None,
                             samples: Any, pre: Trains, post_counts: torch.Tensor,
                             pre_counts: torch.Tensor) -> torch.Tensor | None:
        """`conv_grad`, then (`delta` given) `conv_effect`'s error: one primitive, so that a set can walk the pre
        spikes once for both (a set overrides either this or the two it composes; the layer walk calls only this)."""
        self.conv_grad(acc, layer, k, coef, samples, pre, post_counts, pre_counts)
        if delta is None:
            return None
        return self.conv_effect(layer, k, delta, samples, pre, post_counts, pre_counts)

    def pool_effect(self, layer: LayerParams, k: Any, samples: Any, pre: Trains) -> torch.Tensor:
        raise NotImplementedError

    def finish(self, layer: LayerParams, acc: Any, batch: int, reg: RegularizerSpec) -> torch.Tensor:
        """The layer's gradient: `acc / batch + R(W)` (algorithm.md §3.7), float32 `weight_shape`; raises
        FloatingPointError on a non-finite value where the check is free of host synchronisation."""
        raise NotImplementedError

    def check_finite(self) -> None:
        """Raise FloatingPointError if the last call's gradients were flagged non-finite (sets that check in
        `finish` have nothing left to do)."""

    # ---- optimiser (algorithm.md §3.9) -----------------------------------------------------------------------
    def adam_update(self, w: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, lr: float, c1: float,
                    c2: float, beta1: float, beta2: float, eps: float) -> None:
        """One in-place Adam update of a layer (`c1 = 1 - b1t`, `c2 = 1 - b2t`); here with torch ops, the reference
        (any device, any layout), which sets with a fused kernel take for tensors it cannot run on."""
        m.mul_(beta1).add_(g, alpha=1.0 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        m_hat = m / c1
        v_hat = v / c2
        w.sub_(lr * m_hat / (v_hat.sqrt_() + eps))

    def sgd_update(self, w: torch.Tensor, g: torch.Tensor, u: torch.Tensor, momentum: float, lr: float) -> None:
        """One in-place SGD update with momentum (`u <- mu u + lr g`, `w <- w - u`), torch ops (the reference)."""
        u.mul_(momentum).add_(g, alpha=lr)
        w.sub_(u)
