"""The `triton` kernel set: the CUDA path, designed for a GPU and free of host synchronisation.

* Spike trains are int16 *codes* `[B, T, n]` (`hm2bp.kernels.triton.lif`): 0 = no spike, else what the S-PSP
  read-out needs about the spike. The network input stays the loader's bool raster.
* One Triton kernel per layer and call for each sequential part: the LIF scan (time loop inside the kernel, state
  in registers, lateral inhibition reduced per sample in the kernel), the S-PSP read-out with its side-effect sum
  (`hm2bp.kernels.triton.spsp`), and the effect-ratio sums of dense, conv and pool layers
  (`hm2bp.kernels.triton.effect`).
* The currents and the weight gradients are float64 products on cuBLAS / cuDNN (spikes are 0/1, so the current is
  the correctly rounded float32 value of the exact sum, as in the other sets; no TF32 anywhere), cut into chunks of
  samples so that their float64 temporaries stay within `gemm_budget` bytes.
* Nothing reads a device value back: every sample of a batch is processed (those with a zero output error get a
  zero coefficient, which is exact), the silent-label replacement is a masked write, and non-finite gradients are
  flagged on the device (`check_finite` reads the flags when the caller chooses to).

On CPU tensors the same kernels run under Triton's interpreter (`TRITON_INTERPRET=1`, set by
`hm2bp.kernels.triton` when no GPU is present): slow, for tests of exactness.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hm2bp.config import LossSpec, NeuronParams, RegularizerSpec
from hm2bp.kernels.base import KernelSet, LayerParams, Trains, adam_scalars, exact_matmul_precision, flat_float32, take
from hm2bp.kernels.triton import current, effect, grad, interpreting, lif, optim, output, spsp
from hm2bp.kernels.triton.launch import launch
from hm2bp.rules import conv as rules_conv
from hm2bp.rules import gradient as rules
from hm2bp.rules.lif import spike_threshold
from hm2bp.rules.spsp import SILENT_POST_EFFECT, spsp_readout, window

F64 = torch.float64
#: Bytes of float64 temporaries one chunk of a conv current product may hold.
GEMM_BUDGET = 256 << 20
#: Bytes of the partial weight gradients of a conv layer's event-driven walk (one per program).
PARTIAL_BUDGET = 128 << 20


def _pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def _tile(batch: int, n: int, cap: int = 128, whole: bool = False, lanes: int = 128,
          wide: bool = False) -> tuple[int, int]:
    """(samples, neurons) of a program's tile: neurons a power of two up to `cap` (all of them with `whole`), and
    as many samples as fill `lanes` elements, so that small layers still give a program enough lanes. `wide` (CPU
    tensors, which only Triton's interpreter runs, one program after the other): a tile takes whole layers and
    batches (up to 16k elements), since fewer, wider programs run much faster there. A pure function of its
    arguments, so the GPU's choice is known without a GPU (the compile check relies on it)."""
    if wide:
        cap, lanes = max(cap, 1024), 1 << 14
    bn = max(16, _pow2(n) if whole else min(cap, _pow2(n)))
    sb = max(1, min(_pow2(batch), lanes // bn))
    return sb, bn


def _cdiv(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def _as_f64(spikes: torch.Tensor) -> torch.Tensor:
    """0/1 float64 of a bool raster or of int16 codes."""
    return (spikes if spikes.dtype == torch.bool else spikes != 0).to(F64)


def _as_u8(spikes: torch.Tensor) -> torch.Tensor:
    """A raster the kernels can load: int16 codes as they are, bool as uint8 (same bytes)."""
    return spikes.view(torch.uint8) if spikes.dtype == torch.bool else spikes


class TritonKernels(KernelSet):
    name = "triton"

    def __init__(self, device: torch.device, gemm_budget: int = GEMM_BUDGET,
                 partial_budget: int = PARTIAL_BUDGET) -> None:
        super().__init__(device)
        # meta: shape-only tensors, whose launches are recorded and not run (hm2bp.kernels.triton.aot)
        if self.device.type not in ("cuda", "meta") and not interpreting():
            raise ValueError("the triton kernel set needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors)")
        #: Wide tiles (`_tile`) for CPU tensors, which run under the interpreter; False: the tiles a GPU uses.
        self.wide_tiles = self.device.type == "cpu"
        exact_matmul_precision()
        self._k = {"lif": lif.lif_scan_kernel, "spsp": spsp.spsp_readout_kernel,
                   "dense_effect": effect.dense_effect_kernel, "pool_effect": effect.pool_effect_kernel,
                   "columns": grad.column_lists_kernel, "dense_grad": grad.dense_grad_kernel,
                   "conv_grad": grad.conv_grad_kernel, "output_stage": output.output_stage_kernel,
                   "lateral": output.lateral_factor_kernel,
                   "finish_dense": optim.finish_dense_kernel, "compact": current.compact_rows_kernel,
                   "current": current.sparse_current_kernel, "adam": optim.adam_kernel, "sgd": optim.sgd_kernel}
        self.gemm_budget = int(gemm_budget)
        self.partial_budget = int(partial_budget)
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._flags: dict[str, torch.Tensor] = {}  # per layer: int8 flags of non-finite gradient values
        self._w64: dict[int, torch.Tensor] = {}
        self._consts: dict[tuple, tuple[torch.Tensor, ...]] = {}  # small constant tensors, by value
        self._sums: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def prepare(self, layers: list) -> None:
        self._sums = {}
        self._w64 = {}

    def _chunk(self, batch: int, per_sample: int) -> list[slice]:
        rows = max(1, self.gemm_budget // max(1, per_sample))
        return [slice(c, min(c + rows, batch)) for c in range(0, batch, rows)]

    def _storage64(self, layer) -> torch.Tensor:
        key = id(layer)
        if key not in self._w64:
            self._w64[key] = layer.storage.detach().to(F64)
        return self._w64[key]

    # ---- forward ---------------------------------------------------------------------------------------------
    def inputs(self, spikes: torch.Tensor) -> Trains:
        return Trains(spikes, spikes.sum(1))

    def as_bool(self, trains: Trains) -> torch.Tensor:
        s = trains.spikes
        return s if s.dtype == torch.bool else s != 0

    @staticmethod
    def code_cap(nrn: NeuronParams) -> int:
        """`D = W - T_R + 1`: the largest spike code (docs of `hm2bp.kernels.triton.lif`)."""
        cap = window(nrn.tau_m) - int(nrn.refractory) + 1
        if not 1 <= cap <= np.iinfo(np.int16).max:
            raise ValueError(f"tau_m {nrn.tau_m} / refractory {nrn.refractory}: the S-PSP window does not fit the "
                             "triton kernel set's int16 spike codes (use another backend)")
        return cap

    def lif(self, layer: LayerParams, current: torch.Tensor, lateral: float = 0.0, epsilon: bool = True) -> Trains:
        nrn = layer.spec.neuron
        batch, steps, n = current.shape
        codes = torch.empty(batch, steps, n, dtype=torch.int16, device=current.device)
        counts = torch.empty(batch, n, dtype=torch.int64, device=current.device)
        thr = spike_threshold(layer.vth) if epsilon else np.float32(layer.vth)
        sb, bn = _tile(batch, n, whole=lateral != 0.0, wide=self.wide_tiles)
        if batch:
            launch(self._k["lif"], (_cdiv(batch, sb), _cdiv(n, bn)), current, codes, counts, batch, steps, n,
                   float(np.float32(nrn.tau_m)), float(np.float32(nrn.tau_s)), float(thr),
                   float(np.float32(lateral)), int(nrn.refractory), self.code_cap(nrn), LATERAL=lateral != 0.0,
                   SB=sb, BN=bn)
        return Trains(codes, counts, current)

    def spike_lists(self, trains: Trains) -> tuple[torch.Tensor, torch.Tensor]:
        """Per (sample, step) row: the pre neurons that spiked, ascending (`[B*T, n]`, int16 or int32, valid up to
        the row's count) and the counts (int32 `[B*T]`); made once per trains and kept in `trains.csr`."""
        lists = self._lists(trains)
        if "rows" not in lists:
            spikes = _as_u8(trains.spikes)
            batch, steps, n = spikes.shape
            rows = batch * steps
            idx = torch.empty(rows, n, dtype=torch.int16 if n <= np.iinfo(np.int16).max else torch.int32,
                              device=spikes.device)
            cnt = torch.empty(rows, dtype=torch.int32, device=spikes.device)
            rb = 16
            if rows:
                launch(self._k["compact"], (_cdiv(rows, rb),), spikes, idx, cnt, rows, n, RB=rb,
                       BN=min(1024, max(16, _pow2(n))))
            lists["rows"] = (idx, cnt)
        return lists["rows"]

    def column_lists(self, trains: Trains) -> tuple[torch.Tensor, torch.Tensor]:
        """Per (sample, neuron): the steps at which it fired, ascending (`[B, n, T]`, int16 or int32, valid up to
        the count) and the counts (int32 `[B, n]`) (`hm2bp.kernels.triton.grad`); made once per trains."""
        lists = self._lists(trains)
        if "columns" not in lists:
            spikes = _as_u8(trains.spikes)
            batch, steps, n = spikes.shape
            steps_of = torch.empty(batch, n, steps, dtype=torch.int16 if steps <= np.iinfo(np.int16).max
                                   else torch.int32, device=spikes.device)
            cnt = torch.empty(batch, n, dtype=torch.int32, device=spikes.device)
            bj = 16 if self.wide_tiles else 64
            bt = max(16, _pow2(steps)) if self.wide_tiles else min(32, max(16, _pow2(steps)))
            if batch and n:
                launch(self._k["columns"], (batch, _cdiv(n, bj)), spikes, steps_of, cnt, batch, steps, n, BT=bt,
                       BJ=bj)
            lists["columns"] = (steps_of, cnt)
        return lists["columns"]

    @staticmethod
    def _lists(trains: Trains) -> dict:
        if trains.csr is None:
            trains.csr = {}
        return trains.csr

    def dense_current(self, layer: LayerParams, pre: Trains) -> torch.Tensor:
        batch, steps, n_pre = pre.spikes.shape
        n_post = layer.n_post
        idx, cnt = self.spike_lists(pre)
        cur = torch.empty(batch, steps, n_post, dtype=torch.float32, device=pre.spikes.device)
        rows = batch * steps
        rb, bn = 16, min(128, max(16, _pow2(n_post)))
        if rows:
            # the sum of the W^T rows of the pre spikes, per row, in float64: the numba kernel's value, bit for bit
            launch(self._k["current"], (_cdiv(rows, rb), _cdiv(n_post, bn)), idx, cnt, layer.storage.detach(),
                   cur, rows, n_pre, n_post, RB=rb, S=min(64, max(1, 2048 // bn)), BN=bn)
        return cur

    def conv_current(self, layer: LayerParams, pre: Trains) -> torch.Tensor:
        batch, steps = pre.spikes.shape[:2]
        w64 = layer.storage.detach().to(F64)
        cur = torch.empty(batch, steps, layer.n_post, dtype=torch.float32, device=w64.device)
        for c in self._chunk(batch, steps * (layer.n_pre + layer.n_post) * 8):
            x = _as_f64(pre.spikes[c]).reshape(-1, *layer.in_shape)
            cur[c].view(-1, *layer.out_shape).copy_(F.conv2d(x, w64))
        return cur

    # ---- output stage ----------------------------------------------------------------------------------------
    def _label_train(self, steps: int, desired: float, nrn: NeuronParams, device) -> tuple[torch.Tensor, ...]:
        """Steps and codes of the synthetic label train (algorithm.md §3.2-5): the first spike gets the cap, the
        others s = period - T_R (capped)."""
        refractory, cap = int(nrn.refractory), self.code_cap(nrn)
        key = (steps, float(desired), refractory, cap, str(device))
        if key not in self._consts:
            times = rules.silent_label_train(steps, desired)
            vals = np.full(times.size, min(int(times[0]) - refractory, cap) if times.size else 0, np.int16)
            if times.size:
                vals[0] = cap
            self._consts[key] = (torch.from_numpy(times.astype(np.int64)).to(device),
                                       torch.from_numpy(vals).to(device))
        return self._consts[key]

    def output_errors(self, out: Trains, labels: torch.Tensor, weights: torch.Tensor, loss: LossSpec,
                      nrn: NeuronParams, steps: int) -> tuple[Trains, torch.Tensor, torch.Tensor]:
        """The whole output stage in one kernel: dead-zone error, sample weights, the silent label's train written
        into the codes, the logged cost."""
        times, vals = self._label_train(steps, loss.desired, nrn, out.spikes.device)
        codes, counts = out.spikes.clone(), out.counts.clone()
        batch, _, n = codes.shape
        dev = codes.device
        error = torch.empty(batch, n, dtype=F64, device=dev)
        cost = torch.empty(batch, dtype=F64, device=dev)
        key = ("loss", float(loss.desired), float(loss.undesired), float(loss.margin), str(dev))
        if key not in self._consts:
            self._consts[key] = (torch.tensor(key[1:4], dtype=F64, device=dev),)
        if batch:
            launch(self._k["output_stage"], (batch,), codes, counts, out.counts, labels, weights.contiguous(),
                   times, vals, self._consts[key][0], error, cost, times.numel(), steps, n,
                   BN=max(16, _pow2(n)), BT=max(16, _pow2(times.numel())))
        # a period within the refractory gap gives trains the fused read-out does not assume
        regular = times.numel() == 0 or int(rules.silent_label_train(steps, loss.desired)[0]) >= nrn.refractory + 1
        return Trains(codes, counts, out.current, regular=regular), error, cost

    def active(self, delta_out: torch.Tensor) -> None:
        return None

    # ---- backward --------------------------------------------------------------------------------------------
    def _powers(self, steps: int, nrn: NeuronParams, cap: int, device) -> tuple[torch.Tensor, ...]:
        key = (steps, float(nrn.tau_m), float(nrn.tau_s), cap, str(device))
        if key not in self._tables:
            n = max(steps, cap) + 2
            tm, ts = float(nrn.tau_m), float(nrn.tau_s)
            pm = torch.tensor([math.exp(-d / tm) for d in range(n)], dtype=F64, device=device)
            ps = torch.tensor([math.exp(-d / ts) for d in range(n)], dtype=F64, device=device)
            const = torch.tensor([1.0 / (1.0 - ts / tm), math.exp(-1.0 / tm), math.exp(-1.0 / ts)], dtype=F64,
                                 device=device)
            self._tables[key] = (pm, ps, const)
        return self._tables[key]

    def spsp(self, post: Trains, samples: Any, nrn: NeuronParams) -> tuple[torch.Tensor, torch.Tensor]:
        codes = take(post.spikes, samples)
        current = take(post.current, samples)
        if not post.regular or codes.dtype != torch.int16:
            return spsp_readout(codes != 0, current, nrn.refractory, nrn.tau_m, nrn.tau_s)
        batch, steps, n = codes.shape
        k = torch.empty(batch, steps, n, dtype=torch.float32, device=codes.device)
        side = torch.empty(batch, n, dtype=F64, device=codes.device)
        cap = self.code_cap(nrn)
        pm, ps, const = self._powers(steps, nrn, cap, codes.device)
        sb, bn = _tile(batch, n, wide=self.wide_tiles)
        if batch:
            launch(self._k["spsp"], (_cdiv(batch, sb), _cdiv(n, bn)), codes, current, k, side, pm, ps, const,
                   batch, steps, n, int(nrn.refractory), window(nrn.tau_m), SB=sb, BN=bn)
        return k, side

    def lateral_factor(self, k: torch.Tensor, post: Trains, samples: Any, counts: torch.Tensor,
                       labels: torch.Tensor, vth: float, w0: float) -> torch.Tensor:
        codes = take(post.spikes, samples)
        batch, steps, n = codes.shape
        gamma = torch.empty(batch, n, dtype=F64, device=codes.device)
        key = ("lateral", float(vth), float(w0), str(codes.device))
        if key not in self._consts:
            self._consts[key] = (torch.tensor([1.0 / vth, w0 * w0], dtype=F64, device=codes.device),)
        bn = max(16, _pow2(n))
        if batch:
            # the [BN, BN] float64 tiles spread over more warps as BN grows: at most 64 values of each tile per thread
            # (with 4 warps a 100-class output spilled kilobytes per thread)
            launch(self._k["lateral"], (batch,), k, _as_u8(codes), counts.contiguous(), labels, gamma,
                   self._consts[key][0], steps, n, BN=bn, num_warps=min(16, max(4, bn * bn // 2048)))
        return gamma

    def row_sums(self, layer) -> tuple[torch.Tensor, torch.Tensor]:
        key = id(layer)
        if key not in self._sums:
            w = self._storage64(layer)  # [n_pre, n_post]
            self._sums[key] = (w.sum(0), (w * w).sum(0))
        return self._sums[key]

    def new_accumulator(self, layer) -> dict[str, Any]:
        if layer.kind == "dense":
            return {"parts": []}  # partial gradients [segments, n_pre, n_post] of `dense_grad`, summed by `finish`
        return {"g": torch.zeros(layer.weight_shape, dtype=F64, device=self.device)}

    def _silent_effect(self) -> torch.Tensor:
        """`e = 0.1` of a silent post and an active pre (algorithm.md §3.1) as a float64 tensor."""
        key = ("silent", str(self.device))
        if key not in self._consts:
            self._consts[key] = (torch.tensor([SILENT_POST_EFFECT], dtype=F64, device=self.device),)
        return self._consts[key][0]

    def dense_grad_and_effect(self, acc, layer, k, coef, delta, samples, pre, post_counts, pre_counts):
        """Event-driven (`hm2bp.kernels.triton.grad.dense_grad_kernel`): each pre neuron walks its own spikes; the
        error with effect ratios from the same walk when one tile holds every post, else `dense_effect`."""
        steps_of, cnt = (take(t, samples) for t in self.column_lists(pre))
        batch, n_pre, steps = steps_of.shape
        n_post = layer.n_post
        # segments of samples: their rows of K stay in L2 while read, at most 32 partial gradients
        seg = max(_cdiv(4096, max(steps, 1)), _cdiv(batch, 32))
        n_seg = _cdiv(batch, seg)
        part = torch.empty(n_seg, n_pre, n_post, dtype=F64, device=k.device)
        bi = min(128, max(16, _pow2(n_post)))
        fused = delta is not None and n_post <= bi
        out = torch.empty(batch, n_pre, dtype=F64, device=k.device) if fused else part
        if batch:
            launch(self._k["dense_grad"], (n_pre, _cdiv(n_post, bi), n_seg), steps_of, cnt, k,
                   coef.to(F64).contiguous(), post_counts.contiguous(), self._silent_effect(),
                   delta.to(F64).contiguous() if fused else part, layer.storage.detach(), part, out, batch, steps,
                   seg, n_pre, n_post, S=min(64, max(16, 2048 // bi)), BI=bi, EFFECT=fused)
            acc["parts"].append(part)
        if delta is None:
            return None
        return out if fused else self.dense_effect(layer, k, delta, samples, pre, post_counts, pre_counts)

    def dense_effect(self, layer, k, delta, samples, pre, post_counts, pre_counts) -> torch.Tensor:
        pre_spikes = _as_u8(take(pre.spikes, samples))
        batch, steps, n_pre = pre_spikes.shape
        n_post = layer.n_post
        out = torch.empty(batch, n_pre, dtype=F64, device=delta.device)
        storage = layer.storage.detach()  # W[i, j] = storage[j, i]
        sb, bj = _tile(batch, n_pre, 64, lanes=64, wide=self.wide_tiles)
        bi = max(16, min(32, _pow2(n_post)))
        if batch:
            # the whole rule of `hm2bp.rules.gradient.effect_ratio_error` (effect sum and ratio-1 parts) in one kernel
            launch(self._k["dense_effect"], (_cdiv(batch, sb), _cdiv(n_pre, bj)), k,
                   delta.to(F64).contiguous(), post_counts.contiguous(), pre_counts.contiguous(), storage,
                   storage.stride(1), storage.stride(0), pre_spikes, out, batch, steps, n_post, n_pre, SB=sb,
                   BI=bi, BJ=bj)
        return out

    def conv_grad_and_effect(self, acc, layer, k, coef, delta, samples, pre, post_counts, pre_counts):
        """One walk over the pre spikes for the weight gradient and the effect sums
        (`hm2bp.kernels.triton.grad.conv_grad_kernel`); the error as `hm2bp.rules.conv.conv_pre_delta`."""
        steps_of, cnt = (take(t, samples) for t in self.column_lists(pre))
        batch, n_pre, steps = steps_of.shape
        c_out, c_in, ks, _ = layer.weight_shape
        _, h, w = layer.in_shape
        _, ho, wo = layer.out_shape
        weight = layer.storage.detach().contiguous()
        bo, kk = max(2, _pow2(c_out)), max(2, _pow2(ks * ks))
        # pixels per program: the partial gradients (one [c_out, k*k] float64 per program) stay within the budget
        pb = min(_pow2(h * w), _pow2(_cdiv(batch * n_pre * c_out * ks * ks * 8, self.partial_budget)))
        blocks = _cdiv(h * w, pb)
        part = torch.empty(batch * c_in * blocks, c_out, ks * ks, dtype=F64, device=k.device)
        out = torch.zeros(batch, n_pre, dtype=F64, device=k.device) if delta is not None else part
        dcoef = torch.where(post_counts > 0, delta, 0.0).to(F64).contiguous() if delta is not None else part
        if batch:
            launch(self._k["conv_grad"], (batch, c_in, blocks), steps_of, cnt, k, coef.to(F64).contiguous(),
                   post_counts.contiguous(), self._silent_effect(), dcoef, weight, part, out, batch, steps, c_in, h,
                   w, c_out, ho, wo, ks,
                   PB=pb, EFFECT=delta is not None, S=max(1, min(64, 2048 // (bo * kk))), BO=bo, KK=kk, num_warps=8)
            # the programs' partial sums, added in program order
            sums = part.view(batch, c_in, blocks, c_out, ks * ks).sum((0, 2))  # [c_in, c_out, k*k]
            acc["g"] += sums.permute(1, 0, 2).reshape(c_out, c_in, ks, ks)
        if delta is None:
            return None
        return rules_conv.conv_pre_delta(out, delta, weight, post_counts, pre_counts, layer.out_shape)

    def pool_effect(self, layer, k, samples, pre) -> torch.Tensor:
        pre_spikes = _as_u8(take(pre.spikes, samples))
        batch, steps = pre_spikes.shape[:2]
        c, h, w = layer.in_shape
        out = torch.empty(batch, layer.n_pre, dtype=F64, device=k.device)
        sb, bj = _tile(batch, layer.n_pre, wide=self.wide_tiles)
        if batch:
            launch(self._k["pool_effect"], (_cdiv(batch, sb), _cdiv(layer.n_pre, bj)), k, pre_spikes, out,
                   batch, steps, c, h, w, layer.window, SB=sb, BJ=bj)
        return out

    def _flag_buffer(self, name: str, size: int) -> torch.Tensor:
        flags = self._flags.get(name)
        if flags is None or flags.numel() != size:
            flags = self._flags[name] = torch.zeros(size, dtype=torch.int8, device=self.device)
        return flags

    def finish(self, layer, acc, batch: int, reg: RegularizerSpec) -> torch.Tensor:
        name = layer.spec.name
        if layer.kind == "conv":
            w = layer.storage.detach()
            g = (acc["g"] / max(batch, 1)).to(torch.float32) + rules_conv.conv_regularizer_grad(w, reg)
            flags = self._flag_buffer(name, 1)
            flags |= (~torch.isfinite(g).all()).to(torch.int8)
            return g
        n_pre, n_post = layer.n_pre, layer.n_post
        has_reg = reg.lam != 0.0 and reg.beta != 0.0
        key = ("reg", float(reg.lam), float(reg.beta), float(reg.weight_limit), str(self.device))
        if key not in self._consts:
            self._consts[key] = (torch.tensor(key[1:4], dtype=F64, device=self.device),)
        sumsq = self.row_sums(layer)[1] if has_reg else self._consts[key][0]
        parts = acc["parts"]
        parts = parts[0] if len(parts) == 1 else torch.cat(parts) if parts else self._consts[key][0]
        out = torch.empty(n_pre, n_post, dtype=torch.float32, device=self.device)
        block = 1024
        programs = _cdiv(n_pre * n_post, block)
        # one fused pass: the partial gradients in order, batch mean + regulariser, rounded once, non-finite values
        # flagged for `check_finite`
        launch(self._k["finish_dense"], (programs,), parts, len(acc["parts"]) and parts.shape[0],
               layer.storage.detach(), sumsq, self._consts[key][0], out, self._flag_buffer(name, programs), n_pre,
               n_post, max(batch, 1), HAS_REG=has_reg, BLOCK=block)
        return out.T  # [n_post, n_pre], in the storage order

    def check_finite(self) -> None:
        """Read the finiteness flags of the gradients since the last check (one host synchronisation); raise
        FloatingPointError naming the first layer with a non-finite value."""
        if not self._flags:
            return
        names = list(self._flags)
        bad = torch.stack([self._flags[n].max() for n in names]).cpu()
        for flags in self._flags.values():
            flags.zero_()
        for name, flagged in zip(names, bad.tolist(), strict=True):
            if flagged:
                raise FloatingPointError(f"non-finite gradient in layer {name!r}")

    # ---- optimiser -------------------------------------------------------------------------------------------
    def _elementwise(self, kernel: str, n: int, *args) -> None:
        block = 1024
        launch(self._k[kernel], (_cdiv(n, block),), *args, BLOCK=block)

    def adam_update(self, w, g, m, v, lr, c1, c2, beta1, beta2, eps) -> None:
        """One fused Triton kernel per layer, bit-equal to the numba set's update (`hm2bp.kernels.triton.optim`)."""
        flat = flat_float32(w, g, m, v)
        if flat is None:
            super().adam_update(w, g, m, v, lr, c1, c2, beta1, beta2, eps)
            return
        n = flat[0].numel()
        self._elementwise("adam", n, *flat, n, *map(float, adam_scalars(lr, c1, c2, beta1, beta2, eps)))

    def sgd_update(self, w, g, u, momentum, lr) -> None:
        flat = flat_float32(w, g, u)
        if flat is None:
            super().sgd_update(w, g, u, momentum, lr)
            return
        n = flat[0].numel()
        self._elementwise("sgd", n, *flat, n, float(np.float32(momentum)), float(np.float32(lr)))
