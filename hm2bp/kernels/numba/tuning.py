"""Tuning constants of the numba kernel set: how a batch is cut into chunks and spread over CPU threads."""

from __future__ import annotations

import os

#: Samples per forward/backward chunk (cache locality of the per-sample `[T, n]` arrays).
CHUNK_SIZE = 8


def default_threads() -> int:
    """The CPUs available to this process, at most 4 (more threads gain little: the passes are memory-bound)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(4, n)
