"""Events stored as MATLAB variables, one sample per `.mat` file (ASL-DVS: column vectors `ts`, `x`, `y`, `pol`).

Two container versions exist and both are read, detected from the content:

* **Level 5** (MATLAB 5.0 / v7, what `save` writes by default): a 128-byte text header starting with
  ``MATLAB 5.0 MAT-file``, then tagged data elements; read with `scipy.io.loadmat` (scipy comes with librosa).
  The published ASL-DVS files are of this kind (tonic reads them with `scipy.io.loadmat`, which refuses v7.3).
* **v7.3** (``save -v7.3``): an HDF5 file behind a 512-byte text header starting with ``MATLAB 7.3 MAT-file``;
  each variable is a root dataset, stored transposed (a column vector is [1, n]); read with h5py. A re-saved copy
  may be of this kind.

Every variable is flattened to one dimension; the four vectors become events as `spikedata.io.columns` says
(whole µs and pixels, polarity 0 / 1 or -1 / +1, the checks of every event reader). Every problem is an
`EventFileError` naming the file.
"""

from __future__ import annotations

import os

import numpy as np

from spikedata.io.columns import events_from_columns
from spikedata.io.event_types import EventFileError, EventFileInfo

__all__ = ["ASL_DVS_FIELDS", "MAT5_MAGIC", "MAT73_MAGIC", "mat_version", "read_mat_events", "read_mat_variables"]

MAT5_MAGIC = b"MATLAB 5.0 MAT-file"
MAT73_MAGIC = b"MATLAB 7.3 MAT-file"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: Where a v7.3 MAT-file's HDF5 superblock starts (after its text header).
_MAT73_HDF5_OFFSET = 512
#: The ASL-DVS variable names: time (µs), x, y, polarity.
ASL_DVS_FIELDS = ("ts", "x", "y", "pol")


def mat_version(path: str | os.PathLike) -> str:
    """"mat5" or "mat73" from the file's first bytes; EventFileError for anything else."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_MAT73_HDF5_OFFSET + len(_HDF5_MAGIC))
    except OSError as exc:
        raise EventFileError(path, "mat", 0, f"cannot open ({exc.strerror})") from None
    if head.startswith(MAT73_MAGIC) or head[_MAT73_HDF5_OFFSET:].startswith(_HDF5_MAGIC):
        return "mat73"
    if head.startswith(MAT5_MAGIC):
        if len(head) < 128:
            raise EventFileError(path, "mat5", len(head), "truncated: the 128-byte MAT-file header is incomplete")
        return "mat5"
    raise EventFileError(path, "mat", 0, f"not a MATLAB MAT-file (level 5 or v7.3): it starts with {head[:20]!r}")


def _read_mat5(path: str | os.PathLike, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    import scipy.io

    try:
        found = scipy.io.loadmat(os.fspath(path), variable_names=list(names), squeeze_me=False,
                                 mat_dtype=False, verify_compressed_data_integrity=True)
    except Exception as exc:  # noqa: BLE001  (scipy raises many types for a damaged file)
        raise EventFileError(path, "mat5", None, f"cannot read the MAT-file ({type(exc).__name__}: {exc}); it is "
                             "truncated or corrupt") from None
    return {k: v for k, v in found.items() if k in names}


def _read_mat73(path: str | os.PathLike, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    import h5py

    out = {}
    try:
        with h5py.File(path, "r") as f:
            for name in names:
                if isinstance(f.get(name), h5py.Dataset):
                    out[name] = f[name][()]
    except (OSError, RuntimeError, ValueError, TypeError, KeyError) as exc:
        raise EventFileError(path, "mat73", None, f"cannot read the MAT-file's HDF5 data ({type(exc).__name__}: "
                             f"{exc}); it is truncated or corrupt") from None
    return out


def read_mat_variables(path: str | os.PathLike, names: tuple[str, ...]) -> tuple[dict[str, np.ndarray], str]:
    """The numeric variables `names` of a MAT-file, each flattened to 1-d, and the version read ("mat5" or
    "mat73"). A missing or non-numeric variable, or vectors of different lengths, are an EventFileError naming the
    file."""
    version = mat_version(path)
    raw = _read_mat5(path, names) if version == "mat5" else _read_mat73(path, names)
    missing = [n for n in names if n not in raw]
    if missing:
        raise EventFileError(path, version, None, f"variable(s) {missing} missing; expected {list(names)}")
    out = {}
    for name in names:
        value = np.asarray(raw[name])
        if value.dtype.kind not in "iufb" or (value.ndim == 2 and min(value.shape) > 1) or value.ndim > 2:
            raise EventFileError(path, version, None, f"variable {name!r} is {value.dtype} {value.shape}, expected "
                                 "a numeric vector")
        out[name] = value.reshape(-1)
    lengths = {n: len(v) for n, v in out.items()}
    if len(set(lengths.values())) > 1:
        raise EventFileError(path, version, None, f"the variables have different lengths {lengths}")
    return out, version


def read_mat_events(path: str | os.PathLike, sensor_size: tuple[int, int] | None = None,
                    fields: tuple[str, str, str, str] = ASL_DVS_FIELDS) -> tuple[np.ndarray, EventFileInfo]:
    """Events (`EVENT_DTYPE`, file order) of a MAT-file holding the vectors `fields` = (time µs, x, y, polarity),
    and what was read (`EventFileInfo`: format "mat5" or "mat73", the repairs of the time check). `sensor_size`
    (width, height) bounds the coordinates. See the module docstring for the rules."""
    values, version = read_mat_variables(path, tuple(fields))
    events, repairs = events_from_columns(*(values[f] for f in fields), path, version, sensor_size)
    return events, EventFileInfo(str(path), version, int(len(events)), repairs=repairs)
