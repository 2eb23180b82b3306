"""Spike lists of the numba kernel set: a raster as per-(sample, step) lists of the units that spiked (CSR).

The spikes of sample b at step t are `idx[indptr[b*T + t] : indptr[b*T + t + 1]]`; every spike-driven kernel of
this set walks them with `step_spikes`. Also the host-side gather of a batch's events from a split's CSR.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit


@njit(inline="always")
def step_spikes(indptr, b, steps, t):
    """`(start, stop)` of the spikes of sample b at step t in the index array of a CSR."""
    row = b * steps + t
    return indptr[row], indptr[row + 1]


@njit(cache=True, nogil=True)
def _raster_to_csr(raster: np.ndarray, words: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # `words` views each (sample, step) row as uint64 words: sparse rasters are mostly zero words, skipped whole.
    # `total` = number of non-zero entries (counted by numpy beforehand, so one pass over the raster suffices).
    batch, steps, units = raster.shape
    n_words = words.shape[2]
    indptr = np.zeros(batch * steps + 1, np.int64)
    counts = np.zeros((batch, units), np.int64)
    idx = np.empty(total, np.int32)
    k = 0
    for b in range(batch):
        cnt = counts[b]
        for t in range(steps):
            w_row = words[b, t]
            r_row = raster[b, t]
            for w in range(n_words):
                if w_row[w] != 0:
                    for j in range(8 * w, 8 * w + 8):
                        if r_row[j] != 0:
                            idx[k] = j
                            cnt[j] += 1
                            k += 1
            for j in range(8 * n_words, units):
                if r_row[j] != 0:
                    idx[k] = j
                    cnt[j] += 1
                    k += 1
            indptr[b * steps + t + 1] = k
    return indptr, idx, counts


def raster_to_csr(raster: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spike raster `[B, T, N]` (uint8/bool) -> (`indptr` int64 `[B*T+1]`, unit indices int32, counts int64
    `[B, N]`): the spikes of sample b at step t are `idx[indptr[b*T+t]:indptr[b*T+t+1]]`."""
    raster = np.ascontiguousarray(raster).view(np.uint8)
    batch, steps, units = raster.shape
    n_words = units // 8
    if units % 8 == 0:
        words = raster.view(np.uint64)
    else:
        words = np.ascontiguousarray(raster[:, :, :8 * n_words]).view(np.uint64)
    return _raster_to_csr(raster, words, np.count_nonzero(raster))


@njit(cache=True, nogil=True)
def _gather(indptr, times, units, positions, indptr_out, times_out, units_out):
    k = 0
    for b in range(positions.shape[0]):
        p = positions[b]
        for e in range(indptr[p], indptr[p + 1]):
            times_out[k] = times[e]
            units_out[k] = units[e]
            k += 1
        indptr_out[b + 1] = k


def gather_events(indptr: np.ndarray, times: np.ndarray, units: np.ndarray, positions: np.ndarray,
                  pin: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The events of samples `positions` (local CSR positions) as one contiguous CSR: (indptr int64 [B + 1] from 0,
    times int32, units int32), torch tensors on the host, in pinned memory when `pin` (for asynchronous copies to a
    GPU). One numba pass over the selected events."""
    positions = np.ascontiguousarray(positions, dtype=np.int64)
    total = int((indptr[positions + 1] - indptr[positions]).sum())
    out_ptr = torch.zeros(len(positions) + 1, dtype=torch.int64, pin_memory=pin)
    out_t = torch.empty(total, dtype=torch.int32, pin_memory=pin)
    out_u = torch.empty(total, dtype=torch.int32, pin_memory=pin)
    _gather(indptr, times, units, positions, out_ptr.numpy(), out_t.numpy(), out_u.numpy())
    return out_ptr, out_t, out_u
