"""Launching Triton kernels: the one place that sets the compile options every kernel needs, counts launches, and
lets a recorder see every launch (`recording`, used by the ahead-of-time compile check, `hm2bp.kernels.triton.aot`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

#: Kernel launches by kernel name since the last `reset_launch_counts()` (for the launch-count benchmark).
LAUNCHES: Counter = Counter()
#: Compile options of every launch: no fused multiply-adds (the reference's float32 operation order).
OPTIONS = {"enable_fp_fusion": False}
_RECORDERS: list[Callable] = []


def launch(kernel, grid: tuple[int, ...], *args, **meta) -> None:
    """`kernel[grid](*args, **OPTIONS, **meta)`. Launches on shape-only (`meta` device) tensors are shown to the
    recorders and not run: that is how the compile check walks a real training step at full size without a GPU."""
    LAUNCHES[kernel.fn.__name__ if hasattr(kernel, "fn") else str(kernel)] += 1
    for record in _RECORDERS:
        record(kernel, grid, args, {**OPTIONS, **meta})
    if any(isinstance(a, torch.Tensor) and a.is_meta for a in args):
        return
    kernel[grid](*args, **OPTIONS, **meta)


@contextmanager
def recording(record: Callable) -> Iterator[None]:
    """Within the block, `record(kernel, grid, args, options)` sees every launch (options include `OPTIONS`)."""
    _RECORDERS.append(record)
    try:
        yield
    finally:
        _RECORDERS.remove(record)


def reset_launch_counts() -> None:
    LAUNCHES.clear()
