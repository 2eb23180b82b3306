"""Training throughput of the `mnist-cnn` network (15C5-P2-40C5-P2-300-10, T = 400) on CPU.

Until `hm2bp.Network` integrates conv/pool layers, one training step (forward + HM2-BP backward of every layer,
§1 and §3 / §3.16) is composed here from the pure functions of `hm2bp.conv`, `hm2bp.lif`, `hm2bp.spsp` and
`hm2bp.hm2bp_grad` on the numba/CPU path -- the same work the integrated network will do. Input: real MNIST
t10k digits, Poisson encoded (or augmented + re-encoded with `--augment`).

    .venv/bin/python benchmarks/bench_cnn.py --batches 1 32 --repeats 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from hm2bp import conv
from hm2bp import hm2bp_grad as rules
from hm2bp.augment import Augmenter, AugmentSpec
from hm2bp.config import LossSpec, RegularizerSpec
from hm2bp.lif import input_current, lif_scan, raster_to_csr
from hm2bp.spsp import spsp_readout

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
T, TR, TM, TS = 400, 2, 64.0, 8.0
LOSS = LossSpec()
REG = RegularizerSpec(lam=0.0, beta=0.0)
# (kind, parameter, threshold): the mnist-cnn preset
LAYERS = [("conv", (15, 5), 5.0), ("pool", 2, 2.0), ("conv", (40, 5), 12.0), ("pool", 2, 4.0),
          ("dense", 300, 10.0), ("dense", 10, 10.0)]


def init_weights(seed: int = 0) -> tuple[list, list]:
    gen = torch.Generator().manual_seed(seed)
    shape, shapes, weights = (1, 28, 28), [], []
    n_pre = 784
    for kind, par, _ in LAYERS:
        shapes.append(shape)
        if kind == "conv":
            w = (torch.rand(par[0], shape[0], par[1], par[1], generator=gen) * 2 - 1) * 0.5
            shape = conv.conv_output_shape(shape, *par)
        elif kind == "pool":
            w = None
            shape = conv.pool_output_shape(shape, par)
        else:
            w = torch.rand(par, n_pre, generator=gen) * 2 - 1
            shape = (par, 1, 1)
        n_pre = int(np.prod(shape))
        weights.append(w)
    return weights, shapes


def step(spikes: np.ndarray, labels: torch.Tensor, weights: list, shapes: list) -> dict:
    """One forward + backward over a batch (numba/CPU path); returns {layer index: gradient}."""
    batch = spikes.shape[0]
    raster = spikes.view(np.uint8)
    csr = raster_to_csr(raster)
    recs = [(raster, csr[2], None, csr)]
    for li, (kind, par, vth) in enumerate(LAYERS):
        pre_csr = recs[-1][3]
        if kind == "conv":
            cur = conv.conv_current(pre_csr, weights[li].numpy(), shapes[li], batch, T)
            spk, cnt = conv.conv_lif_scan(cur, vth, TM, TS, TR)
        elif kind == "pool":
            cur = conv.pool_current(torch.from_numpy(recs[-1][0]), shapes[li], par).numpy()
            spk, cnt = lif_scan(cur, vth, TM, TS, TR)
        else:
            w_t = np.ascontiguousarray(weights[li].numpy().T)
            cur = input_current(pre_csr[0], pre_csr[1], w_t, batch, T)
            spk, cnt = lif_scan(cur, vth, TM, TS, TR, 1.0 if li == len(LAYERS) - 1 else 0.0)
        recs.append((spk, cnt, cur, raster_to_csr(spk) if li < len(LAYERS) - 1 else None))
    counts = torch.from_numpy(recs[-1][1])
    delta = rules.output_error(counts, labels, LOSS)
    out_mod, cnt_mod = rules.replace_silent_label(torch.from_numpy(recs[-1][0]), counts, labels, LOSS.desired)
    active = torch.nonzero((delta != 0).any(1)).view(-1).numpy()
    grads = {}
    if active.size == 0:
        return grads
    delta = delta[active]
    post_spk, post_cnt = out_mod.numpy(), cnt_mod.numpy()
    for li in range(len(LAYERS) - 1, -1, -1):
        kind, par, vth = LAYERS[li]
        pre_spk, pre_cnt, _, pre_csr = recs[li]
        cur = recs[li + 1][2]
        kmat, side = spsp_readout(post_spk, cur, active, TR, TM, TS)
        pc = torch.from_numpy(post_cnt[active])
        prc = torch.from_numpy(np.asarray(pre_cnt)[active])
        if kind == "pool":  # no weight, no division by its threshold
            delta = conv.pool_error(torch.from_numpy(kmat), delta, torch.from_numpy(pre_spk[active]), pc, prc,
                                    shapes[li], par)
        else:
            delta = delta / vth
            w = weights[li]
            if kind == "conv":
                sigma = conv.conv_side_effect(torch.from_numpy(side), pc, w, vth)
                coef = (delta * (1 + sigma)).numpy()
                g = conv.conv_weight_gradient(kmat, coef, active, pre_csr, pc.numpy(), prc.numpy(), shapes[li],
                                              tuple(w.shape))
                grads[li] = torch.from_numpy(g / batch).float() + conv.conv_regularizer_grad(w, REG)
                if li > 0:
                    delta = conv.conv_effect_ratio_error(kmat, delta, w, active, pre_csr, pc, prc, shapes[li])
            else:
                sigma = rules.side_effect(torch.from_numpy(side), pc, w.double().sum(1), vth)
                coef = delta * (1 + sigma)
                if li == len(LAYERS) - 1:
                    coef = coef * rules.lateral_factor(torch.from_numpy(kmat), torch.from_numpy(post_spk[active]),
                                                       counts[active], labels[active], vth, 1.0)
                g_t = rules.weight_gradient(kmat, coef.numpy(), active, pre_csr, pc.numpy(), prc.numpy(), w.shape[1])
                w_np = w.numpy()
                g = rules.finish_gradient(g_t, w_np, np.ascontiguousarray(w_np.T), 1.0 / batch, REG, str(li))
                grads[li] = torch.from_numpy(g)
                delta = rules.effect_ratio_error(kmat, delta, w, active, pre_csr, pc, prc)
        post_spk, post_cnt = pre_spk, np.asarray(pre_cnt)
    return grads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--repeats", type=int, default=3, help="timed steps per batch size (after one warm-up)")
    ap.add_argument("--augment", action="store_true", help="augment + re-encode on the fly (timed separately)")
    args = ap.parse_args()
    from spikedata import poisson_encode
    from spikedata.io.idx import read_idx

    images = read_idx(DATA / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(DATA / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    weights, shapes = init_weights()
    print(f"torch threads {torch.get_num_threads()}")
    for b in args.batches:
        aug = Augmenter(AugmentSpec(enabled=True), T, seed=0, slots=b)
        times, aug_times, k = [], [], 0
        for r in range(args.repeats + 1):
            sel = np.arange(k, k + b)
            k += b
            t0 = time.perf_counter()
            if args.augment:
                spikes = aug.spikes(torch.from_numpy(images[sel]), 0, sel).numpy()
            else:
                spikes = poisson_encode(images[sel], T, seed=0, first_index=int(sel[0]))
            t1 = time.perf_counter()
            step(spikes, torch.from_numpy(labels[sel]), weights, shapes)
            t2 = time.perf_counter()
            if r:
                times.append(t2 - t1)
                aug_times.append(t1 - t0)
        per = np.median(times)
        line = f"batch {b:3d}: {per * 1e3:8.1f} ms/step  {b / per:7.2f} samples/s (median of {args.repeats})"
        if args.augment:
            line += f"  augment+encode {np.median(aug_times) * 1e3:.1f} ms/batch"
        print(line, flush=True)


if __name__ == "__main__":
    main()
