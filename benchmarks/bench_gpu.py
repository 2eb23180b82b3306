"""The CUDA trainer: samples/s, peak device memory and kernel launches per training step, per backend.

    .venv/bin/python benchmarks/bench_gpu.py [--batches 64,256,1024] [--cnn-batches 16,64] [--backends triton,torch]
    .venv/bin/python benchmarks/bench_gpu.py --count-only --count-steps 100,400   # CPU: launch counts, no timing

Networks: the paper's MLP 784-800-10 (lateral inhibition on the output) and the paper's spiking CNN
(28x28-15C5-P2-40C5-P2-300-10), T = 400, real MNIST t10k digits Poisson-encoded (random rasters of the same density
when the sample data is absent). One step = forward + HM2-BP gradients + Adam update of a batch, exactly what
`hm2bp fit` does per batch (`Network.backward_pass` with the trainer's flags, `Adam.step`). Every measurement is
preceded by two untimed steps (Triton compiles its kernels in the first one); timings are medians of `--repeats`
runs of `--timed` steps, between `torch.cuda.synchronize()` calls. The numba CPU path is measured beside it.

Kernel launches per step are counted: on a GPU, the CUDA kernels the torch profiler records; on CPU (where Triton
kernels run under the interpreter), the aten operations the step dispatches that would each launch a kernel (views,
allocations and value reads excluded; the triton and torch kernel sets run the same torch operations on CPU
tensors as on a GPU) plus the Triton launches. Host synchronisations (values read back) are counted too.
`--count-only` does just that, at several T, to show that the count does not grow with T (for T >= 3 * 35 = 105
the synthetic train of a silent label respects the refractory period and the fused read-out runs; below, that one
layer takes the reference read-out).

Without a GPU the timing part reports a model of the step time on one H200 built from those counts and from the
float64 FLOPs and memory traffic of the step (`model_step` for the MLP, `model_cnn_step` layer by layer for the
CNN): the assumptions are in `H200`.
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

from gpu_model import H200, NO_KERNEL, as_dict, count_step, model_time, summary  # noqa: E402

from hm2bp import Network, load_preset  # noqa: E402
from hm2bp.train.optim import Adam  # noqa: E402

MNIST = SAMPLE_DATA / "mnist" / "t10k-images-idx3-ubyte.gz"
MLP = {"steps": 400, "layers": [{"name": "hidden", "size": 800, "threshold": 20.0},
                                {"name": "output", "size": 10, "threshold": 8.0, "lateral_inhibition": 1.0}]}
# aten operations that read a value back to the host (a synchronisation on a GPU)
_SYNCS = {"aten::_local_scalar_dense", "aten::item", "aten::nonzero", "aten::is_nonzero"}


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


def _tiny(cfg: dict) -> dict:
    """The same network with a few neurons per layer (`--tiny`: a dry run of this script on CPU)."""
    small = {"conv": ("channels", 2), "dense": ("size", 8)}
    layers = [dict(layer) for layer in cfg["layers"]]
    for layer in layers[:-1]:
        key, value = small.get(layer.get("type", "dense"), (None, None))
        if key:
            layer[key] = value
    return {**cfg, "layers": layers}


def build(model: str, backend: str, device: str, steps: int, tiny: bool = False) -> tuple[Network, Adam]:
    cfg = dict(MLP, steps=steps) if model == "mlp" else {**load_preset("mnist-cnn"), "steps": steps}
    cfg = _tiny(cfg) if tiny else cfg
    net = Network.from_config(cfg, 784, (1, 28, 28), backend=backend).to(device)
    return net, Adam(net.weights(), 1e-3, kernels=net.kernels)


def train_step(net: Network, opt: Adam, x: torch.Tensor, y: torch.Tensor) -> None:
    # as the trainer calls it: no label check, and on the triton path the finiteness check deferred
    res = net.backward_pass(x, y, validate=False, check_finite=net.backend != "triton")
    opt.step(res.grads, 1e-3)


class _AtenCounter:
    """Counts the aten operations a step dispatches that would each launch a kernel on a GPU (views, allocations
    and value reads excluded), and the host synchronisations; operations Triton's interpreter issues to run its
    kernels on CPU tensors are not the step's and are left out."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                counter.record(f"aten::{func.overloadpacket.__name__}")
                return func(*args, **(kwargs or {}))

        self.mode = Mode()
        self.kernels = self.syncs = 0
        self.inside_triton = False

    def record(self, name: str) -> None:
        if self.inside_triton:
            return
        if name in _SYNCS:
            self.syncs += 1
        if name not in NO_KERNEL:
            self.kernels += 1


def count_launches(net: Network, opt: Adam, x: torch.Tensor, y: torch.Tensor) -> dict[str, int]:
    """Kernel launches of one step (see the module docstring for how they are counted)."""
    from hm2bp.kernels.triton import launch as launch_mod

    train_step(net, opt, x, y)  # warm-up (compilation, caches)
    launch_mod.reset_launch_counts()
    if net.device.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            train_step(net, opt, x, y)
            torch.cuda.synchronize()
        kernels = sum(1 for e in prof.events() if e.device_type.name == "CUDA")
        syncs = sum(1 for e in prof.events() if e.name in _SYNCS)
        return {"kernels": kernels, "triton": sum(launch_mod.LAUNCHES.values()), "host_syncs": syncs}
    counter = _AtenCounter()
    plain_launch = launch_mod.launch

    def counted_launch(*args, **kw):
        counter.inside_triton = True
        try:
            plain_launch(*args, **kw)
        finally:
            counter.inside_triton = False

    launch_mod.launch = counted_launch
    patched = [m for m in sys.modules.values() if getattr(m, "launch", None) is plain_launch]
    for m in patched:
        m.launch = counted_launch
    try:
        with counter.mode:
            train_step(net, opt, x, y)
    finally:
        launch_mod.launch = plain_launch
        for m in patched:
            m.launch = plain_launch
    triton = sum(launch_mod.LAUNCHES.values())
    return {"kernels": counter.kernels + triton, "aten": counter.kernels, "triton": triton,
            "host_syncs": counter.syncs}


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


def model_rows(model: str, batches: str, steps: int, tiny: bool) -> list[dict]:
    """The modelled H200 step at each batch of `batches` (`gpu_model`): counted on the real step, printed."""
    rows = []
    for batch in (int(b) for b in batches.split(",") if b):
        x, y = mnist_input(batch, steps)
        ops, density = count_step(lambda backend, device: build(model, backend, device, steps, tiny), train_step, x, y)
        print(summary(model, batch, ops, density), flush=True)
        rows.append({"model": model, "batch": batch, **model_time(ops, batch), "density": density,
                     "ops": as_dict(ops)})
    return rows


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
    ap.add_argument("--model-only", action="store_true", help="only the modelled H200 step (CPU, fast)")
    ap.add_argument("--count-steps", default="200,400", help="T values of --count-only (MLP)")
    ap.add_argument("--cnn-count-steps", default="20,40",
                    help="T values of --count-only for the CNN (its conv kernels are slow under the interpreter)")
    ap.add_argument("--count-batch", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None, help="write the report as JSON")
    ap.add_argument("--tiny", action="store_true",
                    help="networks of the same structure with a few neurons per layer (a dry run on CPU)")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report: dict = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu (Triton interpreter)",
                    "torch": torch.__version__, "launches": [], "timings": [], "model": []}
    print(f"device: {report['device']}, torch {torch.__version__}", flush=True)

    for model in () if args.model_only else ("mlp", "cnn"):
        counts = [int(v) for v in (args.count_steps if model == "mlp" else args.cnn_count_steps).split(",")] \
            if args.count_only else [args.steps]
        for steps in counts:
            x, y = mnist_input(args.count_batch, steps)
            for backend in args.backends.split(","):
                net, opt = build(model, backend, device, steps, args.tiny)
                c = count_launches(net, opt, x.to(device), y.to(device))
                row = {"model": model, "backend": backend, "steps": steps, "batch": args.count_batch, **c}
                report["launches"].append(row)
                print(f"launches per step: {model} {backend:6s} T {steps:4d}: {c}", flush=True)
    if not args.count_only and not args.model_only:
        for model, batches in (("mlp", args.batches), ("cnn", args.cnn_batches)):
            for batch in (int(b) for b in batches.split(",") if b):
                x, y = mnist_input(batch, args.steps)
                for backend in args.backends.split(","):
                    if device == "cpu":
                        break  # the interpreter's timings say nothing about a GPU: see the model below
                    net, opt = build(model, backend, device, args.steps, args.tiny)
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
            net, opt = build("mlp", "numba", "cpu", args.steps, args.tiny)
            r = time_steps(net, opt, x, y, 2, args.repeats)
            report["timings"].append({"model": "mlp", "backend": "numba (CPU)", "batch": args.cpu_batch, **r})
            print(f"mlp numba CPU batch {args.cpu_batch}: {r}", flush=True)
    report["figures"] = H200
    if args.count_only:
        return _write(report, args.out)
    report["model"] = model_rows("mlp", args.batches, args.steps, args.tiny)
    report["model"] += model_rows("cnn", args.cnn_batches, args.steps, args.tiny)
    _write(report, args.out)


def _write(report: dict, out: Path | None) -> None:
    if out:
        out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
