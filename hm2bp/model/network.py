"""`Network`: dense, conv and pool spiking layers (`hm2bp.model.layers`) with the reference LIF forward
(docs/algorithm.md §1) and the HM2-BP gradient (§3; §3.16 for conv / pool).

One layer walk for every kernel set: the forward goes up the layers, the output stage (docs/algorithm.md §3.2-1..5)
computes the errors, the backward goes down the layers, each layer making one call to the kernel set chosen when the
network was built (`hm2bp.kernels.make_kernels`).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from hm2bp.config import ConfigError, NetworkConfig, load_config
from hm2bp.geometry import as_input_shape, conv_output_shape, pool_output_shape
from hm2bp.kernels import BACKENDS, cpu_working_set, make_kernels
from hm2bp.kernels.base import BackwardStep, KernelSet, Trains
from hm2bp.model.layers import ConvLayer, DenseLayer, Layer, PoolLayer

__all__ = ["ConvLayer", "DenseLayer", "Network", "PoolLayer", "StepResult", "check_memory", "layer_sizes"]


@dataclass
class StepResult:
    """One forward + backward pass over a batch (what the trainer uses per step); tensors on the network's
    device."""

    grads: dict[str, torch.Tensor]
    counts: torch.Tensor  # int64 [B, n_out], true output counts of the forward pass
    predictions: torch.Tensor  # int64 [B], argmax of counts (ties -> lowest index, all silent -> 0)
    cost: torch.Tensor  # float64 [B], logged cost of algorithm.md §3.14 (with the silent-label replacement)


def layer_sizes(config: NetworkConfig, n_inputs: int, input_shape: tuple | None = None) -> list[tuple[str, int, int]]:
    """(layer name, neurons, weights) of every layer, computed from the config alone (nothing is allocated)."""
    out = []
    n_pre, shape = int(n_inputs), None
    if config.layers[0].type != "dense":
        shape = as_input_shape(input_shape, int(n_inputs))
    for spec in config.layers:
        if spec.type == "pool":
            shape = pool_output_shape(shape, int(spec.window))
            n_post, n_w = math.prod(shape), 0
        elif spec.type == "conv":
            n_w = int(spec.channels) * shape[0] * int(spec.kernel) ** 2
            shape = conv_output_shape(shape, int(spec.channels), int(spec.kernel))
            n_post = math.prod(shape)
        else:
            n_post, n_w, shape = int(spec.size), int(spec.size) * n_pre, None
        out.append((spec.name, n_post, n_w))
        n_pre = n_post
    return out


#: Bytes per weight while training: float32 weight, Adam's two float32 moments, one float32 gradient accumulator.
BYTES_PER_WEIGHT = 16
#: Bytes per neuron and step of one sample in a forward/backward chunk: uint8 spike, float32 current.
BYTES_PER_ACTIVATION = 5


def check_memory(config: NetworkConfig, n_inputs: int, input_shape: tuple | None, threads: int,
                 chunk: int) -> None:
    """ConfigError when training this network would need more memory than is available (checked before any
    weight is allocated); the message names the largest layer and the amounts."""
    from spikedata.resources import available_memory, format_bytes

    try:
        sizes = layer_sizes(config, n_inputs, input_shape)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    n_weights = sum(w for _, _, w in sizes)
    n_neurons = n_inputs + sum(n for _, n, _ in sizes)
    weights = BYTES_PER_WEIGHT * n_weights
    activations = BYTES_PER_ACTIVATION * threads * chunk * config.steps * n_neurons
    have = available_memory()
    if weights + activations > have:
        name, n_post, n_w = max(sizes, key=lambda t: (t[2], t[1]))
        raise ConfigError(
            f"layers: this network ({n_weights:,} weights, {n_neurons:,} neurons; largest layer {name!r} with "
            f"{n_post:,} neurons and {n_w:,} weights) would need {format_bytes(weights + activations)} of memory to "
            f"train ({format_bytes(weights)} for weights, optimiser state and gradients, "
            f"{format_bytes(activations)} for activations), but only {format_bytes(have)} is available"
        )


class Network:
    """HM2-BP network of dense, conv and pool layers. Use `Network.from_config`."""

    def __init__(self, config: NetworkConfig, n_inputs: int, input_shape: tuple | None = None,
                 generator: torch.Generator | None = None, backend: str = "auto", threads: int | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if isinstance(n_inputs, bool) or not isinstance(n_inputs, int | np.integer) or n_inputs < 1:
            raise ValueError(f"n_inputs must be a positive integer, got {n_inputs!r}")
        self.config = config
        self.n_inputs = int(n_inputs)
        self.input_shape = tuple(int(v) for v in input_shape) if input_shape is not None else (self.n_inputs,)
        if input_shape is not None and int(np.prod(self.input_shape)) != self.n_inputs:
            raise ValueError(f"input_shape {self.input_shape} does not hold n_inputs = {self.n_inputs} units")
        self.requested_backend = backend
        self._threads = threads
        check_memory(config, self.n_inputs, input_shape, *cpu_working_set(threads))
        if generator is None:
            generator = torch.Generator().manual_seed(config.train.seed)
        self._layers: dict[str, Layer] = {}
        n_pre = self.n_inputs
        shape = None  # (C, H, W) of the previous layer's neurons while they are spatial
        if config.layers[0].type != "dense":
            shape = as_input_shape(input_shape, self.n_inputs)
        for spec in config.layers:
            try:
                if spec.type == "pool":
                    layer: Layer = PoolLayer(spec, shape)
                    shape = layer.out_shape
                elif spec.type == "conv":
                    layer = ConvLayer(spec, shape, generator)
                    shape = layer.out_shape
                else:
                    layer = DenseLayer(spec, n_pre, generator)
                    shape = None
            except ValueError as exc:
                raise ValueError(f"layer {spec.name!r}: {exc}") from None
            self._layers[spec.name] = layer
            n_pre = layer.n_post
        self._kernels: KernelSet | None = None  # made for the weights' device on first use (`kernels`)

    @classmethod
    def from_config(cls, config: dict | str | Path | NetworkConfig, n_inputs: int, input_shape: tuple | None = None,
                    generator: torch.Generator | None = None, backend: str = "auto",
                    threads: int | None = None) -> Network:
        """Build from a config dict / TOML path / `NetworkConfig`; weights U[-scale, scale] from `generator`
        (seeded with `config.train.seed` when None). `backend`: the kernel set ("auto": numba for CPU tensors,
        triton for CUDA when Triton can be imported, else torch; chosen again by `to(device)`). `threads`: CPU
        threads of the numba set (default: the CPUs available to this process, at most 4)."""
        return cls(load_config(config), n_inputs, input_shape, generator, backend, threads)

    # ------------------------------------------------------------------------------------------- structure
    @property
    def kernels(self) -> KernelSet:
        """The kernel set for the weights' device (made on first use and again after a move to another
        device, from the backend asked for at construction)."""
        if self._kernels is None or self._kernels.device != self.device:
            self._kernels = make_kernels(self.requested_backend, self.device, self._threads)
        return self._kernels

    @property
    def backend(self) -> str:
        """The kernel set in use: "numba", "triton" or "torch"."""
        return self.kernels.name

    @property
    def chunk_size(self) -> int:
        """Samples per forward/backward chunk of a kernel set that cuts batches (0: the batch is processed whole)."""
        return self.kernels.chunk_size

    @chunk_size.setter
    def chunk_size(self, value: int) -> None:
        self.kernels.configure(chunk_size=int(value))

    @property
    def threads(self) -> int:
        """CPU threads the kernel set spreads the chunks over (1: the calling thread)."""
        return self.kernels.threads

    @threads.setter
    def threads(self, value: int) -> None:
        self._threads = int(value)
        self.kernels.configure(threads=int(value))

    def jit_modules(self) -> list[ModuleType]:
        """The modules whose compiled kernels this network runs (a first run compiles them)."""
        return self.kernels.jit_modules({layer.kind for layer in self._layers.values()})

    @property
    def layer_names(self) -> list[str]:
        return list(self._layers)

    @property
    def trainable_names(self) -> list[str]:
        """Names of the layers with a weight (dense, conv), in layer order: the keys of `weights()`/gradients."""
        return [name for name, layer in self._layers.items() if layer.trainable]

    def layer(self, name: str) -> Layer:
        try:
            return self._layers[name]
        except KeyError:
            raise KeyError(f"no layer {name!r}; layers: {', '.join(self._layers)}") from None

    def weights(self) -> dict[str, torch.Tensor]:
        """The trainable weights by layer name (live references): dense `[n_post, n_pre]`, conv
        `[c_out, c_in, k, k]`; pool layers have none."""
        return {name: self._layers[name].weight for name in self.trainable_names}

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        """Set every trainable layer's weight from `weights` (same names; shapes checked)."""
        names = set(self.trainable_names)
        missing = names - set(weights)
        extra = set(weights) - names
        if missing or extra:
            raise ValueError(f"load_weights: missing layers {sorted(missing)}, unknown layers {sorted(extra)}")
        for name, w in weights.items():
            self._layers[name].weight = torch.as_tensor(w).to(self.device)

    @property
    def device(self) -> torch.device:
        return self._layers[self.trainable_names[0]].storage.device

    def to(self, device: str | torch.device) -> Network:
        """Move the weights to `device` and choose the kernel set again for it (same requested backend)."""
        for name in self.trainable_names:
            layer = self._layers[name]
            layer.storage = layer.storage.to(device)
        return self

    @property
    def steps(self) -> int:
        return self.config.steps

    @property
    def _n_out(self) -> int:
        return self._layers[self.layer_names[-1]].n_post

    # ---------------------------------------------------------------------------------------------- forward
    def _check_spikes(self, spikes: Any) -> torch.Tensor:
        spikes = torch.as_tensor(spikes)
        expected = (self.steps, self.n_inputs)
        if spikes.dim() != 3 or tuple(spikes.shape[1:]) != expected:
            raise ValueError(f"spikes must have shape [batch, {expected[0]}, {expected[1]}] (steps, n_inputs of "
                             f"this network), got {tuple(spikes.shape)}")
        if spikes.dtype != torch.bool:
            spikes = spikes != 0
        return spikes.to(self.device)

    def _walk_forward(self, spikes: torch.Tensor) -> tuple[Trains, list[Trains]]:
        """The input's trains and every layer's trains (forward current included), in layer order."""
        ks = self.kernels
        inp = ks.inputs(spikes)
        runs, pre = [], inp
        for layer in self._layers.values():
            pre = layer.forward(ks, pre)
            runs.append(pre)
        return inp, runs

    def forward(self, spikes: torch.Tensor) -> dict[str, torch.Tensor]:
        """Simulate all layers (algorithm.md §1): `spikes [B, T, n_inputs]` bool/float -> `{layer: bool [B, T, n]}`."""
        spikes = self._check_spikes(spikes)
        self.kernels.prepare(list(self._layers.values()))
        _, runs = self._walk_forward(spikes)
        return {name: self.kernels.as_bool(run) for name, run in zip(self.layer_names, runs, strict=True)}

    __call__ = forward

    def _map_chunks(self, batch: int, work) -> list:
        """`work(chunk slice, worker index)` for every chunk of the kernel set's layout, spread over its workers
        (chunk c on worker c % workers); results in chunk order."""
        ks = self.kernels
        chunks = ks.chunks(batch)
        n_workers = ks.workers(len(chunks))
        if n_workers <= 1:
            return [work(c, 0) for c in chunks]

        def run(w: int) -> list:
            return [work(c, w) for c in chunks[w::n_workers]]

        with ThreadPoolExecutor(n_workers) as pool:
            per_worker = list(pool.map(run, range(n_workers)))
        return [per_worker[k % n_workers][k // n_workers] for k in range(len(chunks))]

    def spike_counts(self, spikes: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward only: the spike count of every input unit and every neuron, `(int64 [B, n_inputs], {layer: int64
        [B, n]} in layer order)`, from `spikes [B, T, n_inputs]` (the batch cut into chunks over the kernel set's
        threads)."""
        spikes = self._check_spikes(spikes)
        self.kernels.prepare(list(self._layers.values()))

        def work(c: slice, _w: int) -> list[torch.Tensor]:
            inp, runs = self._walk_forward(spikes[c])
            return [inp.counts] + [r.counts for r in runs]

        # The forward pass is exact per sample, so chunks on threads give the same counts in any order.
        parts = self._map_chunks(spikes.shape[0], work)
        sizes = [self.n_inputs] + [layer.n_post for layer in self._layers.values()]
        out = [(torch.cat([p[k] for p in parts]) if parts else torch.zeros(0, n, dtype=torch.int64)).to(self.device)
               for k, n in enumerate(sizes)]
        return out[0], dict(zip(self.layer_names, out[1:], strict=True))

    def predict(self, spikes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward only: (predictions int64 `[B]`, output counts int64 `[B, n_out]`) (algorithm.md §3.13)."""
        counts = self.spike_counts(spikes)[1][self.layer_names[-1]]
        return torch.argmax(counts, dim=1), counts

    # --------------------------------------------------------------------------------------------- backward
    def _check_labels(self, labels: Any, batch: int, sample_weights: Any,
                      validate: bool) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.as_tensor(labels)
        if labels.dim() == 0:
            labels = labels.view(1)
        if labels.shape != (batch,) or labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"labels must be an integer tensor of shape [{batch}], got {labels.dtype} "
                             f"{tuple(labels.shape)}")
        labels = labels.to(device=self.device, dtype=torch.int64)
        # The range check reads the labels back: skipped when the caller vouches for them (the trainer's loader
        # checked every label of its split once), so that a CUDA step never waits for the host.
        if validate and batch:
            bad = (labels < 0) | (labels >= self._n_out)
            if bool(bad.any()):
                first = int(bad.nonzero()[0, 0])
                raise ValueError(f"labels must lie in [0, {self._n_out - 1}] (the output layer's neurons); got "
                                 f"{int(labels[first])} at sample {first}")
        if sample_weights is None:
            sw = torch.ones(batch, dtype=torch.float64, device=self.device)
        else:
            sw = torch.as_tensor(sample_weights).to(device=self.device, dtype=torch.float64)
            if sw.shape != (batch,):
                raise ValueError(f"sample_weights must have shape [{batch}], got {tuple(sw.shape)}")
        return labels, sw

    def _chunk_backward(self, spikes: torch.Tensor, labels: torch.Tensor, sw: torch.Tensor,
                        accs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward + HM2-BP backward of a chunk; adds its data gradients into `accs`. Returns the true output
        counts and the logged cost of its samples."""
        ks = self.kernels
        layers = list(self._layers.values())
        inp, runs = self._walk_forward(spikes)
        # output stage (algorithm.md §3.2-1..5): dead-zone error of the true counts, boost weight, silent label
        out = ks.output_stage(layers[-1], runs[-1], labels, sw, self.config.loss, self.steps)
        if out.nothing_to_do:
            return runs[-1].counts, out.cost
        post, delta = out.post, out.delta
        for k in range(len(layers) - 1, -1, -1):
            pre = runs[k - 1] if k > 0 else inp
            step = BackwardStep(out.samples, delta, k > 0, self.config.train.effect_ratio,
                                out.lateral if k == len(layers) - 1 else None)
            pre_delta = layers[k].backward(ks, post, pre, step, accs.get(layers[k].spec.name))
            if pre_delta is None:
                break
            below = layers[k - 1]
            # delta of the layer below: / its vth (algorithm.md §3.3, §3.16 conv), except for pool layers
            delta = pre_delta if below.kind == "pool" else pre_delta / below.vth
            post = pre
        return runs[-1].counts, out.cost

    def backward_pass(self, spikes: torch.Tensor, labels: torch.Tensor, sample_weights: torch.Tensor | None = None,
                      *, validate: bool = True, check_finite: bool = True) -> StepResult:
        """One forward and the HM2-BP backward (algorithm.md §3) over a batch: batch-mean data gradient +
        regulariser. All samples of the batch see the same weights.

        The kernel set cuts the batch into chunks (numba: small chunks over CPU threads, each with its own
        accumulator, summed in thread order: deterministic for a given number of threads; the others: the whole
        batch). `validate=False` skips the label range check and `check_finite=False` defers the finiteness check
        of the gradients to `check_finite()`: both read values back from the device, which a CUDA training step
        avoids."""
        spikes = self._check_spikes(spikes)
        batch = spikes.shape[0]
        labels, sw = self._check_labels(labels, batch, sample_weights, validate)
        ks = self.kernels
        layers = list(self._layers.values())
        ks.prepare(layers)
        names = self.trainable_names
        n_workers = ks.workers(len(ks.chunks(batch)))
        accs = [{name: ks.new_accumulator(self._layers[name]) for name in names} for _ in range(n_workers)]
        parts = self._map_chunks(batch, lambda c, w: self._chunk_backward(spikes[c], labels[c], sw[c], accs[w]))
        counts = torch.cat([p[0] for p in parts]) if parts else torch.zeros(0, self._n_out, dtype=torch.int64)
        cost = torch.cat([p[1] for p in parts]) if parts else torch.zeros(0, dtype=torch.float64)
        reg = self.config.regularizer
        grads = {}
        for name in names:
            layer = self._layers[name]
            grads[name] = ks.finish(layer, ks.merge([a[name] for a in accs], layer), batch, reg)
        if check_finite:
            ks.check_finite()
        counts = counts.to(self.device)
        return StepResult(grads=grads, counts=counts, predictions=torch.argmax(counts, 1), cost=cost.to(self.device))

    def check_finite(self) -> None:
        """Raise FloatingPointError if the gradients of the last `backward_pass` hold a non-finite value (a host
        synchronisation on CUDA; immediate in `backward_pass` unless `check_finite=False` was given)."""
        self.kernels.check_finite()

    def gradients(self, spikes: torch.Tensor, labels: torch.Tensor,
                  sample_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """HM2-BP gradient of every layer: batch mean of the per-sample reference gradients + regulariser."""
        return self.backward_pass(spikes, labels, sample_weights).grads
