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

from hm2bp import Network, load_preset  # noqa: E402
from hm2bp.train.optim import Adam  # noqa: E402

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
              "aten::pin_memory", "aten::_pin_memory", "aten::is_pinned", "aten::to", "aten::resolve_conj",
              "aten::resolve_neg", "aten::scalar_tensor", "aten::_local_scalar_dense", "aten::item"}
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
        if name not in _NO_KERNEL:
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


# ---------------------------------------------------------------------------------------------------- the model
H200 = {"fp64_flops": 50e12,  # cuBLAS DGEMM sustained (67 TF peak on the tensor cores)
        "hbm_bytes": 4.0e12,  # sustained of 4.8 TB/s
        "l2_bytes": 10e12,  # gathers of W^T rows that stay in the 60 MB L2
        "launch_s": 4e-6,  # per kernel, of which a quarter shows when the queue is kept full (no host sync)
        "scan_step_s": 1.2e-6,  # one step of a time-loop kernel (a dependent load + ~50 instructions)
        "lanes": 132 * 2048,  # resident threads
        # CNN only: cuDNN float64 convolutions have no tensor-core path (~30 % of the 34 TF CUDA-core peak), and
        # the Triton effect kernels are float64 FMAs on the CUDA cores (~45 %): the two least certain figures
        "fp64_conv_flops": 10e12,
        "fp64_simt_flops": 15e12}


def model_step(batch: int, steps: int = 400, n_in: int = 784, n_hid: int = 800, n_out: int = 10,
               launches: int = 100, dense_in: float = 0.025) -> dict:
    """Modelled time of one MLP step of the triton set on an H200 (`H200` holds the assumptions): kernel launches +
    float64 products (weight gradients of both layers, the output layer's current) + the gathers of the sparse
    input current + memory traffic of the `[B, T, n]` tensors + the sequential time loops of the five scan kernels
    (LIF and S-PSP of both layers, the effect-ratio sum), in waves of resident threads."""
    bt = batch * steps
    gemm = 2 * bt * n_in * n_hid + 2 * bt * n_hid * n_out * 2  # hidden weight gradient; output current + gradient
    gather = bt * n_in * dense_in * n_hid * 4  # bytes of W^T rows summed by the sparse current kernel
    bytes_ = (bt * n_in * (1 + 1 + 16)  # input raster written and compacted; its float64 copy for the gradient
              + bt * n_hid * (12 + 10 + 8 + 32)  # current, codes, K, float64 product operands
              + bt * n_out * 40)
    waves_hid = max(1.0, batch * -(-n_hid // 128) * 128 / H200["lanes"])
    scans = steps * H200["scan_step_s"] * (2 * waves_hid + 3)
    t = (launches * H200["launch_s"] * 0.25 + gemm / H200["fp64_flops"] + gather / H200["l2_bytes"]
         + bytes_ / H200["hbm_bytes"] + scans)
    return {"step_ms": 1e3 * t, "samples_per_s": batch / t, "fp64_gflop": gemm / 1e9, "traffic_gb": bytes_ / 1e9,
            "scan_ms": 1e3 * scans}


def model_cnn_step(net: Network, batch: int, steps: int, launches: int) -> dict:
    """Modelled time of one step of the paper's CNN on the triton set on an H200, layer by layer from `net`'s
    shapes: float64 convolutions (forward current and weight gradient, cuDNN), float64 products of the dense
    layers (cuBLAS), the Triton effect kernels (T x footprint float64 FMAs per pre neuron), two time loops per layer
    (LIF and S-PSP read-out) in waves of resident threads, `[B, T, n]` memory traffic and the launches."""
    bt = batch * steps
    conv = gemm = simt = bytes_ = 0.0
    scans = 0.0
    below = None
    for name in net.layer_names:
        layer = net.layer(name)
        if layer.kind == "conv":
            c_out, c_in, ks, _ = layer.weight_shape
            conv += 2 * 2 * bt * layer.n_post * c_in * ks * ks  # forward current and weight gradient
            if below is not None:  # the pre-synaptic effect, unless the layer below is the input
                simt += 2 * bt * layer.n_pre * c_out * ks * ks
        elif layer.kind == "dense":
            gemm += 2 * 2 * bt * layer.n_pre * layer.n_post
            if below is not None:
                simt += 2 * bt * layer.n_pre * layer.n_post
        else:  # pool: fixed weights, an effect sum over its window
            simt += 2 * bt * layer.n_pre
        bytes_ += bt * layer.n_post * (4 + 2 + 4 + 16)  # current, codes, K, float64 operands of the gradient
        waves = max(1.0, batch * -(-layer.n_post // 128) * 128 / H200["lanes"])
        scans += 2 * steps * H200["scan_step_s"] * waves
        below = layer
    bytes_ += bt * net.layer(net.layer_names[0]).n_pre * (1 + 8)  # input raster and its float64 copy
    t = (launches * H200["launch_s"] * 0.25 + conv / H200["fp64_conv_flops"] + gemm / H200["fp64_flops"]
         + simt / H200["fp64_simt_flops"] + bytes_ / H200["hbm_bytes"] + scans)
    return {"step_ms": 1e3 * t, "samples_per_s": batch / t, "fp64_gflop": (conv + gemm + simt) / 1e9,
            "conv_ms": 1e3 * conv / H200["fp64_conv_flops"], "effect_ms": 1e3 * simt / H200["fp64_simt_flops"],
            "traffic_gb": bytes_ / 1e9, "scan_ms": 1e3 * scans}


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

    for model in ("mlp", "cnn"):
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
    if not args.count_only:
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
    launches = max([r["kernels"] for r in report["launches"] if r["model"] == "mlp" and r["backend"] == "triton"]
                   or [100])
    for batch in (int(b) for b in args.batches.split(",")):
        m = model_step(batch, args.steps, launches=launches)
        report["model"].append({"batch": batch, **m})
        print(f"model (H200, {launches} launches): mlp batch {batch}: {m}", flush=True)
    cnn_launches = max([r["kernels"] for r in report["launches"] if r["model"] == "cnn" and r["backend"] == "triton"]
                       or [230])
    cnn, _ = build("cnn", "torch", "cpu", args.steps, args.tiny)
    for batch in (int(b) for b in args.cnn_batches.split(",")):
        m = model_cnn_step(cnn, batch, args.steps, cnn_launches)
        report["model"].append({"model": "cnn", "batch": batch, **m})
        print(f"model (H200, {cnn_launches} launches): cnn batch {batch}: {m}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
