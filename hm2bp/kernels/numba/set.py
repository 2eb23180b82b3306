"""The `numba` kernel set: the fast CPU path.

Spike trains are uint8 numpy rasters plus their per-(sample, step) spike lists (`csr.raster_to_csr`); every sum
over pre spikes is a numba loop over the spikes that exist (MNIST input is ~2.5 % dense), the LIF and the S-PSP
scans are numba kernels, and the small per-sample arithmetic runs on zero-copy numpy views. A batch is cut into
chunks of `chunk_size` samples (the `[T, n]` arrays of a chunk stay in cache) spread over `threads` threads (the
kernels release the GIL), each thread with its own gradient accumulator, summed in thread order: deterministic for
a given `threads`.

Dense gradients are accumulated transposed, `[n_pre, n_post]` float32 (the weight's storage order), in a buffer
reused between calls that is never zeroed in full: only rows of pre neurons that spiked can be written, and
`finish` reads and clears exactly those rows (a call that did not finish marks the buffer for a full clear).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import torch

from hm2bp.config import LossSpec, NeuronParams, RegularizerSpec
from hm2bp.kernels.base import KernelSet, LayerParams, Trains, adam_scalars, flat_float32
from hm2bp.kernels.numba import conv, csr, gradient, lif, optim, spsp
from hm2bp.kernels.numba.tuning import CHUNK_SIZE, default_threads
from hm2bp.rules import conv as rules_conv


def _np(x: torch.Tensor) -> np.ndarray:
    return x.numpy()


def _mark_modified(*tensors: torch.Tensor) -> None:
    # The kernels write through numpy views; bump the version counters as torch's own in-place ops would (autograd
    # and any cache keyed on `_version` then see the update).
    for t in tensors:
        torch.autograd.graph.increment_version(t)


class NumbaKernels(KernelSet):
    name = "numba"

    def __init__(self, device: torch.device, threads: int | None = None, chunk_size: int = CHUNK_SIZE) -> None:
        super().__init__(device)
        if self.device.type != "cpu":
            raise ValueError(f"the numba kernel set runs on CPU tensors only, not on {self.device}")
        self.threads = int(threads) if threads is not None else default_threads()
        self.chunk_size = int(chunk_size)
        self._derived: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.buffers: dict[int, np.ndarray] = {}  # reused dense accumulators, by layer
        self._clean: dict[int, bool] = {}  # True while a reused buffer is known to be all zero
        self._handed: set[int] = set()

    # ---- batch layout ----------------------------------------------------------------------------------------
    def configure(self, threads: int | None = None, chunk_size: int | None = None) -> None:
        if threads is not None:
            self.threads = int(threads)
        if chunk_size is not None:
            self.chunk_size = int(chunk_size)

    def chunks(self, batch: int) -> list[slice]:
        return [slice(c, min(c + self.chunk_size, batch)) for c in range(0, batch, self.chunk_size)]

    def workers(self, n_chunks: int) -> int:
        return max(1, min(self.threads, n_chunks))

    def prepare(self, layers: list) -> None:
        # Weights may change between calls in ways a version counter misses (e.g. through `.data`): recompute the
        # transposed float32 view and the row sums once per call, before any worker thread reads them.
        self._derived = {}
        self._handed = set()
        for layer in layers:
            if layer.kind == "dense":
                arr = layer.storage.detach().numpy()
                self._derived[id(layer)] = (arr, *gradient.weight_row_sums(arr))

    def jit_modules(self, kinds: set[str]) -> list[ModuleType]:
        return [csr, lif, spsp, gradient, optim, *([conv] if kinds - {"dense"} else [])]

    # ---- forward ---------------------------------------------------------------------------------------------
    def inputs(self, spikes: torch.Tensor) -> Trains:
        raster = np.ascontiguousarray(spikes.cpu().numpy()).view(np.uint8)
        lists = csr.raster_to_csr(raster)
        return Trains(raster, torch.from_numpy(lists[2]), None, lists)

    def as_bool(self, trains: Trains) -> torch.Tensor:
        return torch.from_numpy(trains.spikes).view(torch.bool)

    def dense_current(self, layer: LayerParams, pre: Trains) -> np.ndarray:
        batch, steps = pre.spikes.shape[:2]
        return lif.input_current(pre.csr[0], pre.csr[1], self._derived[id(layer)][0], batch, steps)

    def conv_current(self, layer: LayerParams, pre: Trains) -> np.ndarray:
        batch, steps = pre.spikes.shape[:2]
        return conv.conv_current(pre.csr, layer.storage.detach().numpy(), layer.in_shape, batch, steps)

    def pool_current(self, layer: LayerParams, pre: Trains) -> np.ndarray:
        batch, steps = pre.spikes.shape[:2]
        return conv.pool_current(pre.csr, layer.in_shape, layer.window, batch, steps)

    def lif(self, layer: LayerParams, current: np.ndarray, lateral: float = 0.0, epsilon: bool = True) -> Trains:
        nrn = layer.spec.neuron
        spk, cnt, lists = lif.lif_scan_csr(current, layer.vth, nrn.tau_m, nrn.tau_s, nrn.refractory, lateral,
                                           epsilon)
        return Trains(spk, torch.from_numpy(cnt), current, lists)

    # ---- output stage ----------------------------------------------------------------------------------------
    def output_error(self, counts: torch.Tensor, labels: torch.Tensor, loss: LossSpec) -> torch.Tensor:
        return gradient.output_error(counts, labels, loss)

    def silent_label(self, out: Trains, labels: torch.Tensor, steps: int, desired: float) -> Trains:
        spikes, counts = gradient.replace_silent_label(torch.from_numpy(out.spikes), out.counts, labels, desired)
        lists = out.csr if spikes.data_ptr() == out.spikes.ctypes.data else None  # a modified raster: lists are stale
        return Trains(spikes.numpy(), counts, out.current, lists)

    def active(self, delta_out: torch.Tensor) -> np.ndarray:
        return np.flatnonzero((_np(delta_out) != 0).any(1)).astype(np.int64)

    # ---- backward --------------------------------------------------------------------------------------------
    def spsp(self, post: Trains, samples: np.ndarray, nrn: NeuronParams) -> tuple[np.ndarray, torch.Tensor]:
        k, side = spsp.spsp_readout(post.spikes, post.current, samples, nrn.refractory, nrn.tau_m, nrn.tau_s,
                                    post.csr)
        return k, torch.from_numpy(side)

    def side_effect(self, side: torch.Tensor, counts: torch.Tensor, row_sum: torch.Tensor,
                    vth: float) -> torch.Tensor:
        return gradient.side_effect(side, counts, row_sum, vth)

    def lateral_factor(self, k: np.ndarray, post: Trains, samples: np.ndarray, counts: torch.Tensor,
                       labels: torch.Tensor, vth: float, w0: float) -> torch.Tensor:
        return gradient.lateral_factor(torch.from_numpy(k), torch.from_numpy(post.spikes[samples]), counts, labels,
                                       vth, w0)

    def row_sums(self, layer: LayerParams) -> tuple[torch.Tensor, torch.Tensor]:
        _, sums, sumsq = self._derived[id(layer)]
        return torch.from_numpy(sums), torch.from_numpy(sumsq)

    def new_accumulator(self, layer: LayerParams) -> dict[str, Any]:
        if layer.kind == "conv":
            return {"g": np.zeros(layer.weight_shape, np.float64), "any": False}
        key = id(layer)
        if key in self._handed:  # a second worker: a fresh zeroed accumulator
            g = np.zeros((layer.n_pre, layer.n_post), np.float32)
        else:
            self._handed.add(key)
            g = self.buffers.get(key)
            if g is None:
                g = self.buffers[key] = np.zeros((layer.n_pre, layer.n_post), np.float32)
            elif not self._clean.get(key, False):
                g.fill(0.0)
            self._clean[key] = False  # until `finish` has cleared what was written
        return {"g": g, "rows": np.zeros(layer.n_pre, np.bool_), "any": False}

    def merge(self, accs: list[Any], layer: LayerParams) -> Any:
        first = accs[0]
        for acc in accs[1:]:
            first["g"] += acc["g"]
            first["any"] |= acc["any"]
            if "rows" in first:
                first["rows"] |= acc["rows"]
        return first

    def dense_grad(self, acc, layer, k, coef, samples, pre, post_counts, pre_counts) -> None:
        prc = _np(pre_counts)
        gradient.weight_gradient(k, _np(coef), samples, pre.csr, _np(post_counts), prc, acc["g"])
        acc["rows"] |= (prc > 0).any(0)
        acc["any"] = True

    def dense_effect(self, layer, k, delta, samples, pre, post_counts, pre_counts) -> torch.Tensor:
        return gradient.effect_ratio_error(k, delta, layer.storage.detach().T, samples, pre.csr, post_counts,
                                           pre_counts)

    def conv_grad(self, acc, layer, k, coef, samples, pre, post_counts, pre_counts) -> None:
        acc["g"] += conv.conv_weight_gradient(k, _np(coef), samples, pre.csr, _np(post_counts), _np(pre_counts),
                                              layer.in_shape, layer.weight_shape)
        acc["any"] = True

    def conv_effect(self, layer, k, delta, samples, pre, post_counts, pre_counts) -> torch.Tensor:
        return conv.conv_effect_ratio_error(k, delta, layer.storage.detach(), samples, pre.csr, post_counts,
                                            pre_counts, layer.in_shape)

    def pool_effect(self, layer, k, samples, pre) -> torch.Tensor:
        return conv.pool_effect(k, samples, pre.csr, layer.in_shape, layer.window)

    def finish(self, layer: LayerParams, acc: Any, batch: int, reg: RegularizerSpec) -> torch.Tensor:
        name = layer.spec.name
        if layer.kind == "conv":
            w = layer.storage.detach()
            g = torch.from_numpy(acc["g"] / batch).to(torch.float32) if acc["any"] else torch.zeros_like(w)
            g = g + rules_conv.conv_regularizer_grad(w, reg)
            if not bool(torch.isfinite(g).all()):
                raise FloatingPointError(f"non-finite gradient in layer {name!r}")
            return g
        w_t, _, sumsq = self._derived[id(layer)]
        if acc["any"]:
            g = gradient.finish_gradient(acc["g"], w_t, sumsq, 1.0 / batch, reg, name, acc["rows"])
        else:
            g = gradient.finish_gradient(None, w_t, sumsq, 1.0, reg, name)
        self._clean[id(layer)] = True  # finish_gradient cleared the rows that were written
        return torch.from_numpy(g).T  # [n_post, n_pre], in the weights' storage order

    # ---- optimiser -------------------------------------------------------------------------------------------
    def adam_update(self, w, g, m, v, lr, c1, c2, beta1, beta2, eps) -> None:
        flat = flat_float32(w, g, m, v)
        if flat is None or w.device.type != "cpu":
            super().adam_update(w, g, m, v, lr, c1, c2, beta1, beta2, eps)
            return
        optim.adam_kernel(*(t.numpy() for t in flat), *adam_scalars(lr, c1, c2, beta1, beta2, eps))
        _mark_modified(w, m, v)

    def sgd_update(self, w, g, u, momentum, lr) -> None:
        flat = flat_float32(w, g, u)
        if flat is None or w.device.type != "cpu":
            super().sgd_update(w, g, u, momentum, lr)
            return
        optim.sgd_kernel(*(t.numpy() for t in flat), np.float32(momentum), np.float32(lr))
        _mark_modified(w, u)
