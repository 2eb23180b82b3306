"""A store split as a torch `Dataset`, for code that trains with its own loop (`torch.utils.data.DataLoader`).

`SpikeDataset(store, "train")[i]` is `(spikes bool [T, N], label int64)`; `collate_dense` stacks a batch into
`(spikes bool [B, T, N], labels int64 [B])`. The dataset pickles as its store path and split name and reopens
the store (verified as `open_store` does) in each worker process, so `DataLoader(..., num_workers=K)` works with
any start method. hm2bp's own trainer reads stores through `hm2bp.train.loader` instead (sparse events, shuffle
buffers, device-resident data).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from spikedata.store import SpikeStore, open_store


class SpikeDataset(torch.utils.data.Dataset):
    """Split `split` of a spike store (a path, an fsspec URL or an open `SpikeStore`) as a map-style dataset:
    item `i` -> `(spikes bool [T, N], label)`, `T` steps of `dt_us` µs, `N` units. `storage_options` go to fsspec
    for URLs."""

    def __init__(self, store: str | os.PathLike | SpikeStore, split: str = "train",
                 storage_options: dict[str, Any] | None = None) -> None:
        opened = store if isinstance(store, SpikeStore) else open_store(store, storage_options)
        if split not in opened.splits:
            raise KeyError(f"{opened.path}: no split {split!r}; the store has splits {opened.splits}")
        self.path, self.split_name, self.storage_options = opened.path, split, storage_options
        self._split = opened[split]
        self.n_steps, self.n_units, self.dt_us = self._split.n_steps, self._split.n_units, self._split.dt_us
        self.unit_shape, self.classes = tuple(self._split.unit_shape), list(self._split.classes)
        self.labels = np.asarray(self._split.labels, dtype=np.int64)

    @property
    def split(self):
        """The open `spikedata` split (reopened on first use in a worker process)."""
        if self._split is None:
            self._split = open_store(self.path, self.storage_options)[self.split_name]
        return self._split

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        raster, label = self.split[int(i)]
        return torch.from_numpy(raster), int(label)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        """A whole batch in one read (torch's DataLoader calls this for batched sampling)."""
        idx = [int(i) for i in indices]
        for i in idx:
            if not -len(self) <= i < len(self):
                raise IndexError(f"sample {i} out of range for split {self.split_name!r} of {len(self)} samples")
        rasters = torch.from_numpy(self.split.dense([i % len(self) for i in idx]))
        return [(rasters[k], int(self.labels[i])) for k, i in enumerate(idx)]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_split": None}  # workers reopen the store by path

    def __repr__(self) -> str:
        return f"SpikeDataset({str(self.path)!r}, split={self.split_name!r}, samples={len(self)})"


def collate_dense(batch: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """`[(spikes bool [T, N], label), ...]` -> `(spikes bool [B, T, N], labels int64 [B])` (DataLoader's
    `collate_fn`; hm2bp's `Network` takes the rasters as they are)."""
    if not batch:
        raise ValueError("collate_dense: empty batch")
    spikes = torch.stack([s if s.dtype == torch.bool else s != 0 for s, _ in batch])
    return spikes, torch.tensor([int(label) for _, label in batch], dtype=torch.int64)
