"""Launching Triton kernels: one place that sets the compile options every kernel needs and counts launches."""

from __future__ import annotations

from collections import Counter

#: Kernel launches by kernel name since the last `reset_launch_counts()` (for the launch-count benchmark).
LAUNCHES: Counter = Counter()


def launch(kernel, grid: tuple[int, ...], *args, **meta) -> None:
    """`kernel[grid](*args, **meta)` without fused multiply-adds (the reference's float32 operation order)."""
    LAUNCHES[kernel.fn.__name__ if hasattr(kernel, "fn") else str(kernel)] += 1
    kernel[grid](*args, enable_fp_fusion=False, **meta)


def reset_launch_counts() -> None:
    LAUNCHES.clear()
