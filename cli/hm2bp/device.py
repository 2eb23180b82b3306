"""`--device` and `--backend` of `hm2bp fit` and `hm2bp eval`: the options and the validation of the device
(`auto`, `cpu`, `cuda`, `cuda:K`)."""

from __future__ import annotations

import re

import typer

from hm2bp.kernels import BACKEND_HELP, BACKENDS
from spikedata.cli.common import fail

DEVICE = typer.Option("auto", "--device", help="auto (CUDA when available), cpu, cuda or cuda:K (the K-th GPU).")

BACKEND = typer.Option("auto", "--backend", help=f"Kernel set: {BACKEND_HELP}.")

_CUDA_INDEX = re.compile(r"cuda:(\d+)")


def check_device(device: str) -> str:
    """`device` if it names a device this machine has; otherwise a one-line error saying what is missing.

    Torch is imported here, not at module level, so that `--help` stays fast.
    """
    match = _CUDA_INDEX.fullmatch(device)
    if device not in ("auto", "cpu", "cuda") and match is None:
        raise typer.BadParameter(f"--device must be auto, cpu, cuda or cuda:K; got {device!r}")
    if device in ("auto", "cpu"):
        return device
    import torch

    if not torch.cuda.is_available():
        fail(f"--device {device}: CUDA is not available on this machine (use --device cpu or auto)")
    if match is not None:
        index, count = int(match.group(1)), torch.cuda.device_count()
        if index >= count:
            fail(f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return device


def check_backend(backend: str) -> str:
    """`backend` if it is a kernel set's name (the device pairing is checked when the network is built)."""
    if backend not in BACKENDS:
        raise typer.BadParameter(f"--backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    return backend
