"""Putting a finished store in place atomically, and what interrupted writers leave beside it.

A store is written into a hidden sibling `.NAME.partial-*` and moved to its path only when complete (`install`):
renamed when the path is free, else swapped with the existing store in one step (Linux `renameat2`
RENAME_EXCHANGE), or, where the file system cannot swap, moved by two renames, the old store parked at
`.NAME.old-*` in between. `clean_leftovers` removes (or restores) what a killed writer left.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import uuid
from pathlib import Path

from spikedata.durable import fsync_dir

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_EXCHANGE = _renameat2()


def exchange_paths(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if _EXCHANGE is None:
        return False
    if _EXCHANGE(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (38, 22, 95):  # ENOSYS, EINVAL (file system without support), EOPNOTSUPP
        return False
    raise OSError(err, f"cannot swap {a} and {b}: {os.strerror(err)}")


def _leftovers(path: Path, kind: str) -> list[Path]:
    prefix = f".{path.name}.{kind}-"
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(prefix))


def interrupted_swap_hint(path: Path) -> str:
    """Text to append to "no such spike store" when an interrupted replacement parked the old store beside it."""
    old = _leftovers(path, "old")
    return (f"; an interrupted --overwrite left the previous store at {old[-1]} (the next writer of {path} "
            "restores it)") if old else ""


def clean_leftovers(path: str | os.PathLike) -> list[str]:
    """Remove what interrupted writers of `path` left beside it; call only while holding the path's lock.

    `.NAME.partial-*` directories (encodes killed before they finished, or the previous store after a swap that
    was interrupted before it was deleted) are removed: holding the lock proves their writers are gone. When
    `path` is missing but a `.NAME.old-*` store exists (a two-rename replacement killed between its renames, on
    systems without an atomic swap), that store is moved back to `path`. Returns what was done, for a note.
    """
    path = Path(path)
    done = []
    olds = _leftovers(path, "old")
    if olds and not path.exists():
        os.replace(olds[-1], path)
        done.append(f"restored {path} from {olds[-1].name}")
        olds = olds[:-1]
    for p in [*_leftovers(path, "partial"), *olds]:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        done.append(f"removed {p.name}")
    return done


def install(tmp: Path, path: Path) -> None:
    """Move the finished store `tmp` to `path`: a rename, or an atomic swap with the store already there (which is
    then deleted), else two renames."""
    if not path.exists():
        os.replace(tmp, path)
        fsync_dir(path.parent)
        return
    if exchange_paths(tmp, path):  # the old store is now at tmp
        fsync_dir(path.parent)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    # No atomic swap here: two renames. A kill between them leaves `.NAME.old-*`, which the next writer moves back
    # (clean_leftovers) and open_store names in its message.
    trash = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(path, trash)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    shutil.rmtree(trash, ignore_errors=True)
