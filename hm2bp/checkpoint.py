"""Checkpoint files: one `torch.save` dict, written atomically (temp file + fsync + os.replace).

A reader therefore sees either the previous complete checkpoint or the new complete one, never a torn file, even
if the process is killed while saving. Contents (format "hm2bp.checkpoint", version 1):

* `epoch`: the last completed epoch (counted from 0); a resumed run continues with `epoch + 1`;
* `weights`: {layer: float32 CPU tensor [n_post, n_pre]}; `config`: the network config dict (`to_dict()`);
* `n_inputs`, `input_shape`, `classes`: what the network was built for (checked by `hm2bp eval`);
* `optimizer`: the optimiser's `state_dict()`; `boost`: float64 tensor [n_train] of sample weights;
* `rng`: {"torch": torch RNG state, "seed": loader seed}; the loader order depends only on (seed, epoch);
* `store`: {"path", "fingerprint", "train_split", "test_split", "n_train", "n_test"};
* `history`: the per-epoch metric records so far; `best`: {"epoch", "test_accuracy"}.

Only tensors and plain Python values are stored, so `torch.load(weights_only=True)` reads it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from hm2bp.errors import Hm2bpError

FORMAT = "hm2bp.checkpoint"
FORMAT_VERSION = 1

# mkstemp creates files with mode 0600; written files get the usual mode (0666 minus the umask) instead.
_UMASK = os.umask(0)
os.umask(_UMASK)


class CheckpointError(Hm2bpError, ValueError):
    """A checkpoint file is missing, unreadable, or not an hm2bp checkpoint of a known version."""


def atomic_write_bytes(path: str | Path, write) -> None:
    """Write a file atomically: `write(fileobj)` into a temp sibling, fsync, then os.replace onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomically replace a text file (UTF-8)."""
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def _fsync_dir(directory: Path) -> None:
    # Makes the rename durable; not supported on every platform/filesystem, hence best effort.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` (plus the format marker) atomically to `path`."""
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    atomic_write_bytes(path, lambda f: torch.save(data, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; raises CheckpointError with the reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or truncated files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an hm2bp checkpoint")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {data.get('format_version')!r}; this hm2bp reads {FORMAT_VERSION}"
        )
    return data
