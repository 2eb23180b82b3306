"""Allocator tuning for the numba kernel set: glibc keeps the memory of freed `[B, T, n]` arrays for reuse."""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_allocator_tuned = False


def retain_freed_memory() -> None:
    """Let glibc keep freed blocks up to 64 MiB for reuse instead of returning them to the OS.

    A training chunk allocates ~25 MB of `[B, T, n]` arrays (currents, spikes, read-outs) and frees them; by default
    glibc serves blocks above its (adaptive) mmap threshold with fresh pages and trims freed heap memory, so every
    chunk page-faults its arrays in again (~450 faults per sample at batch 32: 15-25 % of the step, and they
    serialise the chunk threads). Done once, on the first numba forward call; process-wide; the peak memory is
    unchanged (freed memory is reused, not returned). Skipped off glibc, when the process set its own malloc
    tunables (`MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` / `GLIBC_TUNABLES`), or with `HM2BP_MALLOC_TUNING=0`.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return
    _allocator_tuned = True
    env = os.environ
    if (not sys.platform.startswith("linux") or env.get("HM2BP_MALLOC_TUNING", "1") == "0"
            or any(k in env for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"))):
        return
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return
    if mallopt(_M_MMAP_THRESHOLD, 64 << 20) or mallopt(_M_MMAP_THRESHOLD, 32 << 20):
        mallopt(_M_TRIM_THRESHOLD, 256 << 20)
