"""What hm2bp needs of a split of samples (`SplitSource`), and a seeded, stratified hold-out of a split
(`spikedata.splits`).

The loader, the trainer and the data-parallel shard read a split only through `SplitSource`: a store split
(`spikedata.store.Split`), a contiguous shard of one (`hm2bp.train.distributed.SplitShard`) or a selection of its
samples (`SubsetSplit`, e.g. the validation samples held out of a training split) all fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from spikedata.splits import stratified_split
from spikedata.store import EventBlock

#: Split names that a store uses for its own validation split, in order of preference.
VALID_SPLIT_NAMES = ("valid", "val", "validation")


@runtime_checkable
class SplitSource(Protocol):
    """A split as hm2bp reads it. `read_range(start, stop)` returns the events of samples [start, stop) in CSR
    form (`indptr` int64 [k + 1] from 0, `times` in steps, `units` flat unit indices, `labels` [k])."""

    name: str
    n_units: int
    n_steps: int
    unit_shape: tuple[int, ...]
    classes: Sequence[str]
    dt_us: float

    def __len__(self) -> int: ...

    @property
    def labels(self) -> np.ndarray: ...

    def read_range(self, start: int, stop: int) -> EventBlock: ...


def holdout(split: SplitSource, n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, stratified hold-out of the first `n` samples of `split`: (kept, held) sample indices, each sorted
    int64, `round(fraction * n)` held out, class proportions kept. The one split mechanism of the project
    (`spikedata.splits.stratified_split`), keyed by the sample index in the split, so it is the same on every
    machine."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"`val_fraction` must lie in (0, 1); got {fraction!r}")
    labels = np.asarray(split.labels[:n], dtype=np.int64)
    return stratified_split(labels, [str(i) for i in range(n)], fraction, seed)


class SubsetSplit:
    """The samples `indices` (sorted, unique) of `split`, in that order, as a `SplitSource` named `name`.

    `read_range` reads the one contiguous range of `split` that covers the requested samples (one read per array)
    and keeps the requested ones, so streaming stays a sequence of range reads."""

    def __init__(self, split: SplitSource, indices: np.ndarray, name: str):
        indices = np.asarray(indices, dtype=np.int64)
        if indices.ndim != 1 or (len(indices) and (indices[0] < 0 or indices[-1] >= len(split))):
            raise ValueError(f"subset of split {split.name!r}: indices outside [0, {len(split)})")
        if np.any(np.diff(indices) <= 0):
            raise ValueError(f"subset of split {split.name!r}: indices must be sorted and unique")
        self.split, self.indices, self.name = split, indices, name
        for attr in ("n_units", "n_steps", "unit_shape", "classes", "dt_us"):
            setattr(self, attr, getattr(split, attr))
        self._labels = np.asarray(split.labels)[indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"SubsetSplit({self.name!r}: {len(self)} of the {len(self.split)} samples of {self.split.name!r})"

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    @property
    def extra_names(self) -> list[str]:
        return list(getattr(self.split, "extra_names", []))

    def extra(self, name: str) -> np.ndarray:
        """A per-sample extra array of the underlying split, restricted to this subset."""
        return np.asarray(self.split.extra(name))[self.indices]

    def read_range(self, start: int, stop: int) -> EventBlock:
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"range [{start}, {stop}) outside subset {self.name!r} of {len(self)} samples")
        ids = self.indices[start:stop]
        if len(ids) == 0:
            empty = np.zeros(0, np.int64)
            return EventBlock(np.zeros(1, np.int64), empty, empty, empty)
        first = int(ids[0])
        block = self.split.read_range(first, int(ids[-1]) + 1)
        local = ids - first
        starts, stops = block.indptr[local], block.indptr[local + 1]
        counts = stops - starts
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        # gather positions of the kept samples' events (vectorised: no loop over samples)
        pos = np.repeat(starts - indptr[:-1], counts) + np.arange(indptr[-1], dtype=np.int64)
        return EventBlock(indptr, block.times[pos], block.units[pos], np.asarray(block.labels)[local])
