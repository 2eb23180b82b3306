"""The `numba` kernel set: the fast CPU path.

Spike trains are uint8 numpy rasters plus their per-(sample, step) spike lists (`hm2bp.lif.raster_to_csr`); every
sum over pre spikes is a numba loop over the spikes that exist (MNIST input is ~2.5 % dense), the LIF and the S-PSP
scans are numba kernels, and the small per-sample arithmetic runs on zero-copy numpy views. A batch is cut into
chunks of `chunk_size` samples (the `[T, n]` arrays of a chunk stay in cache) spread over `threads` threads (the
kernels release the GIL), each thread with its own gradient accumulator, summed in thread order: deterministic for
a given `threads`.

Dense gradients are accumulated transposed, `[n_pre, n_post]` float32 (the weight's storage order), in a buffer
reused between calls that is never zeroed in full: only rows of pre neurons that spiked can be written, and
`finish` reads and clears exactly those rows (a call that did not finish marks the buffer for a full clear).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from hm2bp import conv as cnn
from hm2bp import hm2bp_grad as rules
from hm2bp.config import NeuronParams, RegularizerSpec
from hm2bp.kernels.base import KernelSet, Trains, take
from hm2bp.lif import input_current, lif_scan_csr, raster_to_csr
from hm2bp.spsp import spsp_readout

#: Samples per forward/backward chunk (cache locality of the per-sample `[T, n]` arrays).
CHUNK_SIZE = 8


def default_threads() -> int:
    """The CPUs available to this process, at most 4 (more threads gain little: the passes are memory-bound)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(4, n)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.numpy()


class NumbaKernels(KernelSet):
    name = "numba"
    optimizer_backend = "numba"

    def __init__(self, device: torch.device, threads: int | None = None, chunk_size: int = CHUNK_SIZE) -> None:
        super().__init__(device)
        if self.device.type != "cpu":
            raise ValueError(f"the numba kernel set runs on CPU tensors only, not on {self.device}")
        self.threads = int(threads) if threads is not None else default_threads()
        self.chunk_size = int(chunk_size)
        self._derived: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._buffers: dict[int, np.ndarray] = {}  # reused dense accumulators, by layer
        self._clean: dict[int, bool] = {}  # True while a reused buffer is known to be all zero
        self._handed: set[int] = set()

    # ---- batch layout ----------------------------------------------------------------------------------------
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
                self._derived[id(layer)] = (arr, *rules.weight_row_sums(arr))

    # ---- forward ---------------------------------------------------------------------------------------------
    def inputs(self, spikes: torch.Tensor) -> Trains:
        raster = np.ascontiguousarray(spikes.cpu().numpy()).view(np.uint8)
        csr = raster_to_csr(raster)
        return Trains(raster, torch.from_numpy(csr[2]), None, csr)

    def dense_forward(self, pre: Trains, layer) -> Trains:
        nrn = layer.spec.neuron
        batch, steps = pre.spikes.shape[:2]
        cur = input_current(pre.csr[0], pre.csr[1], self._derived[id(layer)][0], batch, steps)
        spk, cnt, csr = lif_scan_csr(cur, layer.vth, nrn.tau_m, nrn.tau_s, nrn.refractory,
                                     layer.spec.lateral_inhibition)
        return Trains(spk, torch.from_numpy(cnt), cur, csr)

    def conv_forward(self, pre: Trains, layer) -> Trains:
        nrn = layer.spec.neuron
        batch, steps = pre.spikes.shape[:2]
        cur = cnn.conv_current(pre.csr, layer.weight.detach().numpy(), layer.in_shape, batch, steps)
        spk, cnt = cnn.conv_lif_scan(cur, layer.vth, nrn.tau_m, nrn.tau_s, nrn.refractory)
        return Trains(spk, torch.from_numpy(cnt), cur, raster_to_csr(spk))

    def pool_forward(self, pre: Trains, layer) -> Trains:
        nrn = layer.spec.neuron
        # the window sums are small integers, exact in float32
        cur = cnn.pool_current(torch.from_numpy(pre.spikes), layer.in_shape, layer.window).numpy()
        spk, cnt, csr = lif_scan_csr(cur, layer.vth, nrn.tau_m, nrn.tau_s, nrn.refractory)
        return Trains(spk, torch.from_numpy(cnt), cur, csr)

    def as_bool(self, trains: Trains) -> torch.Tensor:
        return torch.from_numpy(trains.spikes).view(torch.bool)

    # ---- output stage ----------------------------------------------------------------------------------------
    def silent_label(self, out: Trains, labels: torch.Tensor, steps: int, desired: float,
                     nrn: NeuronParams) -> Trains:
        spikes, counts = rules.replace_silent_label(torch.from_numpy(out.spikes), out.counts, labels, desired)
        csr = out.csr if spikes.data_ptr() == out.spikes.ctypes.data else None  # a modified raster: lists are stale
        return Trains(spikes.numpy(), counts, out.current, csr)

    def active(self, delta_out: torch.Tensor) -> np.ndarray:
        return np.flatnonzero((_np(delta_out) != 0).any(1)).astype(np.int64)

    # ---- backward --------------------------------------------------------------------------------------------
    def spsp(self, post: Trains, samples: np.ndarray, nrn: NeuronParams) -> tuple[np.ndarray, torch.Tensor]:
        k, side = spsp_readout(post.spikes, post.current, samples, nrn.refractory, nrn.tau_m, nrn.tau_s, post.csr)
        return k, torch.from_numpy(side)

    def lateral_factor(self, k: np.ndarray, post: Trains, samples: np.ndarray, counts: torch.Tensor,
                       labels: torch.Tensor, vth: float, w0: float) -> torch.Tensor:
        return rules.lateral_factor(torch.from_numpy(k), torch.from_numpy(post.spikes[samples]), counts, labels, vth,
                                    w0)

    def row_sums(self, layer) -> tuple[torch.Tensor, torch.Tensor]:
        _, sums, sumsq = self._derived[id(layer)]
        return torch.from_numpy(sums), torch.from_numpy(sumsq)

    def new_accumulator(self, layer) -> dict[str, Any]:
        if layer.kind == "conv":
            return {"g": np.zeros(layer.weight_shape, np.float64), "any": False}
        key = id(layer)
        if key in self._handed:  # a second worker: a fresh zeroed accumulator
            g = np.zeros((layer.n_pre, layer.n_post), np.float32)
        else:
            self._handed.add(key)
            g = self._buffers.get(key)
            if g is None:
                g = self._buffers[key] = np.zeros((layer.n_pre, layer.n_post), np.float32)
            elif not self._clean.get(key, False):
                g.fill(0.0)
            self._clean[key] = False  # until `finish` has cleared what was written
        return {"g": g, "rows": np.zeros(layer.n_pre, np.bool_), "any": False}

    def merge(self, accs: list[Any], layer) -> Any:
        first = accs[0]
        for acc in accs[1:]:
            first["g"] += acc["g"]
            first["any"] |= acc["any"]
            if "rows" in first:
                first["rows"] |= acc["rows"]
        return first

    def dense_grad(self, acc, layer, k, coef, samples, pre, post_counts, pre_counts) -> None:
        prc = _np(pre_counts)
        rules.weight_gradient(k, _np(coef), samples, pre.csr, _np(post_counts), prc, acc["g"])
        acc["rows"] |= (prc > 0).any(0)
        acc["any"] = True

    def dense_effect(self, layer, k, delta, samples, pre, post_counts, pre_counts) -> torch.Tensor:
        return rules.effect_ratio_error(k, delta, layer.weight.detach(), samples, pre.csr, post_counts, pre_counts)

    def conv_grad(self, acc, layer, k, coef, samples, pre, post_counts, pre_counts) -> None:
        acc["g"] += cnn.conv_weight_gradient(k, _np(coef), samples, pre.csr, _np(post_counts), _np(pre_counts),
                                             layer.in_shape, layer.weight_shape)
        acc["any"] = True

    def conv_effect(self, layer, k, delta, samples, pre, post_counts, pre_counts) -> torch.Tensor:
        return cnn.conv_effect_ratio_error(k, delta, layer.weight.detach(), samples, pre.csr, post_counts,
                                           pre_counts, layer.in_shape)

    def pool_effect(self, layer, k, samples, pre) -> torch.Tensor:
        return cnn.pool_effect(torch.from_numpy(k), take(torch.from_numpy(pre.spikes), samples), layer.in_shape,
                               layer.window)

    def finish(self, layer, acc, batch: int, reg: RegularizerSpec) -> torch.Tensor:
        name = layer.spec.name
        if layer.kind == "conv":
            w = layer.weight.detach()
            g = torch.from_numpy(acc["g"] / batch).to(torch.float32) if acc["any"] else torch.zeros_like(w)
            g = g + cnn.conv_regularizer_grad(w, reg)
            if not bool(torch.isfinite(g).all()):
                raise FloatingPointError(f"non-finite gradient in layer {name!r}")
            return g
        w_t, _, sumsq = self._derived[id(layer)]
        if acc["any"]:
            g = rules.finish_gradient(acc["g"], w_t, sumsq, 1.0 / batch, reg, name, acc["rows"])
        else:
            g = rules.finish_gradient(None, w_t, sumsq, 1.0, reg, name)
        self._clean[id(layer)] = True  # finish_gradient cleared the rows that were written
        return torch.from_numpy(g).T  # [n_post, n_pre], in the weights' storage order
