"""N-MNIST read + bin to [T, 2312] spike trains: ours vs tonic (read_mnist_file + ToFrame, same 600 µs bins).

    .venv/bin/python benchmarks/bench_events.py [--samples 2000] [--repeats 3] [--workers 2]

Only two real N-MNIST files exist offline; the benchmark fills a temporary folder ``Train/<digit>/*.bin`` with
`--samples` copies of them (real bytes, real file-system reads) and times, per sample, from the file to a dense
train: ours = `read_events` + `bin_events` (600 µs, 540 steps) + `spikes_to_dense` -> bool [540, 2312];
tonic = `tonic.io.read_mnist_file` + `ToFrame(sensor_size=(34, 34, 2), time_window=600)` -> counts
[T', 2, 34, 34] reshaped to [T', 2312]. Then the whole store path (`encode_to_store`, sparse events, no dense
raster) at 1 and `--workers` processes, extrapolated to all 70,000 N-MNIST samples. Then, in the same run,
Prophesee EVT 3.0 / EVT 2.0 / DAT decoding vs expelliarmus and the event transforms vs tonic
(`bench_event_formats.py`, medians of `--format-repeats`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from sample_data import SAMPLE_DATA
from timing import best

from spikedata.datasets.nmnist import NMNIST_PLAIN, PRESETS, find_nmnist
from spikedata.datasets.shared.event_encoding import split_jobs, store_attrs
from spikedata.encoders.event_binning import bin_events, spikes_to_dense
from spikedata.io.events import read_events
from spikedata.pipeline import encode_to_store

SHARED = SAMPLE_DATA
SAMPLES = ["nmnist/tonic_sample_nmnist.bin", "nmnist/slayer_NMNIST_1.bs2"]
N_MNIST = 70000


def make_folder(root: Path, n: int) -> list[Path]:
    data = [(SHARED / s).read_bytes() for s in SAMPLES]
    paths = []
    for i in range(n):
        p = root / "Train" / str(i % 10) / f"{i:05d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data[i % 2])
        paths.append(p)
    return paths


def ours(paths: list[Path]) -> int:
    total = 0
    opts = NMNIST_PLAIN
    for p in paths:
        b = bin_events(read_events(p), opts)
        # count_nonzero consumes the raster cheaply on both sides (a bool .sum() alone cost more than the binning)
        total += np.count_nonzero(spikes_to_dense(b.times, b.units, opts.n_steps, opts.n_units))
    return total


def tonic_frames(paths: list[Path]) -> int:
    import tonic

    dtype = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
    to_frame = tonic.transforms.ToFrame(sensor_size=(34, 34, 2), time_window=600)
    total = 0
    for p in paths:
        frames = to_frame(tonic.io.read_mnist_file(str(p), dtype=dtype))
        total += np.count_nonzero(frames)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--format-repeats", type=int, default=31)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_events_"))
    try:
        paths = make_folder(tmp / "src", args.samples)
        ours(paths[:2])  # numba compile / cache load outside the timing
        t_ours = best(lambda: ours(paths), args.repeats)
        try:
            tonic_frames(paths[:2])
            t_tonic = best(lambda: tonic_frames(paths), args.repeats)
        except ImportError as exc:
            t_tonic = float("nan")
            print(f"tonic not available ({exc})")
        n = len(paths)
        print(f"{n} N-MNIST samples, file -> dense [T, 2312] train, best of {args.repeats}, {os.cpu_count()} CPUs")
        print(f"  ours  (read_events + bin_events + dense): {n / t_ours:8.0f} samples/s")
        print(f"  tonic (read_mnist_file + ToFrame 600 µs):  {n / t_tonic:8.0f} samples/s")
        print(f"  speed-up: {t_tonic / t_ours:.1f}x")
        folder = find_nmnist(tmp / "src")
        for workers in sorted({1, args.workers}):
            out = tmp / f"store_{workers}.zarr"
            opts = PRESETS["reference"]
            jobs = split_jobs(folder, opts)
            t = time.perf_counter()
            encode_to_store(out, store_attrs("nmnist", folder, opts), jobs, workers=workers, progress=False)
            dt = time.perf_counter() - t
            print(
                f"  encode_to_store (reference preset, sparse store), {workers} worker(s): {n / dt:8.0f} samples/s "
                f"-> 70,000 N-MNIST samples in {N_MNIST / (n / dt):.0f} s (incl. process start-up)"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    import bench_event_formats

    bench_event_formats.main(args.format_repeats)


if __name__ == "__main__":
    main()
