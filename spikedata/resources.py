"""Memory estimates before large allocations: refuse with a message that states what would have been needed,
instead of dying inside numpy, torch or the kernel's OOM killer.

`available_memory()` is the least of: the memory the kernel reports available (`MemAvailable`), the room left
under this process's address-space limit (`RLIMIT_AS`) and under its cgroup's `memory.max`. `require_memory`
raises `ResourceError` (or the error class the caller passes, e.g. hm2bp's `ConfigError`) when an allocation of
`nbytes` does not fit.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

from spikedata.errors import SpikedataError


class ResourceError(SpikedataError, MemoryError):
    """An input would need more memory than this machine (or this process's limits) provides."""


def format_bytes(n: float) -> str:
    """`1.5 GB`-style size (decimal units); sizes beyond what a float holds (a corrupt header's product of
    dimensions) as a power of ten, never an OverflowError."""
    if isinstance(n, int) and abs(n) >= 10**21:
        return f"about 10^{len(str(abs(n))) - 1} bytes"
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _address_space_left() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return max(0, soft - int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return soft


def _cgroup_left() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(0, int(limit) - used)
    except (OSError, ValueError):
        return None


def available_memory() -> int:
    """Bytes this process can still allocate (best estimate; physical pages when nothing else is known)."""
    known = [v for v in (_meminfo_available(), _address_space_left(), _cgroup_left()) if v is not None]
    if not known:
        try:
            known = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")]
        except (ValueError, OSError):
            return 1 << 62
    return min(known)


def require_memory(nbytes: int, what: str, error: type[Exception] = ResourceError) -> None:
    """Raise `error` when `nbytes` more bytes do not fit; the message names `what` and both amounts."""
    have = available_memory()
    if nbytes > have:
        raise error(f"{what} would need {format_bytes(nbytes)} of memory, but only {format_bytes(have)} is "
                    "available")
