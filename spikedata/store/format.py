"""The spike store format: names, version, chunk sizes, the CSR block type and the invariants every store holds.

Layout (docs/store.md)::

    STORE/               root group; attributes: format, format_version, dataset, encoder {name, params},
                         n_units, unit_shape, n_steps, dt_us, classes, seed, source, created_by, splits,
                         split_sha256, integrity {attributes, splits}
      <split>/           one group per split ("train", "test", ...); attributes: n_samples, n_events,
                         content_sha256, encode_stats, extras, class_counts, integrity {chunk manifest}
        indptr  int64  [n_samples + 1]   events of sample i are [indptr[i], indptr[i+1])
        times   uint16|uint32 [n_events] time step (steps of dt_us µs), sorted within a sample
        units   uint16|uint32 [n_events] flat unit index, sorted within a time step
        labels  int16  [n_samples]
        extra/<name>     optional per-sample arrays, first axis n_samples
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

from spikedata.errors import SpikedataError

FORMAT = "spikedata.store"
FORMAT_VERSION = 2
#: What each format version added (for the message an older store gets).
VERSION_HISTORY = {1: "no chunk checksums or chunk manifest", 2: "crc32c per chunk, chunk manifest, attribute digests"}
#: Events per chunk of `times`/`units`: 2^18 (~40 MNIST samples at T = 400, ~280 kB compressed); chosen by
#: `benchmarks/bench_store.py`, figures in docs/store.md.
EVENT_CHUNK = 1 << 18
#: Samples per chunk of the per-sample arrays.
SAMPLE_CHUNK = 1 << 16
#: Root attributes every store has (`StoreWriter` requires them, `open_store` checks them).
REQUIRED_ROOT_ATTRS = ("dataset", "encoder", "n_units", "unit_shape", "n_steps", "dt_us", "classes", "seed", "source")
#: The arrays of every split (extras come on top, under extra/).
CORE_ARRAYS = ("indptr", "times", "units", "labels")


class StoreError(SpikedataError, ValueError):
    """A store is missing, incomplete, damaged, from another format version, or violates an invariant."""


@dataclass(frozen=True)
class EventBlock:
    """Events of a contiguous range of k samples, in CSR form: what an encoder produces and a read returns.

    `indptr` int64 [k + 1] (starting at 0) indexes `times` (steps) and `units` (flat unit index), sorted by
    (time, unit) within each sample; `labels` [k]; `extras` per-sample arrays [k, ...]; `stats` additive counters
    of the encoder (e.g. collapsed events), summed per split by the writer.
    """

    indptr: np.ndarray
    times: np.ndarray
    units: np.ndarray
    labels: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


def index_dtype(limit: int) -> np.dtype:
    """Smallest unsigned dtype (uint16 or uint32) that holds values in [0, limit)."""
    return np.dtype(np.uint16) if limit <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def fill_value_for(name: str, dtype: np.dtype) -> int:
    """Fill value of an array: one that no valid store holds (max of the dtype for times/units, -1 for indptr,
    labels and categorical codes), so that even without the manifest a missing chunk reads as invalid data."""
    dtype = np.dtype(dtype)
    if name in ("times", "units"):
        return int(np.iinfo(dtype).max)
    if dtype.kind == "i":
        return -1
    return 0


def is_int(value: Any) -> bool:
    """True for an int that is not a bool (JSON attributes: `true` must not pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


@numba.njit(cache=True)
def first_unsorted_sample(indptr, times, units):  # pragma: no cover - numba
    """Index of the first sample whose events are not strictly sorted by (time, unit) (a repeated event counts),
    -1 when every sample is: the store's order invariant."""
    for s in range(len(indptr) - 1):
        for e in range(indptr[s] + 1, indptr[s + 1]):
            if times[e] < times[e - 1] or (times[e] == times[e - 1] and units[e] <= units[e - 1]):
                return s
    return -1
