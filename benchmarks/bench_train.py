"""Training throughput of hm2bp vs snntorch BPTT on the same 784-800-10 LIF network, T = 400, MNIST Poisson input.

    .venv/bin/python benchmarks/bench_train.py [--batches 1,32] [--repeats 3] [--images PATH]

Each measurement runs in its own subprocess (peak RSS = that process's ru_maxrss less the size of the input rasters
it holds), and the two libraries are measured alternately, repeat by repeat, so that the ratio is taken under the
same machine load. One training step = forward + gradient + Adam update of a batch. Input: the first test images of
MNIST, Poisson-encoded per `docs/algorithm.md` §2.1 (p = pixel / (5.5 * 255) per 1-ms step, steps 1 .. T-1,
seeded). snntorch (install with `pip install --no-deps snntorch`) runs `Synaptic` neurons (alpha = 1 - 1/tau_s, beta
= 1 - 1/tau_m, thresholds 20 / 8, reset to zero), a squared count error against the same 35/5 targets, and
torch.optim.Adam; in every repeat it is timed with 1 and with the default number of torch threads and the faster run
is kept. hm2bp runs its CPU numba path with its default `threads` (the CPUs of this process, at most 4: batches of
several 8-sample chunks are spread over them) and torch limited to one thread. Every run starts with one untimed
step."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sample_data import SAMPLE_DATA

REPO = Path(__file__).resolve().parents[1]
MNIST = SAMPLE_DATA / "mnist" / "t10k-images-idx3-ubyte.gz"
STEPS, N_IN, N_HID, N_OUT = 400, 784, 800, 10


def mnist_poisson(path: Path, n: int, steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """First `n` MNIST images as Poisson rasters bool `[n, steps, 784]` (algorithm.md §2.1, seeded) and their labels
    (from the labels file beside the images; random digits if it is absent)."""
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    if int.from_bytes(raw[:4], "big") != 2051:
        raise SystemExit(f"{path}: not an IDX3 image file")
    count = int.from_bytes(raw[4:8], "big")
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(count, 28 * 28)[:n]
    prob = images.astype(np.float64) / (5.5 * 255.0)
    rng = np.random.default_rng(seed)
    spikes = np.empty((len(prob), steps, 28 * 28), np.bool_)
    for a in range(0, len(prob), 16):  # in blocks: a float64 draw of all samples at once would set the peak RSS
        p = prob[a:a + 16, None, :]
        spikes[a:a + 16] = (rng.random((len(p), steps, 28 * 28)) < p) & (p > 1e-5)
    spikes[:, 0] = False
    labels_path = path.with_name("t10k-labels-idx1-ubyte.gz")
    if labels_path.is_file():
        with gzip.open(labels_path, "rb") as fh:
            labels = np.frombuffer(fh.read(), np.uint8, offset=8)[:n].astype(np.int64)
    else:
        labels = rng.integers(0, 10, n)
    return spikes, labels


NET = {
    "steps": STEPS,
    "layers": [
        {"name": "hidden", "size": N_HID, "threshold": 20.0},
        {"name": "output", "size": N_OUT, "threshold": 8.0, "lateral_inhibition": 1.0},
    ],
}


def run_hm2bp(spikes: np.ndarray, labels: np.ndarray, batch: int) -> dict:
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(REPO))
    from hm2bp import Network

    try:
        from hm2bp.train.optim import Adam
    except ImportError:  # pragma: no cover - before the optimiser module exists
        Adam = None
    net = Network.from_config(NET, N_IN)
    opt = Adam(net.weights(), lr=1e-3) if Adam else None
    x, y = torch.from_numpy(spikes), torch.from_numpy(labels)

    def step(k: int) -> None:
        res = net.backward_pass(x[k:k + batch], y[k:k + batch])
        if opt is not None:
            opt.step(res.grads, 1e-3)

    return _time(step, len(labels), batch)


def run_snntorch(spikes: np.ndarray, labels: np.ndarray, batch: int, threads: int) -> dict:
    import snntorch as snn
    import torch
    from torch import nn

    if threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(N_IN, N_HID, bias=False)
            self.fc2 = nn.Linear(N_HID, N_OUT, bias=False)
            self.lif1 = snn.Synaptic(alpha=1 - 1 / 8, beta=1 - 1 / 64, threshold=20.0, reset_mechanism="zero")
            self.lif2 = snn.Synaptic(alpha=1 - 1 / 8, beta=1 - 1 / 64, threshold=8.0, reset_mechanism="zero")

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [T, B, N_in]
            syn1, mem1 = self.lif1.init_synaptic()
            syn2, mem2 = self.lif2.init_synaptic()
            # The input current of all steps as one product, like hm2bp; unbind (not cur1[t]) so that the
            # backward stacks the step gradients once instead of one full-size zero tensor per step.
            cur1 = self.fc1(x).unbind(0)
            count = 0
            for t in range(x.shape[0]):
                spk1, syn1, mem1 = self.lif1(cur1[t], syn1, mem1)
                spk2, syn2, mem2 = self.lif2(self.fc2(spk1), syn2, mem2)
                count = count + spk2
            return count

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.from_numpy(spikes).float().transpose(0, 1).contiguous()  # [T, n, N_in]
    y = torch.from_numpy(labels)

    def step(k: int) -> None:
        target = torch.full((min(batch, len(labels) - k), N_OUT), 5.0)
        target[torch.arange(target.shape[0]), y[k:k + batch]] = 35.0
        counts = net(x[:, k:k + batch])
        loss = ((counts - target) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return _time(step, len(labels), batch)


def _time(step, n: int, batch: int) -> dict:
    step(0)  # warm-up (numba compile / cache load, allocator)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    cpu_start = time.process_time()
    done = 0
    for k in range(0, n - batch + 1, batch):
        step(k)
        done += batch
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"samples_per_s": done / elapsed, "cpu_per_wall": cpu / elapsed, "samples": done,
            "peak_rss_mb": peak / 1024, "rss_growth_mb": (peak - base_rss) / 1024}


def child(args: argparse.Namespace) -> None:
    spikes, labels = mnist_poisson(Path(args.images), args.samples, STEPS)
    if args.lib == "hm2bp":
        out = run_hm2bp(spikes, labels, args.batch)
    else:
        out = run_snntorch(spikes, labels, args.batch, args.threads)
    # the benchmark's own input rasters (more samples for hm2bp than for snntorch) are not the library's memory
    out["peak_rss_mb"] -= spikes.nbytes / 2**20
    print("RESULT " + json.dumps(out))


def measure(lib: str, batch: int, samples: int, images: str, threads: int = 0) -> dict:
    cmd = [sys.executable, __file__, "--child", lib, "--batch", str(batch), "--samples", str(samples),
           "--images", images, "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit(f"{lib} batch {batch} failed:\n{proc.stdout}\n{proc.stderr}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", default=str(MNIST))
    ap.add_argument("--ours-samples", type=int, default=0, help="samples per hm2bp run (default 256 or 8 batches)")
    ap.add_argument("--snn-samples", type=int, default=0, help="samples per snntorch run (default 4 or 1 batch)")
    ap.add_argument("--child", choices=["hm2bp", "snntorch"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.child:
        args.lib = args.child
        child(args)
        return
    if not Path(args.images).is_file():
        raise SystemExit(f"MNIST images not found at {args.images} (pass --images)")
    batches = [int(b) for b in args.batches.split(",")]
    rows = {}
    for rep in range(args.repeats):
        for b in batches:
            ours_n = args.ours_samples or max(256, 8 * b)  # >= 1 s of steps: short runs are noisy
            snn_n = args.snn_samples or max(4, b)
            ours = measure("hm2bp", b, ours_n + b, args.images)
            # snntorch: the faster of 1 thread and torch's default, measured in every repeat (under contention
            # torch's multi-threaded kernels can slow down many times)
            snn = max((measure("snntorch", b, snn_n + b, args.images, threads=t) for t in (1, 0)),
                      key=lambda r: r["samples_per_s"])
            rows.setdefault(b, []).append((ours, snn))
            print(f"repeat {rep} batch {b:3d}: hm2bp {ours['samples_per_s']:8.1f}/s (cpu/wall "
                  f"{ours['cpu_per_wall']:.2f})  snntorch {snn['samples_per_s']:7.1f}/s (cpu/wall "
                  f"{snn['cpu_per_wall']:.2f})  ratio {ours['samples_per_s'] / snn['samples_per_s']:6.1f}x",
                  flush=True)
    print("\nmedians over repeats (784-800-10, T = 400, MNIST Poisson, CPU)")
    print(f"{'batch':>5} | {'hm2bp samples/s':>15} | {'snntorch samples/s':>18} | {'ratio':>6} | "
          f"{'hm2bp peak RSS MB':>17} | {'snntorch peak RSS MB':>20}")
    for b, pairs in rows.items():
        ours_r = statistics.median(p[0]["samples_per_s"] for p in pairs)
        snn_r = statistics.median(p[1]["samples_per_s"] for p in pairs)
        ratio = statistics.median(p[0]["samples_per_s"] / p[1]["samples_per_s"] for p in pairs)
        ours_m = statistics.median(p[0]["peak_rss_mb"] for p in pairs)
        snn_m = statistics.median(p[1]["peak_rss_mb"] for p in pairs)
        print(f"{b:>5} | {ours_r:>15.1f} | {snn_r:>18.1f} | {ratio:>5.1f}x | {ours_m:>17.0f} | {snn_m:>20.0f}")


if __name__ == "__main__":
    main()
