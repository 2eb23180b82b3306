"""Kernel sets: the operations a network's layers run, chosen once when the network is built.

`make_kernels(backend, device)`:
* `numba`: CPU tensors (the fast CPU path);
* `triton`: CUDA tensors, fused Triton kernels and a synchronisation-free step (CPU tensors under
  `TRITON_INTERPRET=1`, for tests);
* `torch`: the plain torch reference, any device;
* `auto`: numba for CPU, triton for CUDA when Triton can be imported, otherwise torch.
All three give the same spikes and the same gradients (to float rounding); `docs/trainer.md` says why.
"""

from __future__ import annotations

import importlib.util

import torch

from hm2bp.kernels.base import KernelSet, Trains

BACKENDS = ("auto", "numba", "triton", "torch")

__all__ = ["BACKENDS", "KernelSet", "Trains", "make_kernels", "resolve_backend", "triton_available"]


def triton_available() -> bool:
    """True when the `triton` package can be imported (it ships with CUDA builds of torch)."""
    return importlib.util.find_spec("triton") is not None


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """The concrete backend `backend` means on `device` (ValueError for an unknown name or an impossible pair)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    dev = torch.device(device)
    if backend == "auto":
        if dev.type == "cpu":
            return "numba"
        return "triton" if dev.type == "cuda" and triton_available() else "torch"
    if backend == "numba" and dev.type != "cpu":
        raise ValueError(f"backend 'numba' runs on CPU tensors only; the network is on {dev}")
    if backend == "triton" and not triton_available():
        raise ValueError("backend 'triton' needs the triton package (pip install 'spikedata-hm2bp[cuda]')")
    return backend


def make_kernels(backend: str, device: torch.device | str, threads: int | None = None) -> KernelSet:
    """The kernel set `backend` (see `resolve_backend`) for tensors on `device`."""
    name = resolve_backend(backend, device)
    dev = torch.device(device)
    if name == "numba":
        from hm2bp.kernels.numba_set import NumbaKernels

        return NumbaKernels(dev, threads)
    if name == "triton":
        from hm2bp.kernels.triton_set import TritonKernels

        return TritonKernels(dev)
    from hm2bp.kernels.torch_set import TorchKernels

    return TorchKernels(dev)
