"""Spike events on the training device: a split's CSR events resident in device memory, and dense batches built
there.

The loader (`hm2bp.train.loader`) keeps a split's events on a CUDA device when they fit in a fraction of its free memory
(MNIST's 60k training samples at T = 400 are ~1.9 GB of int16 events), or streams each batch's events through pinned
host memory on a side stream otherwise; either way the dense `[B, T, N]` raster is made on the device from the
events (`densify`), with sizes the host already knows, so no step waits for the device. On CPU the same functions
run on CPU tensors (that is how they are tested here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: Fraction of the device's free memory a split's events may take to stay resident.
DEFAULT_RESIDENT_FRACTION = 0.25


def _small_int(limit: int) -> torch.dtype:
    return torch.int16 if limit <= np.iinfo(np.int16).max + 1 else torch.int32


def event_bytes(n_events: int, n_samples: int, n_steps: int, n_units: int) -> int:
    """Device bytes of a split's events in the resident layout (int16 where the values fit, else int32)."""
    per_event = _small_int(n_steps).itemsize + _small_int(n_units).itemsize
    return int(n_events) * per_event + (int(n_samples) + 1) * 8


def fits_on_device(nbytes: int, device: torch.device, fraction: float) -> bool:
    """True when `nbytes` fit in `fraction` of the free memory of CUDA `device` (False on other devices)."""
    if device.type != "cuda" or fraction <= 0:
        return False
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= fraction * free


@dataclass
class DeviceEvents:
    """CSR events of samples `0 .. n-1` on a device: `indptr` int64 [n + 1], `times`/`units` int16 or int32."""

    indptr: torch.Tensor
    times: torch.Tensor
    units: torch.Tensor

    @classmethod
    def upload(cls, indptr: np.ndarray, times: np.ndarray, units: np.ndarray, n_steps: int, n_units: int,
               device: torch.device) -> DeviceEvents:
        def put(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a).astype(np.dtype(str(dtype).split(".")[-1]),
                                                         copy=False)).to(device)

        return cls(put(indptr, torch.int64), put(times, _small_int(n_steps)), put(units, _small_int(n_units)))


def densify(indptr: torch.Tensor, times: torch.Tensor, units: torch.Tensor, positions: torch.Tensor, total: int,
            n_steps: int, n_units: int) -> torch.Tensor:
    """bool `[len(positions), n_steps, n_units]` on the events' device: row b holds the events of sample
    `positions[b]` (`total` = their number of events, known to the caller, so nothing is read back)."""
    dev = times.device
    batch = positions.shape[0]
    starts = indptr[positions]
    counts = indptr[positions + 1] - starts
    out = torch.zeros(batch * n_steps * n_units, dtype=torch.bool, device=dev)
    if total:
        row = torch.repeat_interleave(torch.arange(batch, device=dev), counts, output_size=total)
        first = torch.cumsum(counts, 0) - counts
        offs = torch.arange(total, device=dev) - first[row] + starts[row]
        flat = (row * n_steps + times[offs].long()) * n_units + units[offs].long()
        out[flat] = True
    return out.view(batch, n_steps, n_units)
