"""Events stored as a numpy structured array, one sample per `.npy` file (DVS-Lip: fields `t`, `x`, `y`, `p`).

The file must be a `.npy` (numpy's format, magic ``\\x93NUMPY``) holding a 1-d structured array with (at least) the
fields `t` (µs), `x`, `y` (pixels from 0) and `p` (polarity), in any order and of any numeric types (bool for
`p`); they become events as `spikedata.io.columns` says. It is loaded without pickle (a pickled object array is
refused, never executed). Every problem is an `EventFileError` naming the file.
"""

from __future__ import annotations

import os

import numpy as np

from spikedata.io.columns import events_from_columns
from spikedata.io.event_types import EventFileError, EventFileInfo

__all__ = ["NPY_MAGIC", "read_npy_events"]

NPY_MAGIC = b"\x93NUMPY"
_FIELDS = ("t", "x", "y", "p")


def _load(path: str | os.PathLike) -> np.ndarray:
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(NPY_MAGIC))
            if head != NPY_MAGIC:
                raise EventFileError(path, "npy", 0, f"not a .npy file: it starts with {head!r}, expected "
                                     f"{NPY_MAGIC!r}")
            fh.seek(0)
            return np.load(fh, allow_pickle=False)
    except EventFileError:
        raise
    except OSError as exc:
        raise EventFileError(path, "npy", None, f"cannot open ({exc.strerror})") from None
    except (ValueError, EOFError) as exc:  # truncated data, a bad header, or an object (pickled) array
        raise EventFileError(path, "npy", None, f"cannot load the array ({exc}); the file is truncated or corrupt, "
                             "or holds Python objects") from None


def read_npy_events(path: str | os.PathLike,
                    sensor_size: tuple[int, int] | None = None) -> tuple[np.ndarray, EventFileInfo]:
    """Events (`EVENT_DTYPE`, file order) of a structured `.npy` file and what was read (`EventFileInfo`, format
    "npy"); `sensor_size` (width, height) bounds the coordinates. See the module docstring for the rules."""
    data = _load(path)
    names = data.dtype.names or ()
    missing = [f for f in _FIELDS if f not in names]
    if missing or data.ndim != 1:
        raise EventFileError(path, "npy", None, f"expected a 1-d structured array with fields {list(_FIELDS)}; it is "
                             f"{data.dtype} of shape {data.shape}")
    events, repairs = events_from_columns(*(data[f] for f in _FIELDS), path, "npy", sensor_size)
    return events, EventFileInfo(str(path), "npy", int(len(events)), repairs=repairs)
