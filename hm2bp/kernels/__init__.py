"""Kernel sets: the operations a network's layers run, chosen once when the network is built. This module is the one
place a backend is chosen; nothing outside `hm2bp.kernels` names one.

`make_kernels(backend, device)`:
* `numba`: CPU tensors (the fast CPU path, `hm2bp.kernels.numba`);
* `triton`: CUDA tensors, fused Triton kernels and a synchronisation-free step (`hm2bp.kernels.triton`; CPU tensors
  under `TRITON_INTERPRET=1`, for tests);
* `torch`: the plain torch reference, any device (`hm2bp.kernels.torch`, binding `hm2bp.rules`);
* `auto`: numba for CPU, triton for CUDA when Triton can be imported, otherwise torch.
All three give the same spikes and the same gradients (to float rounding); `docs/trainer.md` says why.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

# `torch` itself is not bound here: the submodule `hm2bp.kernels.torch` takes that name in this package once loaded.
from torch import Tensor
from torch import device as Device

from hm2bp.kernels.base import KernelSet, Trains

BACKENDS = ("auto", "numba", "triton", "torch")

#: What each choice of `BACKENDS` means (for command-line help).
BACKEND_HELP = ("auto (numba on CPU, triton on CUDA when Triton is installed, else torch), numba, triton or torch (the "
                "plain reference, any device)")

__all__ = ["BACKENDS", "BACKEND_HELP", "KernelSet", "Trains", "cpu_working_set", "gather_events", "make_kernels",
           "resolve_backend", "triton_available"]


def triton_available() -> bool:
    """True when the `triton` package can be imported (it ships with CUDA builds of torch)."""
    return importlib.util.find_spec("triton") is not None


def resolve_backend(backend: str, device: Device | str) -> str:
    """The concrete backend `backend` means on `device` (ValueError for an unknown name or an impossible pair)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    dev = Device(device)
    if backend == "auto":
        if dev.type == "cpu":
            return "numba"
        return "triton" if dev.type == "cuda" and triton_available() else "torch"
    if backend == "numba" and dev.type != "cpu":
        raise ValueError(f"backend 'numba' runs on CPU tensors only; the network is on {dev}")
    if backend == "triton" and not triton_available():
        raise ValueError("backend 'triton' needs the triton package (pip install 'spikedata-hm2bp[cuda]')")
    if backend == "triton" and dev.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        # on CPU tensors the kernels would run under Triton's interpreter, hundreds of times slower than numba (shape-
        # only "meta" tensors run no kernel: the compile check records steps on them)
        raise ValueError(f"`backend` triton runs on a GPU, and the network is on {dev}: use `backend` numba (or "
                         "auto) on a CPU; to run the Triton kernels under Triton's interpreter anyway (tests, dry "
                         "runs: very slow), set TRITON_INTERPRET=1 in the environment")
    return backend


def make_kernels(backend: str, device: Device | str, threads: int | None = None) -> KernelSet:
    """The kernel set `backend` (see `resolve_backend`) for tensors on `device`; `threads`: CPU threads of a set
    that spreads a batch over them (default: the CPUs available to this process, at most 4)."""
    name = resolve_backend(backend, device)
    dev = Device(device)
    if name == "numba":
        from hm2bp.kernels.numba.set import NumbaKernels

        return NumbaKernels(dev, threads)
    if name == "triton":
        from hm2bp.kernels.triton.set import TritonKernels

        return TritonKernels(dev)
    from hm2bp.kernels.torch import TorchKernels

    return TorchKernels(dev)


def cpu_working_set(threads: int | None = None) -> tuple[int, int]:
    """(threads, samples per chunk) of the CPU kernel set: how many samples' activations are alive at once, for a
    memory check before a network is built (`threads` None: the default)."""
    from hm2bp.kernels.numba.tuning import CHUNK_SIZE, default_threads

    return (threads or default_threads()), CHUNK_SIZE


def gather_events(indptr: np.ndarray, times: np.ndarray, units: np.ndarray, positions: np.ndarray,
                  pin: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """The events of samples `positions` of a split's CSR as one contiguous CSR of host tensors (pinned when
    `pin`): one compiled pass of the CPU kernels (`hm2bp.kernels.numba.csr.gather_events`), whatever set trains."""
    from hm2bp.kernels.numba.csr import gather_events as gather

    return gather(indptr, times, units, positions, pin)
