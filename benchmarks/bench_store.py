"""Choose the spike store's chunking and compression by measurement.

Real MNIST t10k digits (the sample data's mnist/), Poisson-encoded at T = 400 (algorithm.md §2.1), written with several
event-chunk sizes and codecs. For each layout: bytes on disk (vs a bit-packed dense raster), write time, streaming
read throughput (`read_range` over blocks of 256 samples, what the trainer's loader does) and the median latency
of a random single-sample read (`events(i)`).

Then the cost of the integrity checks (docs/store.md), on the default layout, side by side in one run: streaming
passes with the unchecked read path (plain zarr slices plus the version-1 range check) alternate with passes of
`Split.read_range` on a freshly opened store (every chunk verified against the manifest at its first read) and
with a second pass on the same store (chunks already verified); medians of `--repeats` rounds.

    .venv/bin/python benchmarks/bench_store.py [--samples 2000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from sample_data import SAMPLE_DATA
from zarr.codecs import BloscCodec, BloscShuffle

from spikedata.pipeline import dense_to_block
from spikedata.store import StoreWriter, open_store

MNIST = SAMPLE_DATA / "mnist" / "t10k-images-idx3-ubyte.gz"


def load_images(n: int) -> np.ndarray:
    raw = gzip.decompress(MNIST.read_bytes())
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784)[:n]


def poisson(images: np.ndarray, steps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = images.astype(np.float32) / 255.0 / 5.5
    out = rng.random((len(images), steps, 784), dtype=np.float32) < p[:, None, :]
    out[:, 0] = False
    return out


def blosc(cname: str, shuffle: BloscShuffle, clevel: int = 5) -> list:
    return [BloscCodec(cname=cname, clevel=clevel, shuffle=shuffle)]


BIT, BYTE = BloscShuffle.bitshuffle, BloscShuffle.shuffle
LAYOUTS = {
    "zstd5+byteshuffle, 256k-event chunks": (1 << 18, blosc("zstd", BYTE)),
    "zstd3+byteshuffle, 256k-event chunks (default)": (1 << 18, blosc("zstd", BYTE, 3)),
    "zstd1+byteshuffle, 256k-event chunks": (1 << 18, blosc("zstd", BYTE, 1)),
    "zstd5+byteshuffle, 64k-event chunks": (1 << 16, blosc("zstd", BYTE)),
    "zstd5+byteshuffle, 1M-event chunks": (1 << 20, blosc("zstd", BYTE)),
    "zstd5+byteshuffle, 4M-event chunks": (1 << 22, blosc("zstd", BYTE)),
    "zstd5+bitshuffle, 256k-event chunks": (1 << 18, blosc("zstd", BIT)),
    "lz4+byteshuffle, 256k-event chunks": (1 << 18, blosc("lz4", BYTE)),
    "uncompressed, 256k-event chunks": (1 << 18, []),
}


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    images = load_images(args.samples)
    labels = np.zeros(len(images), np.int16)
    blocks = [
        dense_to_block(poisson(images[s : s + 256], 400, s), labels[s : s + 256]) for s in range(0, len(images), 256)
    ]
    n_events = sum(len(b.times) for b in blocks)
    packed = len(images) * 400 * 784 / 8
    attrs = dict(
        dataset="mnist-t10k",
        encoder={"name": "poisson", "params": {}},
        n_units=784,
        unit_shape=[28, 28],
        n_steps=400,
        dt_us=1000,
        classes=["0"],
        seed=0,
        source={"files": {}},
    )
    print(f"{len(images)} real t10k digits, T = 400, {n_events} events ({n_events / len(images):.0f} per sample)")
    header = ("MB", "/packed", "B/event", "write s", "stream samp/s", "1-sample ms")
    print(f"{'layout':48s} " + " ".join(f"{h:>{max(8, len(h))}s}" for h in header))
    tmp = Path(tempfile.mkdtemp())
    try:
        for name, (chunk, codecs) in LAYOUTS.items():
            path = tmp / "s.zarr"
            t0 = time.perf_counter()
            with StoreWriter(path, attrs, overwrite=True, event_chunk=chunk, compressors=codecs) as w:
                split = w.split("train")
                for b in blocks:
                    split.append(b.indptr, b.times, b.units, b.labels)
            write_s = time.perf_counter() - t0
            size = du(path)
            split = open_store(path)["train"]
            t0 = time.perf_counter()
            for s in range(0, len(split), 256):
                split.read_range(s, min(s + 256, len(split)))
            stream = len(split) / (time.perf_counter() - t0)
            rng = np.random.default_rng(0)
            lat = []
            for i in rng.integers(0, len(split), 30):
                t0 = time.perf_counter()
                split.events(int(i))
                lat.append(time.perf_counter() - t0)
            print(
                f"{name:48s} {size / 1e6:7.1f} {size / packed:8.3f} {size / n_events:8.2f} {write_s:8.2f} "
                f"{stream:14.0f} {1e3 * statistics.median(lat):12.2f}"
            )
        integrity_overhead(tmp / "default.zarr", attrs, blocks, args.repeats)
    finally:
        shutil.rmtree(tmp)


def unchecked_pass(split) -> None:
    """The read path without integrity checks: zarr slices and the version-1 range check."""
    times, units = split._times.array, split._units.array
    for s in range(0, len(split), 256):
        lo, hi = int(split.indptr[s]), int(split.indptr[min(s + 256, len(split))])
        t, u = times[lo:hi], units[lo:hi]
        if len(t) and (int(t.max()) >= split.n_steps or int(u.max()) >= split.n_units):
            raise RuntimeError("out of range")


def checked_pass(split) -> None:
    for s in range(0, len(split), 256):
        split.read_range(s, min(s + 256, len(split)))


def integrity_overhead(path: Path, attrs: dict, blocks: list, repeats: int) -> None:
    with StoreWriter(path, attrs) as w:
        split = w.split("train")
        for b in blocks:
            split.append(b.indptr, b.times, b.units, b.labels)
    rows: dict[str, list[float]] = {"open_store": [], "unchecked": [], "checked, first read": [],
                                    "checked, chunks verified": []}
    n = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        store = open_store(path)
        rows["open_store"].append(time.perf_counter() - t0)
        split = store["train"]
        n = len(split)
        for key, fn in (("unchecked", unchecked_pass), ("checked, first read", checked_pass),
                        ("checked, chunks verified", checked_pass)):
            t0 = time.perf_counter()
            fn(split)
            rows[key].append(time.perf_counter() - t0)
    base = statistics.median(rows["unchecked"])
    print(f"\nintegrity checks, default layout, {n} samples, medians of {repeats} alternating rounds:")
    print(f"{'read path':30s} {'ms':>8s} {'samples/s':>10s} {'vs unchecked':>13s}")
    for key, values in rows.items():
        med = statistics.median(values)
        rate = f"{n / med:10.0f}" if key != "open_store" else f"{'':10s}"
        ratio = f"{med / base:13.3f}" if key != "open_store" else ""
        print(f"{key:30s} {1e3 * med:8.1f} {rate} {ratio}")


if __name__ == "__main__":
    main()
