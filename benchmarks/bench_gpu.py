"""The CUDA trainer: samples/s, peak device memory and kernel launches per training step, per backend.

    .venv/bin/python benchmarks/bench_gpu.py [--batches 64,256,1024] [--cnn-batches 16,64] [--backends triton,torch]
    .venv/bin/python benchmarks/bench_gpu.py --count-only --count-steps 100,400   # CPU: launch counts, no timing

Networks: the paper's MLP 784-800-10 (lateral inhibition on the output) and the paper's spiking CNN
(28x28-15C5-P2-40C5-P2-300-10), T = 400, real MNIST t10k digits Poisson-encoded (random rasters of the same density
when the sample data is absent). One step = forward + HM2-BP gradients + Adam update of a batch, exactly what
`hm2bp fit` does per batch (`Network.backward_pass` with the trainer's flags, `Adam.step`). Every measurement is
preceded by two untimed steps (Triton compiles its kernels in the first one); timings are medians of `--repeats`
runs of `--timed` steps, between `torch.cuda.synchronize()` calls. The numba CPU path is measured beside it.

Kernel launches per step are counted with the torch profiler: on a GPU, the CUDA kernels it records; on CPU (where
Triton kernels run under the interpreter), the aten operations that would each launch a kernel (leaf operations,
views and allocations excluded) plus the Triton launches. `--count-only` does just that, at several T, to show that
the count does not grow with T.

Without a GPU the timing part reports a model of the step time on one H200 built from those counts and from the
float64 FLOPs and memory traffic of the step (`model_step`): the assumptions are printed with it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from sample_data import SAMPLE_DATA

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before Triton is imported: its kernels then run on CPU tensors

from hm2bp import Network, load_preset  # noqa: E402
from hm2bp.optim import Adam  # noqa: E402

MNIST = SAMPLE_DATA / "mnist" / "t10k-images-idx3-ubyte.gz"
MLP = {"steps": 400, "layers": [{"name": "hidden", "size": 800, "threshold": 20.0},
                                {"name": "output", "size": 10, "threshold": 8.0, "lateral_inhibition": 1.0}]}
# aten operations that launch no kernel (views, metadata, allocation)
_NO_KERNEL = {"aten::view", "aten::reshape", "aten::_reshape_alias", "aten::as_strided", "aten::t", "aten::transpose",
              "aten::permute", "aten::expand", "aten::unsqueeze", "aten::squeeze", "aten::select", "aten::slice",
              "aten::alias", "aten::detach", "aten::detach_", "aten::empty", "aten::empty_strided", "aten::empty_like",
              "aten::resize_", "aten::lift_fresh", "aten::result_type", "aten::_unsafe_view", "aten::numpy_T",
              "aten::unbind", "aten::split", "aten::chunk", "aten::narrow", "aten::contiguous", "aten::view_as",
              "aten::expand_as", "aten::unfold", "aten::flatten", "aten::is_nonzero", "aten::set_",
              "aten::pin_memory", "aten::_pin_memory", "aten::is_pinned"}


def mnist_input(batch: int, steps: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Poisson rasters bool [batch, steps, 784] of the first MNIST test digits (algorithm.md §2.1) and labels."""
    rng = np.random.default_rng(seed)
    if MNIST.is_file():
        with gzip.open(MNIST, "rb") as fh:
            raw = fh.read()
        images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784)
        images = images[np.arange(batch) % len(images)]
        with gzip.open(MNIST.with_name("t10k-labels-idx1-ubyte.gz"), "rb") as fh:
            labels = np.frombuffer(fh.read(), np.uint8, offset=8)[np.arange(batch) % len(images)].astype(np.int64)
        prob = images.astype(np.float64)[:, None, :] / (5.5 * 255.0)
        spikes = rng.random((batch, steps, 784)) < prob
    else:
        spikes = rng.random((batch, steps, 784)) < 0.025
        labels = rng.integers(0, 10, batch)
    spikes[:, 0] = False
    return torch.from_numpy(spikes), torch.from_numpy(labels)


def build(model: str, backend: str, device: str, steps: int) -> tuple[Network, Adam]:
    cfg = dict(MLP, steps=steps) if model == "mlp" else {**load_preset("mnist-cnn"), "steps": steps}
    net = Network.from_config(cfg, 784, (1, 28, 28), backend=backend).to(device)
    return net, Adam(net.weights(), 1e-3, backend=net.kernels.optimizer_backend)


def train_step(net: Network, opt: Adam, x: torch.Tensor, y: torch.Tensor) -> None:
    res = net.backward_pass(x, y, validate=False, check_finite=net.device.type == "cpu")
    opt.step(res.grads, 1e-3)


def count_launches(net: Network, opt: Adam, x: torch.Tensor, y: torch.Tensor) -> dict[str, int]:
    """Kernel launches of one step (see the module docstring for how they are counted)."""
    from torch.profiler import ProfilerActivity, profile

    from hm2bp.kernels.triton.launch import LAUNCHES, reset_launch_counts

    train_step(net, opt, x, y)  # warm-up (compilation, caches)
    reset_launch_counts()
    on_gpu = net.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as prof:
        train_step(net, opt, x, y)
        if on_gpu:
            torch.cuda.synchronize()
    triton = sum(LAUNCHES.values())
    if on_gpu:
        kernels = sum(1 for e in prof.events() if e.device_type.name == "CUDA")
        return {"kernels": kernels, "triton": triton}
    leaves = [e for e in prof.events() if not e.cpu_children and e.name.startswith("aten::")]
    aten = sum(1 for e in leaves if e.name not in _NO_KERNEL)
    return {"kernels": aten + triton, "aten": aten, "triton": triton}


def time_steps(net: Network, opt: Adam, x: torch.Tensor, y: torch.Tensor, timed: int, repeats: int) -> dict:
    dev = net.device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(2):
        train_step(net, opt, x, y)
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(timed):
            train_step(net, opt, x, y)
        sync()
        times.append((time.perf_counter() - t0) / timed)
    step = statistics.median(times)
    out = {"step_ms": 1e3 * step, "samples_per_s": x.shape[0] / step}
    if dev.type == "cuda":
        out["peak_mem_gb"] = torch.cuda.max_memory_allocated(dev) / 2**30
    return out


# ---------------------------------------------------------------------------------------------------- the model
H200 = {"fp64_flops": 50e12,  # cuBLAS DGEMM sustained (67 TF peak on the tensor cores)
        "hbm_bytes": 4.0e12,  # sustained of 4.8 TB/s
        "launch_s": 4e-6,  # per kernel when the queue is kept full (no host synchronisation in the step)
        "scan_step_s": 1.2e-6,  # one step of a time-loop kernel (a dependent load + ~50 instructions)
        "lanes": 132 * 2048}  # resident threads


def model_step(batch: int, steps: int = 400, n_in: int = 784, n_hid: int = 800, n_out: int = 10,
               launches: int = 100, dense_in: float = 0.025) -> dict:
    """Modelled time of one MLP step on an H200 (see `H200` for the assumptions): launches + float64 products +
    memory traffic + the sequential time loops of the scan kernels (waves of programs of 128 lanes)."""
    bt = batch * steps
    gemm = 2 * bt * n_in * n_hid * 2 + 2 * bt * n_hid * n_out * 2  # forward currents + weight gradients
    bytes_ = (bt * n_in * (1 + 2 * 16)  # input raster; its float64 copy written and read, forward and backward
              + bt * n_hid * (4 * 3 + 2 * 5 + 4 * 2 + 16 * 2)  # current, codes, K, float64 product operands
              + bt * n_out * 40)
    waves_hid = max(1.0, batch * -(-n_hid // 128) * 128 / H200["lanes"])
    scans = steps * H200["scan_step_s"] * (2 * waves_hid + 2 + 1)  # LIF + S-PSP of both layers, effect sum
    t = launches * H200["launch_s"] * 0.25 + gemm / H200["fp64_flops"] + bytes_ / H200["hbm_bytes"] + scans
    return {"step_ms": 1e3 * t, "samples_per_s": batch / t, "fp64_gflop": gemm / 1e9, "traffic_gb": bytes_ / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", default="64,256,1024")
    ap.add_argument("--cnn-batches", default="16,64")
    ap.add_argument("--backends", default="triton,torch")
    ap.add_argument("--steps", type=int, default=400, help="time steps per sample (T)")
    ap.add_argument("--timed", type=int, default=5, help="steps per timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cpu-batch", type=int, default=32, help="batch of the numba CPU figure beside (0: none)")
    ap.add_argument("--count-only", action="store_true", help="only count launches (works on CPU)")
    ap.add_argument("--count-steps", default="100,400", help="T values of --count-only")
    ap.add_argument("--count-batch", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None, help="write the report as JSON")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report: dict = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu (Triton interpreter)",
                    "torch": torch.__version__, "launches": [], "timings": [], "model": []}
    print(f"device: {report['device']}, torch {torch.__version__}", flush=True)

    counts = [int(v) for v in args.count_steps.split(",")] if args.count_only else [args.steps]
    for model in ("mlp", "cnn"):
        for steps in counts:
            x, y = mnist_input(args.count_batch, steps)
            for backend in args.backends.split(","):
                if model == "cnn" and backend == "torch" and device == "cpu" and steps > 100:
                    continue  # the reference's Python time loops over 40 conv maps: minutes on CPU, nothing to learn
                net, opt = build(model, backend, device, steps)
                c = count_launches(net, opt, x.to(device), y.to(device))
                row = {"model": model, "backend": backend, "steps": steps, "batch": args.count_batch, **c}
                report["launches"].append(row)
                print(f"launches per step: {model} {backend:6s} T {steps:4d}: {c}", flush=True)
    if not args.count_only:
        for model, batches in (("mlp", args.batches), ("cnn", args.cnn_batches)):
            for batch in (int(b) for b in batches.split(",") if b):
                x, y = mnist_input(batch, args.steps)
                for backend in args.backends.split(","):
                    if device == "cpu":
                        break  # the interpreter's timings say nothing about a GPU: see the model below
                    net, opt = build(model, backend, device, args.steps)
                    try:
                        r = time_steps(net, opt, x.to(device), y.to(device), args.timed, args.repeats)
                    except torch.cuda.OutOfMemoryError:
                        r = {"error": "out of memory"}
                        torch.cuda.empty_cache()
                    row = {"model": model, "backend": backend, "batch": batch, **r}
                    report["timings"].append(row)
                    print(f"{model} {backend:6s} batch {batch:5d}: {r}", flush=True)
        if args.cpu_batch:
            x, y = mnist_input(args.cpu_batch, args.steps)
            net, opt = build("mlp", "numba", "cpu", args.steps)
            r = time_steps(net, opt, x, y, 2, args.repeats)
            report["timings"].append({"model": "mlp", "backend": "numba (CPU)", "batch": args.cpu_batch, **r})
            print(f"mlp numba CPU batch {args.cpu_batch}: {r}", flush=True)
    launches = max([r["kernels"] for r in report["launches"] if r["model"] == "mlp" and r["backend"] == "triton"]
                   or [100])
    for batch in (int(b) for b in args.batches.split(",")):
        m = model_step(batch, args.steps, launches=launches)
        report["model"].append({"batch": batch, **m})
        print(f"model (H200, {launches} launches): mlp batch {batch}: {m}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
