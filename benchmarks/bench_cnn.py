"""Training throughput of the `mnist-cnn` preset (15C5-P2-40C5-P2-300-10, T = 400) through `hm2bp.Network`.

Times `Network.backward_pass` (forward + HM2-BP backward of every layer, algorithm.md §1, §3, §3.16: exactly what the
trainer
does per batch) on real MNIST t10k digits, Poisson encoded, or augmented + re-encoded with `--augment` (the
augmentation is timed separately). `--backend torch` times the torch twins (the GPU code path) on the CPU.

    .venv/bin/python benchmarks/bench_cnn.py --batches 1 32 --repeats 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sample_data import SAMPLE_DATA

from hm2bp import Network, load_config
from hm2bp.presets import load_preset
from hm2bp.train.augment import Augmenter

DATA = SAMPLE_DATA / "mnist"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--repeats", type=int, default=3, help="timed steps per batch size (after one warm-up)")
    ap.add_argument("--augment", action="store_true", help="augment + re-encode on the fly (timed separately)")
    ap.add_argument("--backend", default="auto", choices=["auto", "numba", "torch"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="Network threads (default: CPUs, at most 4)")
    args = ap.parse_args()
    from spikedata import poisson_encode
    from spikedata.io.idx import read_idx

    images = read_idx(DATA / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(DATA / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    cfg = load_config(load_preset("mnist-cnn"))
    net = Network.from_config(cfg, 784, (1, 28, 28), backend=args.backend, threads=args.threads).to(args.device)
    print(f"torch threads {torch.get_num_threads()}, network threads {net.threads}, backend {args.backend}, "
          f"device {args.device}")
    for b in args.batches:
        aug = Augmenter(cfg.augment, cfg.steps, seed=0, slots=b)
        times, aug_times, k = [], [], 0
        for r in range(args.repeats + 1):
            sel = np.arange(k, k + b)
            k += b
            t0 = time.perf_counter()
            if args.augment:
                spikes = aug.spikes(torch.from_numpy(images[sel]).to(args.device), 0, sel)
            else:
                spikes = torch.from_numpy(poisson_encode(images[sel], cfg.steps, seed=0, first_index=int(sel[0])))
            t1 = time.perf_counter()
            net.backward_pass(spikes.to(args.device), torch.from_numpy(labels[sel]))
            if args.device != "cpu":
                torch.cuda.synchronize()
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
