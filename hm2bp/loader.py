"""Streaming loader: spike-store split -> dense `[B, T, N]` bool batches on the training device.

Reads go through `Split.read_range` (contiguous sample ranges, one Zarr read per array and block), never per
sample. An epoch's order is a pure function of `(seed, epoch)`, so a resumed run sees exactly the batches of an
uninterrupted one, whatever the prefetching does.

Shuffling (`shuffle=True`): the samples [0, n) are cut into contiguous blocks of `block_size`; the blocks are
visited in a seeded random order and grouped into buffers of about `buffer_samples` samples; within a buffer the
samples are put in a seeded random permutation. Trade-off: memory and read locality vs. randomness. When the whole
split fits in one buffer (`n <= buffer_samples`, e.g. mnist-5k) the order is a full uniform permutation and the
split is read once and kept in memory; otherwise a batch can only mix samples of the same buffer (an epoch is still
a permutation, every sample exactly once), and memory is bounded by one buffer (MNIST at T = 400: ~31 kB of events
per sample, ~130 MB per 4096 samples). The reference implementation does neither: it applies 5000 random pair
swaps to the previous epoch's order (`docs/algorithm.md` §3.15), which for 60 000 samples leaves most samples in
place; a full permutation per epoch is the standard choice and is used here.

Data-parallel sharding (`rank`, `world_size`, see `hm2bp.distributed`): every rank computes the same order and
cuts it into global batches of `world_size * batch_size` samples; this rank's batch is its contiguous share
`rank_bounds(len(global batch), rank, world_size)`. Every rank yields the same number of batches (at the end of an
epoch possibly an empty one), so N ranks at batch B see, batch by batch, the samples one process at N*B sees.

Prefetching: a background thread reads the next blocks and builds the next `prefetch` batches (dense tensors
already on the device) while the caller trains on the current one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from hm2bp.distributed import rank_bounds
from hm2bp.splits import SplitSource

DEFAULT_BLOCK = 256
DEFAULT_BUFFER = 4096


@dataclass
class Batch:
    """One batch. `spikes` bool [B, T, N] and `labels` int64 [B] on the device; `indices` int64 [B] (host numpy):
    the samples' indices in the split (for per-sample state such as boost weights)."""

    spikes: torch.Tensor
    labels: torch.Tensor
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class _Events:
    """Events of an ordered set of samples: sample `sample_ids[k]` is [indptr[k], indptr[k+1])."""

    sample_ids: np.ndarray
    indptr: np.ndarray
    times: np.ndarray
    units: np.ndarray


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> CUDA when available, else CPU; "cuda" without CUDA raises a clear error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available (use `device` cpu or auto)")
    return dev


def dense_from_events(
    indptr: np.ndarray, times: np.ndarray, units: np.ndarray, positions: np.ndarray, n_steps: int, n_units: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """bool [len(positions), n_steps, n_units]: row b holds the events of local sample `positions[b]`."""
    positions = np.asarray(positions, dtype=np.int64)
    starts = indptr[positions]
    counts = indptr[positions + 1] - starts
    total = int(counts.sum())
    # Gather index of every event of the selected samples, and the batch row it goes to (vectorised, no loop).
    offsets = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(total, dtype=np.int64)
    rows = np.repeat(np.arange(len(positions), dtype=np.int64), counts)
    flat = (rows * n_steps + times[offsets].astype(np.int64)) * n_units + units[offsets].astype(np.int64)
    out = torch.zeros(len(positions) * n_steps * n_units, dtype=torch.bool, device=device)
    if total:
        out[torch.from_numpy(flat).to(device, non_blocking=True)] = True
    return out.view(len(positions), n_steps, n_units)


class SpikeLoader:
    """Batches of a store split, sequential (evaluation) or shuffled per epoch (training).

    `limit` uses only the first `limit` samples. The last batch of an epoch may be smaller than `batch_size`.
    `rank`/`world_size` select this rank's share of every global batch (data-parallel training).
    """

    def __init__(
        self,
        split: SplitSource,
        batch_size: int,
        *,
        device: str | torch.device = "cpu",
        shuffle: bool = False,
        seed: int = 0,
        limit: int | None = None,
        block_size: int = DEFAULT_BLOCK,
        buffer_samples: int = DEFAULT_BUFFER,
        prefetch: int = 2,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if block_size < 1 or buffer_samples < 1:
            raise ValueError("block_size and buffer_samples must be >= 1")
        self.split = split
        self.n = len(split) if limit is None else min(int(limit), len(split))
        if self.n <= 0:
            raise ValueError(f"split {getattr(split, 'name', '?')!r} has no samples to load")
        self.batch_size = int(batch_size)
        rank_bounds(0, rank, world_size)  # validates the pair
        self.rank, self.world_size = int(rank), int(world_size)
        self.global_batch = self.batch_size * self.world_size
        self.device = resolve_device(device)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.block_size = int(block_size)
        self.blocks_per_buffer = max(1, int(buffer_samples) // self.block_size)
        self.prefetch = int(prefetch)
        self.n_steps, self.n_units = int(split.n_steps), int(split.n_units)
        self.labels = np.asarray(split.labels[: self.n], dtype=np.int64)
        n_blocks = -(-self.n // self.block_size)
        self._blocks = [(k * self.block_size, min((k + 1) * self.block_size, self.n)) for k in range(n_blocks)]
        self._resident = n_blocks <= self.blocks_per_buffer  # whole split in one buffer: read once, keep it
        self._cache: _Events | None = None

    def __len__(self) -> int:
        return -(-self.n // self.global_batch)

    # ---- order ------------------------------------------------------------------------------------------------

    def _plan(self, epoch: int) -> list[tuple[list[tuple[int, int]], np.ndarray]]:
        """[(blocks of one buffer, sample order within it)] for `epoch`; depends only on (seed, epoch)."""
        if not self.shuffle:
            return [([b], np.arange(*b)) for b in self._blocks]
        rng = np.random.default_rng([self.seed, epoch])
        visit = rng.permutation(len(self._blocks))
        plan = []
        for i in range(0, len(visit), self.blocks_per_buffer):
            blocks = sorted(self._blocks[k] for k in visit[i : i + self.blocks_per_buffer])
            ids = np.concatenate([np.arange(*b) for b in blocks])
            plan.append((blocks, rng.permutation(ids)))
        return plan

    def epoch_order(self, epoch: int = 0) -> np.ndarray:
        """Sample indices of `epoch` in the order they are served, int64 [n]."""
        return np.concatenate([order for _, order in self._plan(epoch)])

    # ---- reading ----------------------------------------------------------------------------------------------

    def _read(self, blocks: list[tuple[int, int]]) -> _Events:
        if self._resident and self._cache is not None:
            return self._cache
        parts = [self.split.read_range(a, b) for a, b in (self._blocks if self._resident else blocks)]
        sizes = np.array([p.indptr[-1] for p in parts], dtype=np.int64)
        shift = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        indptr = np.concatenate([[0]] + [p.indptr[1:] + s for p, s in zip(parts, shift, strict=True)])
        first = self._blocks[0][0] if self._resident else blocks[0][0]
        ids = np.arange(first, first + len(indptr) - 1) if self._resident else np.concatenate(
            [np.arange(a, b) for a, b in blocks])
        events = _Events(ids, indptr.astype(np.int64), np.concatenate([p.times for p in parts]),
                         np.concatenate([p.units for p in parts]))
        if self._resident:
            self._cache = events
        return events

    def _batches(self, epoch: int, stop: threading.Event | None = None) -> Iterator[Batch]:
        """Synchronous batch production (the prefetch thread runs this)."""
        pending: list[tuple[_Events, np.ndarray]] = []  # (events, sample ids) not yet emitted
        n_pending = 0
        plan = self._plan(epoch)
        for k, (blocks, order) in enumerate(plan):
            if stop is not None and stop.is_set():
                return
            events = self._read(blocks)
            pending.append((events, order))
            n_pending += len(order)
            last = k == len(plan) - 1
            while n_pending >= self.global_batch or (last and n_pending > 0):
                take = min(self.global_batch, n_pending)
                yield self._make_batch(pending, take)
                n_pending -= take

    def _make_batch(self, pending: list[tuple[_Events, np.ndarray]], take: int) -> Batch:
        pieces, got = [], 0
        while got < take:
            events, ids = pending[0]
            use = ids[: take - got]
            pieces.append((events, use))
            got += len(use)
            if len(use) == len(ids):
                pending.pop(0)
            else:
                pending[0] = (events, ids[len(use):])
        if self.world_size > 1:
            pieces = _keep_range(pieces, *rank_bounds(take, self.rank, self.world_size))
        spikes = []
        for events, ids in pieces:
            # Sample ids -> positions in this buffer (ids are sorted there: contiguous blocks in ascending order).
            positions = np.searchsorted(events.sample_ids, ids)
            spikes.append(dense_from_events(events.indptr, events.times, events.units, positions,
                                            self.n_steps, self.n_units, self.device))
        if not pieces:  # this rank's share of a short last global batch is empty
            empty = torch.zeros((0, self.n_steps, self.n_units), dtype=torch.bool, device=self.device)
            return Batch(empty, torch.zeros(0, dtype=torch.int64, device=self.device), np.zeros(0, np.int64))
        indices = np.concatenate([ids for _, ids in pieces]).astype(np.int64)
        labels = torch.from_numpy(self.labels[indices]).to(self.device)
        return Batch(spikes[0] if len(spikes) == 1 else torch.cat(spikes), labels, indices)

    # ---- iteration --------------------------------------------------------------------------------------------

    def epoch(self, epoch: int = 0) -> Iterator[Batch]:
        """The batches of `epoch` (its order depends only on seed and epoch), prefetched in a thread."""
        if self.prefetch <= 0:
            yield from self._batches(epoch)
            return
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        done = object()

        def produce() -> None:
            try:
                for batch in self._batches(epoch, stop):
                    while not stop.is_set():
                        try:
                            q.put(batch, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                item = done
            except BaseException as exc:  # forwarded to the consumer
                item = exc
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        thread = threading.Thread(target=produce, name="hm2bp-loader", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join()

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch(0)


def _keep_range(pieces: list[tuple[_Events, np.ndarray]], lo: int, hi: int) -> list[tuple[_Events, np.ndarray]]:
    """The samples at positions [lo, hi) of the concatenated pieces (a rank's share of a global batch)."""
    out, start = [], 0
    for events, ids in pieces:
        a, b = max(lo - start, 0), min(hi - start, len(ids))
        if a < b:
            out.append((events, ids[a:b]))
        start += len(ids)
    return out
