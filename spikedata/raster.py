"""Spike events in CSR form -> dense rasters: the one CPU implementation (the store's `dense`, hm2bp's loader).

Events of sample `s` are `times[indptr[s]:indptr[s+1]]` (steps) and `units[...]` (flat unit indices), as a store
split keeps them; a raster is bool `[batch, time, unit]`.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _scatter(indptr, times, units, samples, rows, out):  # pragma: no cover - numba
    for k in range(len(samples)):
        s = samples[k]
        b = rows[k]
        for e in range(indptr[s], indptr[s + 1]):
            out[b, times[e], units[e]] = True


def scatter_dense(indptr: np.ndarray, times: np.ndarray, units: np.ndarray, samples: np.ndarray, rows: np.ndarray,
                  out: np.ndarray) -> np.ndarray:
    """Set `out[rows[k], t, u] = True` for every event `(t, u)` of sample `samples[k]`; returns `out` (bool
    `[B, T, N]`, not cleared first). `samples` index `indptr`; `rows` the rows of `out` they go to."""
    _scatter(indptr, times, units, np.asarray(samples, np.int64), np.asarray(rows, np.int64), out)
    return out


def dense_from_csr(indptr: np.ndarray, times: np.ndarray, units: np.ndarray, samples: np.ndarray, n_steps: int,
                   n_units: int) -> np.ndarray:
    """bool `[len(samples), n_steps, n_units]`: row b holds the events of sample `samples[b]`."""
    samples = np.asarray(samples, np.int64).reshape(-1)
    out = np.zeros((len(samples), int(n_steps), int(n_units)), np.bool_)
    return scatter_dense(indptr, times, units, samples, np.arange(len(samples), dtype=np.int64), out)
