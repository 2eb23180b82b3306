"""A modelled time of one training step of the triton kernel set on an H200, from the step's own operation and byte
counts (imported by `bench_gpu.py`).

`count_step` records one real training step (what `hm2bp fit` runs per batch: forward, HM2-BP backward, Adam) of
the triton set on shape-only tensors (torch's `meta` device, nothing runs): every Triton launch with its cost from
`hm2bp.kernels.triton.cost` (derived from its arguments, grid and access pattern; for the kernels whose work follows
the spikes, from the spikes of a forward pass of the same network on the same input by the numba set, which gives
the same spikes bit for bit), and every torch operation with the FLOPs of torch's own counter
(`torch.utils.flop_counter`: products and convolutions; one operation per element for the rest) and the bytes of
the tensors it reads and writes. `model_time` turns each record into a time on the `H200` figures:

    t(op) = max(f64 / float64 rate, ops32 / 32-bit rate, dram / HBM bandwidth, l2 / L2 bandwidth) + launch gap

summed over the step; the host's launch cost per operation gives a second bound (the step is the larger). What is
measured: the operations, their arguments, the spikes, hence the counts. What is assumed: the figures of `H200`
(and the ranges of `SENSITIVITY`), that each operation reaches its roofline, and that the step's operations do not
overlap.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

#: H200 SXM (141 GB HBM3e). Published: the float64 and float32 vector peaks, the float64 tensor-core peak (cuBLAS
#: DGEMM uses it), HBM3e bandwidth. Assumed: the L2 bandwidth (not published; measured on H100 at 5.5-7 TB/s), cuDNN
#: float64 convolutions at the vector peak (no tensor-core path assumed), the launch costs.
H200 = {
    "fp64_flops": 34e12,  # vector peak (a multiply-add = 2 FLOP)
    "fp64_gemm_flops": 67e12,  # tensor-core peak, cuBLAS DGEMM
    "fp32_flops": 67e12,  # vector peak; 32-bit integer instructions assumed at the same issue rate
    "hbm_bytes": 4.8e12,  # HBM3e
    "l2_bytes": 7e12,  # assumed
    "launch_gap_s": 2e-6,  # device time between two dependent kernels with the queue full (no host sync)
    "host_triton_s": 10e-6,  # host time of one Triton launch (Python, argument packing)
    "host_torch_s": 5e-6,  # host time of one torch operation
    "loop_step_s": 0.7e-6,  # latency of one iteration of a kernel's time loop (a dependent global load + its use)
    "lanes": 132 * 2048,  # resident threads (132 SMs x 2048)
}
#: Ranges for the sensitivity rows: every rate scaled by `slow` (pessimistic) and `fast` (optimistic).
SENSITIVITY = {"slow": 0.5, "fast": 1.0}
# aten operations that launch no kernel (views, metadata, allocation)
NO_KERNEL = {"aten::view", "aten::reshape", "aten::_reshape_alias", "aten::as_strided", "aten::t", "aten::transpose",
             "aten::permute", "aten::expand", "aten::unsqueeze", "aten::squeeze", "aten::select", "aten::slice",
             "aten::alias", "aten::detach", "aten::detach_", "aten::empty", "aten::empty_strided", "aten::empty_like",
             "aten::resize_", "aten::lift_fresh", "aten::result_type", "aten::_unsafe_view", "aten::numpy_T",
             "aten::unbind", "aten::split", "aten::chunk", "aten::narrow", "aten::contiguous", "aten::view_as",
             "aten::expand_as", "aten::unfold", "aten::flatten", "aten::is_nonzero", "aten::set_",
             "aten::pin_memory", "aten::_pin_memory", "aten::is_pinned", "aten::to", "aten::resolve_conj",
             "aten::resolve_neg", "aten::scalar_tensor", "aten::_local_scalar_dense", "aten::item"}
GEMMS = {"mm", "addmm", "bmm", "addmm_", "baddbmm", "baddbmm_"}


@dataclass
class Op:
    """One operation of the step: `kind` "triton" or "torch", its name, the layer whose call launched it, and its
    counts (float64 / 32-bit lane instructions, DRAM and L2 bytes; the dependent loops of a Triton kernel:
    `hm2bp.kernels.triton.cost.Cost`)."""

    kind: str
    name: str
    layer: str
    f64: float = 0.0
    ops32: float = 0.0
    dram: float = 0.0
    l2: float = 0.0
    gemm_f64: float = 0.0  # float64 instructions of cuBLAS products (tensor-core rate)
    conv_f64: float = 0.0  # float64 instructions of cuDNN convolutions
    loop: int = 0
    iters: float = 0.0
    threads: int = 128


def calling_layer(depth: int = 3) -> str:
    """The name of the layer whose kernel-set call is on the stack (the nearest frame with a `layer` local), or
    "step" (the optimiser, the network's own glue)."""
    f = sys._getframe(depth)
    while f is not None:
        layer = f.f_locals.get("layer")
        spec = getattr(layer, "spec", None)
        if spec is not None and hasattr(spec, "name"):
            return spec.name
        f = f.f_back
    return "step"


class TorchCounter(TorchDispatchMode):
    """Records every aten operation that launches a kernel: FLOPs (torch's counter), bytes read and written."""

    def __init__(self, ops: list[Op]) -> None:
        super().__init__()
        self.ops = ops

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = f"aten::{func.overloadpacket.__name__}"
        if name in NO_KERNEL:
            return out
        tensors = {id(t): t for t in _tensors((args, kwargs))}
        outs = {id(t): t for t in _tensors(out)}
        moved = sum(t.numel() * t.element_size() for t in tensors.values())
        moved += sum(t.numel() * t.element_size() for k, t in outs.items() if k not in tensors)
        op = Op("torch", name.removeprefix("aten::"), calling_layer(), dram=float(moved))
        dtype = next(iter(outs.values())).dtype if outs else torch.float32
        packet = func.overloadpacket
        if packet not in flop_registry and op.name.endswith("_"):  # an in-place product counts as its namesake
            packet = getattr(torch.ops.aten, op.name[:-1], packet)
        if packet in flop_registry:
            flops = float(flop_registry[packet](*args, **kwargs, out_val=out))
            if op.name in GEMMS and dtype == torch.float64:
                op.gemm_f64 = flops / 2
            elif dtype == torch.float64:
                op.conv_f64 = flops / 2
            else:
                op.ops32 = flops / 2
        else:
            work = float(max([t.numel() for t in outs.values()] + [t.numel() for t in tensors.values()] + [0]))
            if dtype == torch.float64:
                op.f64 = work
            else:
                op.ops32 = work
        self.ops.append(op)
        return out


def _tensors(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, list | tuple):
        return [t for x in tree for t in _tensors(x)]
    if isinstance(tree, dict):
        return [t for x in tree.values() for t in _tensors(x)]
    return []


def count_step(build, train_step, x: torch.Tensor, y: torch.Tensor) -> tuple[list[Op], dict[str, float]]:
    """The operations of one training step of the triton set (module docstring) and the spike densities of every
    layer. `build(backend, device)` -> (network, optimiser), the same network for every backend."""
    from hm2bp.kernels.triton.cost import launch_cost
    from hm2bp.kernels.triton.launch import recording

    net_cpu, _ = build("numba", "cpu")
    with torch.no_grad():
        runs = net_cpu.forward(x)
    rasters = {x.shape[2]: x.numpy()}
    for spikes in runs.values():
        if spikes.shape[2] in rasters:
            raise ValueError(f"two layers of {spikes.shape[2]} units: the cost model tells layers apart by size")
        rasters[spikes.shape[2]] = spikes.numpy()
    density = {"input": float(x.float().mean())} | {k: float(v.float().mean()) for k, v in runs.items()}
    net, opt = build("triton", "meta")
    ops: list[Op] = []

    def record(kernel, grid, args, meta) -> None:
        c = launch_cost(kernel, grid, args, meta, rasters.__getitem__)
        ops.append(Op("triton", kernel.fn.__name__, calling_layer(), c.f64, c.ops32, c.dram, c.l2, loop=c.loop,
                      iters=c.iters, threads=c.threads))

    # a first step allocates the set's constant tables; the second is the one counted
    train_step(net, opt, x.to("meta"), y.to("meta"))
    with recording(record), TorchCounter(ops):
        train_step(net, opt, x.to("meta"), y.to("meta"))
    return ops, density


def op_time(op: Op, fig: dict[str, float], scale: float = 1.0, latency: bool = False) -> float:
    """Modelled device seconds of `op` (module docstring); rates times `scale`; `latency`: no less than
    `loop_step_s` per iteration of its dependent loops, for the longest program or for all programs spread over
    the resident threads, whichever is longer."""
    t = max(op.f64 * 2 / (fig["fp64_flops"] * scale), op.gemm_f64 * 2 / (fig["fp64_gemm_flops"] * scale),
            op.conv_f64 * 2 / (fig["fp64_flops"] * scale), op.ops32 * 2 / (fig["fp32_flops"] * scale),
            op.dram / (fig["hbm_bytes"] * scale), op.l2 / (fig["l2_bytes"] * scale))
    if latency and op.loop:
        t = max(t, fig["loop_step_s"] * max(op.loop, op.iters * op.threads / fig["lanes"]))
    return t + fig["launch_gap_s"] / scale


def model_time(ops: list[Op], batch: int, fig: dict[str, float] = H200) -> dict:
    """The modelled step: device time (sum over operations), host time (launch costs), samples/s at the larger,
    and the same with every rate halved and with the time loops' latency floor (`SENSITIVITY`)."""
    host = sum(fig["host_triton_s"] if op.kind == "triton" else fig["host_torch_s"] for op in ops)
    rows = {}
    for label, scale, latency in (("model", 1.0, False), ("rates x0.5", SENSITIVITY["slow"], False),
                                  ("+ loop latency", 1.0, True)):
        device = sum(op_time(op, fig, scale, latency) for op in ops)
        step = max(device, host)
        rows[label] = {"step_ms": 1e3 * step, "device_ms": 1e3 * device, "samples_per_s": batch / step}
    totals = {k: sum(getattr(op, k) for op in ops) for k in ("f64", "gemm_f64", "conv_f64", "ops32", "dram", "l2")}
    return {"launches": len(ops), "host_ms": 1e3 * host, **rows,
            "gflop64": 2e-9 * (totals["f64"] + totals["gemm_f64"] + totals["conv_f64"]),
            "dram_gb": 1e-9 * totals["dram"], "l2_gb": 1e-9 * totals["l2"]}


def breakdown(ops: list[Op], fig: dict[str, float] = H200, top: int = 12) -> list[tuple[str, int, float, str]]:
    """The largest contributors: (layer / operation, count, modelled ms, what bounds it)."""
    acc: dict[str, list] = defaultdict(lambda: [0, 0.0, defaultdict(float)])
    for op in ops:
        key = f"{op.layer}/{op.name}"
        t = op_time(op, fig)
        acc[key][0] += 1
        acc[key][1] += t
        bounds = {"f64": op.f64 * 2 / fig["fp64_flops"], "dgemm": op.gemm_f64 * 2 / fig["fp64_gemm_flops"],
                  "conv f64": op.conv_f64 * 2 / fig["fp64_flops"], "32-bit": op.ops32 * 2 / fig["fp32_flops"],
                  "HBM": op.dram / fig["hbm_bytes"], "L2": op.l2 / fig["l2_bytes"], "launch": fig["launch_gap_s"]}
        acc[key][2][max(bounds, key=bounds.get)] += t
    rows = [(k, n, 1e3 * t, max(b, key=b.get)) for k, (n, t, b) in acc.items()]
    return sorted(rows, key=lambda r: -r[2])[:top]


def densities_line(density: dict[str, float]) -> str:
    return ", ".join(f"{k} {100 * v:.2f} %" for k, v in density.items())


def fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


def summary(model: str, batch: int, ops: list[Op], density: dict[str, float]) -> str:
    """A few lines: the model at batch `batch`, its sensitivity, the largest contributors."""
    m = model_time(ops, batch)
    lines = [f"model (H200) {model} batch {batch}: {fmt(m['model']['samples_per_s'])} samples/s, step "
             f"{m['model']['step_ms']:.2f} ms (device {m['model']['device_ms']:.2f}, host {m['host_ms']:.2f}), "
             f"{m['launches']} launches, {m['gflop64']:.1f} GFLOP float64, {m['dram_gb']:.2f} GB HBM, "
             f"{m['l2_gb']:.2f} GB L2; rates x0.5: {fmt(m['rates x0.5']['samples_per_s'])}/s; with the time loops' "
             f"latency floor: {fmt(m['+ loop latency']['samples_per_s'])}/s",
             f"  spikes: {densities_line(density)}"]
    lines += [f"  {k:34s} x{n:<3d} {t:8.3f} ms  ({bound})" for k, n, t, bound in breakdown(ops)]
    return "\n".join(lines)


def as_dict(ops: list[Op]) -> list[dict]:
    return [dict(vars(op)) for op in ops]

