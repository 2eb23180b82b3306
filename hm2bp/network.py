"""`Network`: dense, conv and pool spiking layers with the reference LIF forward (docs/algorithm.md §1) and the
HM2-BP gradient (docs/algorithm.md §3; §3.16 for conv / pool).

Composes the pure functions of `hm2bp.lif` (forward), `hm2bp.spsp` (S-PSP read-outs), `hm2bp.hm2bp_grad`
(gradient rules) and `hm2bp.conv` (conv / pool currents and rules). Conv / pool neurons `[C, H, W]` are flattened
channel-major (`c*H*W + x*W + y`), so a dense layer after them sees exactly the reference's order. CPU tensors
run through numba kernels on zero-copy numpy views; tensors on other devices use
the torch twins of the same functions (`backend="torch"` forces them on CPU too).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hm2bp import conv as cnn
from hm2bp import hm2bp_grad as rules
from hm2bp.config import ConfigError, LayerSpec, NetworkConfig, load_config
from hm2bp.lif import (
    input_current,
    input_current_torch,
    lif_scan_csr,
    lif_scan_torch,
    raster_to_csr,
)
from hm2bp.spsp import spsp_readout, spsp_readout_torch

BACKENDS = ("auto", "numba", "torch")


@dataclass
class StepResult:
    """One forward + backward pass over a batch (what the trainer uses per step)."""

    grads: dict[str, torch.Tensor]
    counts: torch.Tensor  # int64 [B, n_out], true output counts of the forward pass
    predictions: torch.Tensor  # int64 [B], argmax of counts (ties -> lowest index, all silent -> 0)
    cost: torch.Tensor  # float64 [B], logged cost of algorithm.md §3.14 (with the silent-label replacement)


class DenseLayer:
    """A fully connected LIF layer: `weight [n_post, n_pre]` float32 (settable), its spec and neuron parameters.

    The weights are stored transposed, `[n_pre, n_post]` contiguous, and `weight` is the transposed view of that
    storage: the input current adds rows of `W^T` (one per pre spike), the gradient is accumulated in rows of
    `W^T`, and the optimiser updates the storage in its own order, so no step ever transposes the full matrix."""

    kind = "dense"
    trainable = True
    _transposed = True  # storage is `weight.T` (dense); conv kernels are stored as they are

    def __init__(self, spec: LayerSpec, n_pre: int, weight: torch.Tensor) -> None:
        self.spec = spec
        self.n_pre = n_pre
        self.n_post = int(spec.size)
        self.weight_shape: tuple[int, ...] = (self.n_post, self.n_pre)
        self._store = torch.empty(0)
        self._grad_buf: np.ndarray | None = None
        self._grad_clean = False  # True while every entry of `_grad_buf` is known to be zero
        self.weight = weight

    @property
    def weight(self) -> torch.Tensor:
        """Trainable weights `weight_shape` float32: a live view of the storage (in-place changes are seen)."""
        return self._store.T if self._transposed else self._store

    @weight.setter
    def weight(self, value: torch.Tensor) -> None:
        value = torch.as_tensor(value)
        if tuple(value.shape) != self.weight_shape:
            raise ValueError(f"layer {self.spec.name!r}: weight must have shape {self.weight_shape}, "
                             f"got {tuple(value.shape)}")
        if not value.is_floating_point():
            raise ValueError(f"layer {self.spec.name!r}: weight must be floating point, got {value.dtype}")
        device = self._store.device if self._store.numel() else value.device
        value = value.detach().to(device=device, dtype=torch.float32)
        self._store = (value.T if self._transposed else value).contiguous()
        self._cache: tuple | None = None

    def grad_buffer(self) -> np.ndarray:
        """CPU only: the zeroed float32 `[n_pre, n_post]` accumulator, reused between calls. `finish_gradient`
        clears the rows it reads, so it is zeroed in full only after a call that did not finish."""
        if self._grad_buf is None:
            self._grad_buf = np.zeros((self.n_pre, self.n_post), np.float32)
        elif not self._grad_clean:
            self._grad_buf.fill(0.0)
        self._grad_clean = False
        return self._grad_buf

    def derived(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CPU only: `(W^T` float32 `[n_pre, n_post]` (the storage), row sums, row sums of squares (float64
        `[n_post]`)). Cached within one call of the network (`Network` drops the cache at the start of every
        forward / backward call, so weight changes between calls are always seen)."""
        w_t = self._store
        key = (w_t.data_ptr(), w_t._version)
        if self._cache is None or self._cache[0] != key:
            arr = w_t.detach().numpy()
            self._cache = (key, arr, *rules.weight_row_sums(arr))
        return self._cache[1:]

    @property
    def vth(self) -> float:
        return float(self.spec.threshold)

    def __repr__(self) -> str:
        return f"DenseLayer({self.spec.name!r}, {self.n_pre} -> {self.n_post}, vth={self.vth:g})"


class ConvLayer(DenseLayer):
    """A spiking convolution (algorithm.md §1): `weight [c_out, c_in, k, k]` float32 (settable), valid
    cross-correlation, stride
    1, fires iff `v > vth` exactly. Neurons `out_shape = (c_out, H-k+1, W-k+1)`, flattened channel-major."""

    kind = "conv"
    _transposed = False

    def __init__(self, spec: LayerSpec, in_shape: tuple[int, int, int], weight: torch.Tensor) -> None:
        self.spec = spec
        self.in_shape = in_shape
        self.out_shape = cnn.conv_output_shape(in_shape, int(spec.channels), int(spec.kernel))
        self.n_pre = int(np.prod(in_shape))
        self.n_post = int(np.prod(self.out_shape))
        self.weight_shape = (int(spec.channels), in_shape[0], int(spec.kernel), int(spec.kernel))
        self._store = torch.empty(0)
        self._grad_buf = None
        self.weight = weight

    def grad_buffer(self) -> np.ndarray:
        """CPU only: a zeroed float64 `[c_out, c_in, k, k]` accumulator."""
        return np.zeros(self.weight_shape, np.float64)

    def __repr__(self) -> str:
        c, h, w = self.in_shape
        o, ho, wo = self.out_shape
        return f"ConvLayer({self.spec.name!r}, {c}x{h}x{w} -> {o}x{ho}x{wo}, k={self.spec.kernel}, vth={self.vth:g})"


class PoolLayer:
    """Spiking pooling (algorithm.md §1): weight 1 over non-overlapping `w x w` windows, threshold `vth - 1e-6`;
    nothing to
    train (`weight` is None)."""

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
        self._cache = None

    @property
    def vth(self) -> float:
        return float(self.spec.threshold)

    def __repr__(self) -> str:
        c, h, w = self.in_shape
        return f"PoolLayer({self.spec.name!r}, {c}x{h}x{w} -> {'x'.join(map(str, self.out_shape))}, vth={self.vth:g})"


Layer = DenseLayer | ConvLayer | PoolLayer


@dataclass
class _Run:
    """Forward record of one layer for a batch (numpy arrays on the numba path, tensors on the torch path)."""

    spikes: Any  # uint8 np [B, T, n] | bool tensor
    counts: torch.Tensor  # int64 [B, n]
    current: Any  # float32 [B, T, n]
    csr: tuple | None = None  # raster_to_csr(spikes) (numba path, when a later layer needs it)


def _finite(g: torch.Tensor, name: str) -> torch.Tensor:
    if not bool(torch.isfinite(g).all()):
        raise FloatingPointError(f"non-finite gradient in layer {name!r}")
    return g


def _init_weight(shape: tuple[int, ...], spec: LayerSpec, generator: torch.Generator) -> torch.Tensor:
    """U[-scale, scale] (or N(0, scale^2)) float32 of `shape`, drawn from `generator` (layer order)."""
    if spec.init_kind == "uniform":
        return (torch.rand(shape, generator=generator, dtype=torch.float32) * 2.0 - 1.0) * spec.init_scale
    return torch.randn(shape, generator=generator, dtype=torch.float32) * spec.init_scale


def layer_sizes(config: NetworkConfig, n_inputs: int, input_shape: tuple | None = None) -> list[tuple[str, int, int]]:
    """(layer name, neurons, weights) of every layer, computed from the config alone (nothing is allocated)."""
    out = []
    n_pre, shape = int(n_inputs), None
    if config.layers[0].type != "dense":
        shape = cnn.as_input_shape(input_shape, int(n_inputs))
    for spec in config.layers:
        if spec.type == "pool":
            shape = cnn.pool_output_shape(shape, int(spec.window))
            n_post, n_w = math.prod(shape), 0
        elif spec.type == "conv":
            n_w = int(spec.channels) * shape[0] * int(spec.kernel) ** 2
            shape = cnn.conv_output_shape(shape, int(spec.channels), int(spec.kernel))
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
        self.backend = backend
        self.chunk_size = 8  # samples per forward/backward chunk on the numba path (cache locality)
        if threads is None:
            threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            threads = min(4, threads)
        self.threads = int(threads)
        if generator is None:
            generator = torch.Generator().manual_seed(config.train.seed)
        check_memory(config, self.n_inputs, input_shape, self.threads, self.chunk_size)
        self._layers: dict[str, Layer] = {}
        n_pre = self.n_inputs
        shape = None  # (C, H, W) of the previous layer's neurons while they are spatial
        if config.layers[0].type != "dense":
            shape = cnn.as_input_shape(input_shape, self.n_inputs)
        for spec in config.layers:
            try:
                if spec.type == "pool":
                    layer: Layer = PoolLayer(spec, shape)
                    shape = layer.out_shape
                elif spec.type == "conv":
                    w_shape = (int(spec.channels), shape[0], int(spec.kernel), int(spec.kernel))
                    layer = ConvLayer(spec, shape, _init_weight(w_shape, spec, generator))
                    shape = layer.out_shape
                else:
                    layer = DenseLayer(spec, n_pre, _init_weight((int(spec.size), n_pre), spec, generator))
                    shape = None
            except ValueError as exc:
                raise ValueError(f"layer {spec.name!r}: {exc}") from None
            self._layers[spec.name] = layer
            n_pre = layer.n_post

    @classmethod
    def from_config(cls, config: dict | str | Path | NetworkConfig, n_inputs: int, input_shape: tuple | None = None,
                    generator: torch.Generator | None = None, backend: str = "auto",
                    threads: int | None = None) -> Network:
        """Build from a config dict / TOML path / `NetworkConfig`; weights U[-scale, scale] from `generator`
        (seeded with `config.train.seed` when None). `threads`: CPU threads for batches of several chunks
        (default: the CPUs available to this process, at most 4)."""
        return cls(load_config(config), n_inputs, input_shape, generator, backend, threads)

    # ------------------------------------------------------------------------------------------- structure
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
        return self._layers[self.trainable_names[0]].weight.device

    def to(self, device: str | torch.device) -> Network:
        for name in self.trainable_names:
            layer = self._layers[name]
            layer._store = layer._store.to(device)
        return self

    @property
    def steps(self) -> int:
        return self.config.steps

    def _use_numba(self) -> bool:
        return self.backend == "numba" or (self.backend == "auto" and self.device.type == "cpu")

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

    def _drop_caches(self) -> None:
        # Weights may have changed between calls in ways the version counter misses (e.g. through `.data`).
        for layer in self._layers.values():
            layer._cache = None

    def _run(self, spikes: torch.Tensor) -> tuple[list[_Run], _Run]:
        """Forward all layers; returns the per-layer records and a record of the input (spikes, counts, csr)."""
        batch, steps = spikes.shape[0], self.steps
        runs: list[_Run] = []
        if self._use_numba():
            raster = np.ascontiguousarray(spikes.cpu().numpy()).view(np.uint8)
            csr = raster_to_csr(raster)
            inp = _Run(raster, torch.from_numpy(csr[2]), None, csr)
            pre = inp
            for name in self.layer_names:
                layer = self._layers[name]
                nrn = layer.spec.neuron
                if layer.kind == "dense":
                    cur = input_current(pre.csr[0], pre.csr[1], layer.derived()[0], batch, steps)
                    spk, cnt, csr = lif_scan_csr(cur, layer.vth, nrn.tau_m, nrn.tau_s, nrn.refractory,
                                                 layer.spec.lateral_inhibition)
                elif layer.kind == "conv":
                    cur = cnn.conv_current(pre.csr, layer.weight.detach().numpy(), layer.in_shape, batch, steps)
                    spk, cnt = cnn.conv_lif_scan(cur, layer.vth, nrn.tau_m, nrn.tau_s, nrn.refractory)
                    csr = raster_to_csr(spk)
                else:  # pool: the window sums are small integers, exact in float32
                    cur = cnn.pool_current(torch.from_numpy(pre.spikes), layer.in_shape, layer.window).numpy()
                    spk, cnt, csr = lif_scan_csr(cur, layer.vth, nrn.tau_m, nrn.tau_s, nrn.refractory)
                pre = _Run(spk, torch.from_numpy(cnt), cur, csr)
                runs.append(pre)
            return runs, inp
        inp = _Run(spikes, spikes.sum(1), None)
        pre = spikes
        for layer in self._layers.values():
            nrn = layer.spec.neuron
            if layer.kind == "dense":
                cur = input_current_torch(pre, layer.weight)
                spk, cnt = lif_scan_torch(cur, layer.vth, nrn.tau_m, nrn.tau_s, nrn.refractory,
                                          layer.spec.lateral_inhibition)
            elif layer.kind == "conv":
                cur = cnn.conv_current_torch(pre, layer.weight.detach(), layer.in_shape)
                spk, cnt = cnn.conv_lif_scan_torch(cur, layer.vth, nrn.tau_m, nrn.tau_s, nrn.refractory)
            else:
                cur = cnn.pool_current(pre, layer.in_shape, layer.window)
                spk, cnt = lif_scan_torch(cur, layer.vth, nrn.tau_m, nrn.tau_s, nrn.refractory)
            runs.append(_Run(spk, cnt, cur))
            pre = spk
        return runs, inp

    def forward(self, spikes: torch.Tensor) -> dict[str, torch.Tensor]:
        """Simulate all layers (algorithm.md §1): `spikes [B, T, n_inputs]` bool/float -> `{layer: bool [B, T, n]}`."""
        spikes = self._check_spikes(spikes)
        self._drop_caches()
        runs, _ = self._run(spikes)
        out = {}
        for name, run in zip(self.layer_names, runs, strict=True):
            s = run.spikes
            out[name] = torch.from_numpy(s).view(torch.bool) if isinstance(s, np.ndarray) else s
        return out

    __call__ = forward

    def predict(self, spikes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward only: (predictions int64 `[B]`, output counts int64 `[B, n_out]`) (algorithm.md §3.13)."""
        spikes = self._check_spikes(spikes)
        self._drop_caches()
        step = self.chunk_size if self._use_numba() else max(1, spikes.shape[0])
        starts = list(range(0, spikes.shape[0], step))

        def counts_of(c: int) -> torch.Tensor:
            return self._run(spikes[c:c + step])[0][-1].counts

        n_workers = max(1, min(self.threads, len(starts))) if self._use_numba() else 1
        if n_workers == 1:
            parts = [counts_of(c) for c in starts]
        else:
            for layer in self._layers.values():
                if layer.kind == "dense":
                    layer.derived()  # fill the per-call caches before any thread reads them
            # The forward pass is exact per sample, so chunks on threads give the same counts in any order.
            with ThreadPoolExecutor(n_workers) as pool:
                parts = list(pool.map(counts_of, starts))
        counts = torch.cat(parts) if parts else torch.zeros(0, self._n_out, dtype=torch.int64)
        counts = counts.to(self.device)
        return torch.argmax(counts, dim=1), counts

    # --------------------------------------------------------------------------------------------- backward
    def _check_labels(self, labels: Any, batch: int, sample_weights: Any) -> tuple[torch.Tensor, torch.Tensor]:
        n_out = self._layers[self.layer_names[-1]].n_post
        labels = torch.as_tensor(labels)
        if labels.dim() == 0:
            labels = labels.view(1)
        if labels.shape != (batch,) or labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"labels must be an integer tensor of shape [{batch}], got {labels.dtype} "
                             f"{tuple(labels.shape)}")
        labels = labels.to(torch.int64)
        if batch and (int(labels.min()) < 0 or int(labels.max()) >= n_out):
            raise ValueError(f"labels must lie in [0, {n_out - 1}], got {labels.min()}..{labels.max()}")
        if sample_weights is None:
            sw = torch.ones(batch, dtype=torch.float64)
        else:
            sw = torch.as_tensor(sample_weights, dtype=torch.float64).cpu()
            if sw.shape != (batch,):
                raise ValueError(f"sample_weights must have shape [{batch}], got {tuple(sw.shape)}")
        return labels.cpu(), sw

    def backward_pass(self, spikes: torch.Tensor, labels: torch.Tensor,
                      sample_weights: torch.Tensor | None = None) -> StepResult:
        """One forward and the HM2-BP backward (algorithm.md §3) over a batch: batch-mean data gradient + regulariser.

        On the numba path the batch is processed in chunks of `chunk_size` samples (forward and backward), so
        that the per-sample `[T, n]` arrays stay in cache; the per-sample gradients are summed over the chunks,
        which gives exactly the batch sum (all samples see the same weights). With `threads > 1` the chunks are
        spread over that many threads (the kernels release the GIL), chunk c on thread c % threads, each with its
        own accumulator, summed in thread order: deterministic for a given `threads`."""
        spikes = self._check_spikes(spikes)
        batch = spikes.shape[0]
        labels, sw = self._check_labels(labels, batch, sample_weights)
        dev = self.device
        self._drop_caches()
        if not self._use_numba():
            counts, cost, grads = self._chunk_torch(spikes, labels, sw, batch)
        else:
            names = self.trainable_names
            starts = list(range(0, batch, self.chunk_size))
            n_workers = max(1, min(self.threads, len(starts)))
            for name in names:
                if self._layers[name].kind == "dense":
                    self._layers[name].derived()  # fill the per-call caches before any thread reads them
            accs = [{name: self._layers[name].grad_buffer() for name in names}]
            accs += [{name: self._new_accumulator(name) for name in names} for _ in range(n_workers - 1)]
            # Rows of a dense accumulator that the chunks reached (pre neurons that spiked), per worker.
            rows = [{name: np.zeros(self._layers[name].n_pre, np.bool_) for name in names} for _ in range(n_workers)]

            def work(w: int) -> list:
                return [self._chunk_numba(spikes[c:c + self.chunk_size], labels[c:c + self.chunk_size],
                                          sw[c:c + self.chunk_size], accs[w], rows[w]) for c in starts[w::n_workers]]

            if n_workers == 1:
                per_worker = [work(0)]
            else:
                with ThreadPoolExecutor(n_workers) as pool:
                    per_worker = list(pool.map(work, range(n_workers)))
            parts = [per_worker[k % n_workers][k // n_workers] for k in range(len(starts))]
            g_t, touched = accs[0], rows[0]
            for acc, reached in zip(accs[1:], rows[1:], strict=True):
                for name in names:
                    g_t[name] += acc[name]
                    touched[name] |= reached[name]
            counts = torch.cat([p[0] for p in parts]) if parts else torch.zeros(0, self._n_out, dtype=torch.int64)
            cost = torch.cat([p[1] for p in parts]) if parts else torch.zeros(0, dtype=torch.float64)
            any_active = any(p[2] for p in parts)
            grads = {}
            reg = self.config.regularizer
            for name in names:
                layer = self._layers[name]
                if layer.kind == "conv":
                    w_t = layer.weight.detach()
                    g = torch.from_numpy(g_t[name] / batch).to(torch.float32) if any_active else torch.zeros_like(w_t)
                    grads[name] = _finite(g + cnn.conv_regularizer_grad(w_t, reg), name)
                    continue
                w_t, _, sumsq = layer.derived()
                if any_active:
                    g = rules.finish_gradient(g_t[name], w_t, sumsq, 1.0 / batch, reg, name, touched[name])
                else:
                    g = rules.finish_gradient(None, w_t, sumsq, 1.0, reg, name)
                layer._grad_clean = True  # finish_gradient cleared the rows that were written
                grads[name] = torch.from_numpy(g).T  # [n_post, n_pre], in the weights' storage order
        return StepResult(grads=grads, counts=counts.to(dev), predictions=torch.argmax(counts, 1).to(dev),
                          cost=cost)

    def _new_accumulator(self, name: str) -> np.ndarray:
        """A zeroed per-thread gradient accumulator: dense float32 `[n_pre, n_post]` (transposed), conv float64."""
        layer = self._layers[name]
        if layer.kind == "conv":
            return layer.grad_buffer()
        return np.zeros((layer.n_pre, layer.n_post), np.float32)

    @property
    def _n_out(self) -> int:
        return self._layers[self.layer_names[-1]].n_post

    def _output_stage(self, runs: list[_Run], labels: torch.Tensor, sw: torch.Tensor, out_spikes: torch.Tensor):
        """Output error, silent-label replacement, logged cost, samples with non-zero error (algorithm.md §3.2-1..5)."""
        cfg = self.config
        counts_true = runs[-1].counts.cpu()
        delta_out = rules.output_error(counts_true, labels, cfg.loss) * sw.view(-1, 1)
        out_mod, counts_mod = rules.replace_silent_label(out_spikes, counts_true.to(out_spikes.device),
                                                         labels.to(out_spikes.device), cfg.loss.desired)
        cost = rules.logged_cost(counts_mod.cpu(), labels, cfg.loss)
        active = torch.nonzero((delta_out != 0).any(1)).view(-1)  # zero error => exactly zero data gradient
        delta = delta_out[active] / self._layers[self.layer_names[-1]].vth
        return counts_true, cost, out_mod, counts_mod, active, delta

    def _chunk_numba(self, spikes: torch.Tensor, labels: torch.Tensor, sw: torch.Tensor, g_t: dict[str, np.ndarray],
                     touched: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Forward + backward of a few samples; adds their data gradients (transposed) into `g_t` and marks the
        accumulator rows they can reach (pre neurons that spiked) in `touched`."""
        runs, inp = self._run(spikes)
        counts_true, cost, out_mod, counts_mod, active_t, delta = self._output_stage(
            runs, labels, sw, torch.from_numpy(runs[-1].spikes))
        active = active_t.numpy()
        if active.size == 0:
            return counts_true, cost, False
        names = self.layer_names
        effect_ratio = self.config.train.effect_ratio
        post_spikes, post_counts = out_mod.numpy(), counts_mod.numpy()
        for k in range(len(names) - 1, -1, -1):
            layer = self._layers[names[k]]
            nrn = layer.spec.neuron
            pre = runs[k - 1] if k > 0 else inp
            pc_act = post_counts[active]
            pre_counts_act = pre.counts.numpy()[active]
            pc_t, prc_t = torch.from_numpy(pc_act), torch.from_numpy(pre_counts_act)
            post_csr = runs[k].csr if k < len(names) - 1 else None  # the output raster may have been modified
            if layer.kind == "pool":  # no weight: only passes the error on (algorithm.md §3.16)
                if k == 0:
                    break
                if effect_ratio:
                    kmat = torch.from_numpy(spsp_readout(post_spikes, runs[k].current, active, nrn.refractory,
                                                         nrn.tau_m, nrn.tau_s, post_csr)[0])
                else:
                    kmat = torch.zeros(len(active), self.steps, 0)  # unused: plain share delta / w^2
                pre_delta = cnn.pool_error(kmat, delta, torch.from_numpy(pre.spikes[active]), pc_t, prc_t,
                                           layer.in_shape, layer.window, effect_ratio)
            else:
                kmat, side = spsp_readout(post_spikes, runs[k].current, active, nrn.refractory, nrn.tau_m,
                                          nrn.tau_s, post_csr)
                w = layer.weight.detach()
                if layer.kind == "conv":
                    sigma = cnn.conv_side_effect(torch.from_numpy(side), pc_t, w, layer.vth)
                    coef = delta * (1.0 + sigma)
                    g_t[names[k]] += cnn.conv_weight_gradient(kmat, coef.numpy(), active, pre.csr, pc_act,
                                                              pre_counts_act, layer.in_shape, layer.weight_shape)
                else:
                    sigma = rules.side_effect(torch.from_numpy(side), pc_t, torch.from_numpy(layer.derived()[1]),
                                              layer.vth)
                    coef = delta * (1.0 + sigma)
                    if k == len(names) - 1 and layer.spec.lateral_inhibition != 0.0:
                        coef = coef * rules.lateral_factor(torch.from_numpy(kmat),
                                                           torch.from_numpy(post_spikes[active]),
                                                           counts_true[active], labels[active], layer.vth,
                                                           layer.spec.lateral_inhibition)
                    rules.weight_gradient(kmat, coef.numpy(), active, pre.csr, pc_act, pre_counts_act,
                                          g_t[names[k]])
                    touched[names[k]] |= (pre_counts_act > 0).any(0)
                if k == 0:
                    break
                if layer.kind == "conv":
                    pre_delta = (cnn.conv_effect_ratio_error(kmat, delta, w, active, pre.csr, pc_t, prc_t,
                                                             layer.in_shape) if effect_ratio
                                 else cnn.conv_plain_error(delta, w, layer.in_shape))
                elif effect_ratio:
                    pre_delta = rules.effect_ratio_error(kmat, delta, w, active, pre.csr, pc_t, prc_t)
                else:
                    pre_delta = rules.plain_error(delta, w)
            delta = self._error_at(names[k - 1], pre_delta)
            post_spikes, post_counts = pre.spikes, pre.counts.numpy()
        return counts_true, cost, True

    def _error_at(self, name: str, pre_delta: torch.Tensor) -> torch.Tensor:
        """delta of layer `name` from the error back-propagated to it: `/ vth` (algorithm.md §3.3, §3.16 conv), except
        for pool
        layers, which pass it on without dividing by their threshold (algorithm.md §3.16)."""
        layer = self._layers[name]
        return pre_delta if layer.kind == "pool" else pre_delta / layer.vth

    def _chunk_torch(self, spikes: torch.Tensor, labels: torch.Tensor, sw: torch.Tensor, batch: int):
        runs, inp = self._run(spikes)
        counts_true, cost, out_mod, counts_mod, active, delta = self._output_stage(runs, labels, sw, runs[-1].spikes)
        grads = self._backward_torch(runs, inp, out_mod, counts_mod, counts_true, labels, active, delta, batch)
        return counts_true, cost, grads

    def _backward_torch(self, runs: list[_Run], inp: _Run, out_spikes: torch.Tensor, out_counts: torch.Tensor,
                        counts_true: torch.Tensor, labels: torch.Tensor, active: torch.Tensor, delta: torch.Tensor,
                        batch: int) -> dict[str, torch.Tensor]:
        names = self.layer_names
        reg = self.config.regularizer
        effect_ratio = self.config.train.effect_ratio
        dev = self.device
        act = active.to(dev)
        delta = delta.to(dev)
        grads: dict[str, torch.Tensor] = {}
        post_spikes, post_counts = out_spikes, out_counts.to(dev)
        for k in range(len(names) - 1, -1, -1):
            layer = self._layers[names[k]]
            nrn = layer.spec.neuron
            pre = runs[k - 1] if k > 0 else inp
            if layer.kind == "pool":
                if k == 0:
                    break
                if act.numel():
                    k_t, _ = spsp_readout_torch(post_spikes[act].bool(), runs[k].current[act], nrn.refractory,
                                                nrn.tau_m, nrn.tau_s)
                    delta = self._error_at(names[k - 1], cnn.pool_error(
                        k_t, delta, pre.spikes[act], post_counts[act], pre.counts.to(dev)[act], layer.in_shape,
                        layer.window, effect_ratio))
                post_spikes, post_counts = pre.spikes, pre.counts.to(dev)
                continue
            w = layer.weight.detach()
            conv = layer.kind == "conv"
            g = cnn.conv_regularizer_grad(w, reg) if conv else rules.regularizer_grad(w, reg)
            if act.numel():
                pc_act = post_counts[act]
                pre_counts_act = pre.counts.to(dev)[act]
                k_t, side = spsp_readout_torch(post_spikes[act].bool(), runs[k].current[act], nrn.refractory,
                                               nrn.tau_m, nrn.tau_s)
                pre_sp = pre.spikes[act]
                if conv:
                    coef = delta * (1.0 + cnn.conv_side_effect(side, pc_act, w, layer.vth))
                    g = g + (cnn.conv_weight_gradient_torch(k_t, coef, pre_sp, pc_act, pre_counts_act,
                                                            layer.in_shape, layer.weight_shape) / batch).float()
                else:
                    row_sum = torch.sum(w, 1, dtype=torch.float64)
                    coef = delta * (1.0 + rules.side_effect(side, pc_act, row_sum, layer.vth))
                    if k == len(names) - 1 and layer.spec.lateral_inhibition != 0.0:
                        coef = coef * rules.lateral_factor(k_t, post_spikes[act], counts_true.to(dev)[act],
                                                           labels.to(dev)[act], layer.vth,
                                                           layer.spec.lateral_inhibition)
                    g = g + rules.weight_gradient_torch(k_t, coef, pre_sp, pc_act, pre_counts_act) / batch
                if k > 0:
                    if conv:
                        pre_delta = (cnn.conv_effect_ratio_error_torch(k_t, delta, w, pre_sp, pc_act, pre_counts_act,
                                                                       layer.in_shape) if effect_ratio
                                     else cnn.conv_plain_error(delta, w, layer.in_shape))
                    elif effect_ratio:
                        pre_delta = rules.effect_ratio_error_torch(k_t, delta, w, pre_sp, pc_act, pre_counts_act)
                    else:
                        pre_delta = rules.plain_error(delta, w)
                    delta = self._error_at(names[k - 1], pre_delta)
            post_spikes, post_counts = pre.spikes, pre.counts.to(dev)
            grads[names[k]] = _finite(g, names[k])
        return {name: grads[name] for name in self.trainable_names}

    def gradients(self, spikes: torch.Tensor, labels: torch.Tensor,
                  sample_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """HM2-BP gradient of every layer: batch mean of the per-sample reference gradients + regulariser."""
        return self.backward_pass(spikes, labels, sample_weights).grads
