"""Durable renames: after `os.replace` into a directory, its entry survives a power cut only once the directory
itself is flushed."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: str | os.PathLike) -> None:
    """Flush `directory`'s entries to disk; best effort (not every platform or file system can open a directory)."""
    try:
        fd = os.open(Path(directory), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
