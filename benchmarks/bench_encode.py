"""Poisson-encode the 10,000 real MNIST test images at T = 400 into a spike store, end to end, and compare with
snntorch's rate coder followed by saving a dense bool array with numpy.

    python benchmarks/bench_encode.py [--steps 400] [--workers 1 2] [--snn-samples 1000] [--data DIR]

End to end = read the IDX files (+ verify their sha256) + encode + write (+ verify, for the store). snntorch is
`snntorch.spikegen.rate` on the same probabilities (pixel / 255 / 5.5) per chunk of 500 images, the [B, T, 784]
bool raster written to an .npy file; it is measured on `--snn-samples` images (its cost is linear in samples) and
reported per sample. Sizes: the store's bytes on disk against a bit-packed dense raster (n * T * 784 / 8 bytes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sample_data import SAMPLE_DATA

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

N_TRAIN_FULL = 60_000


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_store(source: Path, out: Path, steps: int, workers: int) -> dict:
    from spikedata.datasets.shared.images import forget_loaded_images, image_encode_jobs
    from spikedata.pipeline import encode_to_store
    from spikedata.store import open_store

    forget_loaded_images()  # read the files again: reading is part of the measurement
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    attrs, jobs = image_encode_jobs("mnist", source, ["test"], steps=steps, seed=0)
    encode_to_store(out, attrs, jobs, workers=workers, progress=False)
    seconds = time.perf_counter() - start
    split = open_store(out)["test"]
    return {"seconds": seconds, "samples": len(split), "events": split.n_events, "bytes": _dir_bytes(out)}


def bench_snntorch(images: np.ndarray, steps: int, out: Path, chunk: int = 500) -> dict:
    import torch
    from snntorch import spikegen

    torch.manual_seed(0)
    n = len(images)
    start = time.perf_counter()
    raster = np.lib.format.open_memmap(out, mode="w+", dtype=np.bool_, shape=(n, steps, 784))
    events = 0
    for s in range(0, n, chunk):
        probs = torch.from_numpy(images[s : s + chunk].reshape(-1, 784).astype(np.float32)) / 255.0 / 5.5
        spikes = spikegen.rate(probs, num_steps=steps)  # [T, B, 784] float, Bernoulli per step
        block = spikes.permute(1, 0, 2).numpy().astype(np.bool_)
        raster[s : s + chunk] = block
        events += int(block.sum())
    raster.flush()
    del raster
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "samples": n, "events": events, "bytes": out.stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SAMPLE_DATA / "mnist")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--snn-samples", type=int, default=1000)
    args = parser.parse_args()

    from spikedata.io.idx import read_idx

    images = read_idx(args.data / "t10k-images-idx3-ubyte.gz")
    tmp = Path(tempfile.mkdtemp(prefix="bench_encode_"))
    try:
        # warm-up: numba kernels compiled/loaded from cache outside the measurement
        from spikedata.encoders.poisson import poisson_encode_events

        poisson_encode_events(images[:8], args.steps)
        rows = []
        for w in args.workers:
            r = bench_store(args.data, tmp / f"mnist-w{w}.zarr", args.steps, w)
            rows.append((f"spikedata store, {w} worker(s)", r))
        snn = bench_snntorch(images[: args.snn_samples], args.steps, tmp / "snn.npy")
        rows.append((f"snntorch rate + np dense bool ({args.snn_samples} samples)", snn))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    n_bits = len(images) * args.steps * 784
    packed = n_bits // 8
    print(f"\nMNIST t10k, {len(images)} images, T = {args.steps}, {os.cpu_count()} CPU cores")
    print(f"{'method':<52} {'s':>7} {'samples/s':>10} {'Mevents/s':>10} {'60k est. s':>11} {'MB/10k':>8}")
    snn_rate = snn["samples"] / snn["seconds"]
    for name, r in rows:
        rate = r["samples"] / r["seconds"]
        size_10k = r["bytes"] * len(images) / r["samples"] / 1e6
        print(
            f"{name:<52} {r['seconds']:7.2f} {rate:10.0f} {r['events'] / r['seconds'] / 1e6:10.2f} "
            f"{N_TRAIN_FULL / rate:11.1f} {size_10k:8.1f}"
        )
    best = max((r for name, r in rows if name.startswith("spikedata")), key=lambda r: r["samples"] / r["seconds"])
    best_rate = best["samples"] / best["seconds"]
    print(f"\nbit-packed dense raster of 10k samples: {packed / 1e6:.1f} MB; store: {best['bytes'] / 1e6:.1f} MB "
          f"({best['bytes'] / packed:.3f} of packed; target <= 0.5)")  # fmt: skip
    print(f"speed-up over snntorch end to end: {best_rate / snn_rate:.1f}x (target >= 10x)")
    print(f"full MNIST (60k) extrapolated: {N_TRAIN_FULL / best_rate:.1f} s (target < 60 s)")
    print(f"events per sample: {best['events'] / best['samples']:.0f} (density {best['events'] / n_bits:.4f})")


if __name__ == "__main__":
    main()
