"""Checkpoint files: one `torch.save` dict, written atomically (temp file + fsync + os.replace), that carries its own
checksum.

A reader therefore sees either the previous complete checkpoint or the new complete one, never a torn file, even
if the process is killed while saving. torch does not check the CRCs of its zip container, so the file (format
"hm2bp.checkpoint", version 2) is an outer `torch.save` dict ``{"format", "format_version", "payload_sha256",
"payload"}`` whose `payload` is the serialised checkpoint (its bytes as a uint8 tensor, so they are stored
verbatim) and `payload_sha256` their sha256: a flipped byte
anywhere in the payload fails the checksum; one in the outer structure fails to load. On load the payload is then
checked: every key below present with its type, every floating-point tensor finite (weights, optimiser state,
boost), and, given the network (`check_against_network`), every weight's name and shape and the boost length.
Each failure is a `CheckpointError` naming the file and what is wrong. Payload contents:

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

import hashlib
import io
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from hm2bp.errors import Hm2bpError
from spikedata.durable import fsync_dir

FORMAT = "hm2bp.checkpoint"
FORMAT_VERSION = 2
#: Keys of the payload and the type each must have.
REQUIRED = {
    "epoch": int, "weights": dict, "config": dict, "n_inputs": int, "input_shape": list, "classes": list,
    "optimizer": dict, "boost": torch.Tensor, "rng": dict, "store": dict, "history": list, "best": dict,
}  # fmt: skip

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
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomically replace a text file (UTF-8)."""
    atomic_write_bytes(path, lambda f: f.write(text.encode()))



def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` (serialised, with its sha256 and the format marker) atomically to `path`."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    body = buf.getvalue()
    outer = {"format": FORMAT, "format_version": FORMAT_VERSION, "payload_sha256": hashlib.sha256(body).hexdigest(),
             "payload": torch.frombuffer(bytearray(body), dtype=torch.uint8)}
    atomic_write_bytes(path, lambda f: torch.save(outer, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`: format, version, checksum and payload checked (see the
    module docstring); raises CheckpointError with the reason. Returns the payload plus `format`/`format_version`."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    outer = _load(path, path, "not a readable checkpoint")
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an hm2bp checkpoint")
    version = outer.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r}; this hm2bp reads {FORMAT_VERSION}"
            + (" (version 1 carried no checksum): train the run again" if version == 1 else "")
        )
    body, digest = outer.get("payload"), outer.get("payload_sha256")
    if not (isinstance(body, torch.Tensor) and body.dtype == torch.uint8 and body.ndim == 1) or not isinstance(
        digest, str
    ):
        raise CheckpointError(f"{path}: the checkpoint has no payload or no payload_sha256")
    body = body.numpy().tobytes()
    actual = hashlib.sha256(body).hexdigest()
    if actual != digest:
        raise CheckpointError(f"{path}: checksum mismatch (payload sha256 {actual}, recorded {digest}): the file is "
                              "corrupt; use another checkpoint (best.pt / last.pt) or train again")
    data = _load(io.BytesIO(body), path, "the checksummed payload does not load")
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: the payload is a {type(data).__name__}, not a checkpoint dict")
    check_payload(data, path)
    return {"format": FORMAT, "format_version": FORMAT_VERSION, **data}


def _load(source, path: Path, what: str) -> Any:
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or truncated files
        raise CheckpointError(f"{path}: {what} ({type(exc).__name__}: {exc})") from exc


def _non_finite(obj: Any, key: str) -> str | None:
    """Key path of the first floating-point tensor or float in `obj` that is not finite, else None."""
    if isinstance(obj, torch.Tensor):
        return key if obj.is_floating_point() and not bool(torch.isfinite(obj).all()) else None
    if isinstance(obj, float):
        return key if not math.isfinite(obj) else None
    if isinstance(obj, dict):
        for k, v in obj.items():
            found = _non_finite(v, f"{key}.{k}")
            if found:
                return found
    return None


def check_payload(data: dict[str, Any], path: str | Path) -> None:
    """Keys, types and finiteness of a checkpoint payload (CheckpointError naming the key)."""
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"{path}: the checkpoint lacks the key(s) {', '.join(missing)}")
    for key, kind in REQUIRED.items():
        value = data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CheckpointError(f"{path}: key {key!r} is a {type(value).__name__}, expected {kind.__name__}")
    for name, w in data["weights"].items():
        if not isinstance(w, torch.Tensor) or not w.is_floating_point():
            raise CheckpointError(f"{path}: weights of layer {name!r} are not a floating-point tensor")
    boost = data["boost"]
    if boost.ndim != 1 or not boost.is_floating_point():
        raise CheckpointError(f"{path}: boost must be a 1-d float tensor, got {boost.dtype} {list(boost.shape)}")
    for key in ("weights", "optimizer", "boost"):
        bad = _non_finite(data[key], key)
        if bad:
            raise CheckpointError(f"{path}: non-finite values (NaN or inf) in {bad}: the checkpoint is corrupt or its "
                                  "run diverged")
    if len(boost) and bool((boost < 0).any()):
        raise CheckpointError(f"{path}: negative boost weights")


def check_against_network(data: dict[str, Any], path: str | Path, weights: dict[str, torch.Tensor],
                          n_train: int | None = None) -> None:
    """The checkpoint's weights have the network's layer names and shapes, and (given `n_train`) one boost weight
    per training sample; CheckpointError naming the layer or count that differs."""
    have, want = set(data["weights"]), set(weights)
    if have != want:
        raise CheckpointError(f"{path}: layers {sorted(have)} in the checkpoint, the network has {sorted(want)}")
    for name, w in weights.items():
        got = tuple(data["weights"][name].shape)
        if got != tuple(w.shape):
            raise CheckpointError(f"{path}: weights of layer {name!r} have shape {list(got)}, the network needs "
                                  f"{list(w.shape)}")
    if n_train is not None and len(data["boost"]) != n_train:
        raise CheckpointError(f"{path}: {len(data['boost'])} boost weights, the run has {n_train} training samples")
