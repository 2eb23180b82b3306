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

Data-parallel sharding (`rank`, `world_size`, see `hm2bp.train.distributed`): every rank computes the same order and
cuts it into global batches of `world_size * batch_size` samples; this rank's batch is its contiguous share
`rank_bounds(len(global batch), rank, world_size)`. Every rank yields the same number of batches (at the end of an
epoch possibly an empty one), so N ranks at batch B see, batch by batch, the samples one process at N*B sees.

Prefetching: a background thread reads the next blocks and builds the next `prefetch` batches while the caller
trains on the current one.

Where the events live (`placement`):
* "host" (CPU training): the thread builds the dense batches in host memory;
* "resident" (CUDA, when the split's events fit in `resident_fraction` of the device's free memory): the split's
  events are uploaded once and each batch is densified on the device from them (`hm2bp.train.device_data`); the host
  only slices the epoch's order, so nothing limits the GPU but the GPU;
* "stream" (CUDA otherwise): the thread gathers each batch's events into pinned host memory (one compiled pass,
  `hm2bp.kernels.gather_events`), the consumer copies them on a side stream without waiting and densifies them on
  the device.
"auto" picks "host" on CPU and "resident" or "stream" on CUDA. With `events=False` (training on augmented images
instead of the stored trains) no batch is densified at all: batches carry labels and indices only.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from hm2bp.kernels import gather_events
from hm2bp.train import device_data
from hm2bp.train.distributed import rank_bounds
from hm2bp.train.splits import SplitSource
from spikedata.raster import dense_from_csr

DEFAULT_BLOCK = 256
DEFAULT_BUFFER = 4096


@dataclass
class Batch:
    """One batch. `spikes` bool [B, T, N] (None when the loader serves no events) and `labels` int64 [B] on the
    device; `indices` int64 [B] (host numpy): the samples' indices in the split (for per-sample state such as boost
    weights), `index_tensor` the same on the device."""

    spikes: torch.Tensor | None
    labels: torch.Tensor
    indices: np.ndarray
    index_tensor: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.index_tensor is None:
            self.index_tensor = torch.from_numpy(self.indices).to(self.labels.device)

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class _HostEvents:
    """A batch's events gathered on the host (pinned), on their way to the device (placement "stream")."""

    indptr: torch.Tensor
    times: torch.Tensor
    units: torch.Tensor
    indices: np.ndarray


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
    """bool [len(positions), n_steps, n_units]: row b holds the events of local sample `positions[b]`. Made on the
    host by spikedata's CSR scatter for a CPU device; on another device the selected events are copied there and
    scattered by `device_data.densify`."""
    dev = torch.device(device)
    if dev.type == "cpu":
        return torch.from_numpy(dense_from_csr(indptr, times, units, positions, n_steps, n_units))
    ptr, t, u = gather_events(indptr, times, units, positions)
    total = int(ptr[-1])
    ptr, t, u = (x.to(dev, non_blocking=True) for x in (ptr, t, u))
    return device_data.densify(ptr, t, u, torch.arange(len(positions), device=dev), total, n_steps, n_units)


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
        placement: str = "auto",
        resident_fraction: float = device_data.DEFAULT_RESIDENT_FRACTION,
        events: bool = True,
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
        self.events = bool(events)
        if placement not in ("auto", "host", "resident", "stream"):
            raise ValueError(f"`placement` must be auto, host, resident or stream; got {placement!r}")
        self.resident_fraction = float(resident_fraction)
        self.placement = self._choose_placement(placement)
        self._device_events: device_data.DeviceEvents | None = None
        self._labels_dev: torch.Tensor | None = None
        self._side_stream = None

    def __len__(self) -> int:
        return -(-self.n // self.global_batch)

    def _choose_placement(self, placement: str) -> str:
        if placement != "auto":
            return placement
        if self.device.type != "cuda":
            return "host"
        n_events = self._n_events()
        nbytes = device_data.event_bytes(n_events, self.n, self.n_steps, self.n_units)
        return "resident" if device_data.fits_on_device(nbytes, self.device, self.resident_fraction) else "stream"

    def _n_events(self) -> int:
        """Events of the first `n` samples (from the split's `indptr` when it has one, else by reading)."""
        indptr = getattr(self.split, "indptr", None)
        if indptr is not None:
            return int(indptr[self.n] - indptr[0])
        return int(sum(self.split.read_range(a, b).indptr[-1] for a, b in self._blocks))

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

    def _make_batch(self, pending: list[tuple[_Events, np.ndarray]], take: int) -> Batch | _HostEvents:
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
        indices = np.concatenate([ids for _, ids in pieces]).astype(np.int64) if pieces else np.zeros(0, np.int64)
        # Sample ids -> positions in their buffer (ids are sorted there: contiguous blocks in ascending order).
        located = [(events, np.searchsorted(events.sample_ids, ids)) for events, ids in pieces]
        if self.events and self.placement == "stream":
            parts = [gather_events(e.indptr, e.times, e.units, pos, pin=self.device.type == "cuda")
                     for e, pos in located]
            if len(parts) == 1:
                return _HostEvents(*parts[0], indices)
            sizes = [int(p[0][-1]) for p in parts]
            shift = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            indptr = torch.cat([torch.zeros(1, dtype=torch.int64)] + [p[0][1:] + int(s) for p, s in
                                                                       zip(parts, shift, strict=True)])
            return _HostEvents(indptr, torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts]), indices)
        labels = torch.from_numpy(self.labels[indices]).to(self.device)
        if not self.events:
            return Batch(None, labels, indices)
        if not pieces:  # this rank's share of a short last global batch is empty
            empty = torch.zeros((0, self.n_steps, self.n_units), dtype=torch.bool, device=self.device)
            return Batch(empty, labels, indices)
        spikes = [dense_from_events(e.indptr, e.times, e.units, pos, self.n_steps, self.n_units, self.device)
                  for e, pos in located]
        return Batch(spikes[0] if len(spikes) == 1 else torch.cat(spikes), labels, indices)

    def _upload(self, host: _HostEvents) -> Batch:
        """A streamed batch on the device: asynchronous copies on a side stream, densified on the current one."""
        dev = self.device
        if dev.type == "cuda":
            if self._side_stream is None:
                self._side_stream = torch.cuda.Stream(dev)
            main = torch.cuda.current_stream(dev)
            self._side_stream.wait_stream(main)  # the copy may not overwrite memory the step still reads
            with torch.cuda.stream(self._side_stream):
                parts = [t.to(dev, non_blocking=True) for t in (host.indptr, host.times, host.units)]
                index = torch.from_numpy(host.indices).pin_memory().to(dev, non_blocking=True)
            main.wait_stream(self._side_stream)
            for t in (*parts, index):
                t.record_stream(main)
        else:
            parts = [host.indptr, host.times, host.units]
            index = torch.from_numpy(host.indices)
        n = len(host.indices)
        spikes = device_data.densify(*parts, torch.arange(n, device=dev), int(host.indptr[-1]), self.n_steps,
                                     self.n_units)
        return Batch(spikes, self._device_labels()[index], host.indices, index)

    def _device_labels(self) -> torch.Tensor:
        if self._labels_dev is None:
            self._labels_dev = torch.from_numpy(self.labels).to(self.device)
        return self._labels_dev

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        """This rank's sample indices of every batch of `epoch` (consecutive global batches of `epoch_order`)."""
        order = self.epoch_order(epoch)
        out = []
        for g in range(0, self.n, self.global_batch):
            ids = order[g: g + self.global_batch]
            out.append(ids[slice(*rank_bounds(len(ids), self.rank, self.world_size))])
        return out

    def _resident_batches(self, epoch: int) -> Iterator[Batch]:
        """Batches densified on the device from the split's events uploaded once (placement "resident")."""
        dev = self.device
        if self._device_events is None:
            events = self._read(self._blocks) if self._resident else self._read_all()
            self._device_events = device_data.DeviceEvents.upload(events.indptr, events.times, events.units,
                                                                  self.n_steps, self.n_units, dev)
            self._host_counts = np.diff(events.indptr)
        per_batch = self.batch_indices(epoch)
        everything = np.concatenate(per_batch) if per_batch else np.zeros(0, np.int64)
        order = torch.from_numpy(everything)
        order = (order.pin_memory() if dev.type == "cuda" else order).to(dev, non_blocking=True)
        labels = self._device_labels()
        ev = self._device_events
        start = 0
        for ids in per_batch:
            pos = order[start: start + len(ids)]
            start += len(ids)
            spikes = None
            if self.events:
                total = int(self._host_counts[ids].sum())
                spikes = device_data.densify(ev.indptr, ev.times, ev.units, pos, total, self.n_steps, self.n_units)
            yield Batch(spikes, labels[pos], ids, pos)

    def _read_all(self) -> _Events:
        """Every sample's events, read block by block (the resident upload of a split larger than one buffer)."""
        parts = [self.split.read_range(a, b) for a, b in self._blocks]
        sizes = np.array([p.indptr[-1] for p in parts], dtype=np.int64)
        shift = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        indptr = np.concatenate([[0]] + [p.indptr[1:] + s for p, s in zip(parts, shift, strict=True)])
        return _Events(np.arange(self.n), indptr.astype(np.int64), np.concatenate([p.times for p in parts]),
                       np.concatenate([p.units for p in parts]))

    # ---- iteration --------------------------------------------------------------------------------------------

    def epoch(self, epoch: int = 0) -> Iterator[Batch]:
        """The batches of `epoch` (its order depends only on seed and epoch), prefetched in a thread (resident
        events need none: every batch is made by device operations the host only enqueues)."""
        if self.placement == "resident":
            yield from self._resident_batches(epoch)
            return
        for item in self._prefetched(epoch):
            yield self._upload(item) if isinstance(item, _HostEvents) else item

    def _prefetched(self, epoch: int) -> Iterator[Batch | _HostEvents]:
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
