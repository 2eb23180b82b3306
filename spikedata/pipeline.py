"""Encode datasets into spike stores: chunked, optionally parallel, deterministic, with a progress bar.

A dataset encoder supplies, per split, a picklable `encode_range(start, stop) -> EventBlock`. The pipeline cuts
every split into chunks, runs them on `workers` processes, and writes the blocks in sample order through
:class:`spikedata.store.StoreWriter`. Because every block depends only on its sample indices (and the seed inside
`encode_range`), the store's bytes do not depend on the number of workers.

Worker processes die with their parent: on Linux the kernel sends them SIGKILL when the parent dies
(`PR_SET_PDEATHSIG`), and everywhere a watchdog thread in each worker exits once its parent is gone. Ctrl-C is the
parent's alone: workers are started with SIGINT blocked (a terminal sends it to the whole process group, and each
worker would print its own KeyboardInterrupt traceback), and an interrupted encode stops without waiting for them;
the store writer removes what was written (nothing is left at the output). Project errors
raised in a worker reach the parent unchanged (they pickle by state, `spikedata.errors`); a worker that dies
(signal, abort) ends the encode with a `WorkerError` that names the split and the samples it was encoding.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import multiprocessing
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from spikedata.errors import SpikedataError
from spikedata.store import EventBlock, StoreWriter

_PR_SET_PDEATHSIG = 1


class WorkerError(SpikedataError, RuntimeError):
    """An encoding worker process died (killed, crashed or aborted) instead of returning a block or an error."""


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def _worker_init(parent: int) -> None:
    """Initializer of every encoding worker: die with the parent process (see the module docstring)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="spikedata-parent-watch", daemon=True).start()


@dataclass
class SplitJob:
    """What to encode for one split: `n_samples` samples, produced in chunks by `encode_range(start, stop)`."""

    n_samples: int
    encode_range: Callable[[int, int], EventBlock]
    chunk: int = 256


def dense_to_block(raster: np.ndarray, labels: np.ndarray, **kwargs: Any) -> EventBlock:
    """CSR block from dense rasters bool [k, T, N] (events come out sorted by (time, unit))."""
    k = raster.shape[0]
    sample, times, units = np.nonzero(raster)
    counts = np.bincount(sample, minlength=k)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return EventBlock(indptr, times, units, np.asarray(labels), **kwargs)


def created_by() -> dict[str, str]:
    """Provenance: package version, Python, platform and the command line."""
    try:
        pkg = version("spikedata-hm2bp")
    except PackageNotFoundError:
        pkg = "unknown (not installed)"
    return {
        "package": "spikedata",
        "version": pkg,
        "python": platform.python_version(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread while a worker may be started: a child inherits the mask (a Ctrl-C meanwhile
    is delivered when it ends)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _submit(pool: ProcessPoolExecutor, fn: Callable, *args: Any) -> Future:
    with _sigint_blocked():  # submit may start a worker process
        return pool.submit(fn, *args)


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _iter_blocks(job: SplitJob, pool: ProcessPoolExecutor | None, window: int,
                 name: str = "") -> Iterator[tuple[int, EventBlock]]:
    """Blocks in sample order; at most `window` chunks in flight so memory stays bounded."""
    ranges = _chunks(job.n_samples, max(1, job.chunk))
    if pool is None:
        for start, stop in ranges:
            yield stop - start, job.encode_range(start, stop)
        return
    pending: list[tuple[int, Future]] = []
    it = iter(ranges)
    for start, stop in it:
        pending.append((stop - start, _submit(pool, job.encode_range, start, stop)))
        if len(pending) >= window:
            break
    done = 0
    while pending:
        size, fut = pending.pop(0)
        nxt = next(it, None)
        try:
            if nxt is not None:
                pending.append((nxt[1] - nxt[0], _submit(pool, job.encode_range, *nxt)))
            block = fut.result()
        except BrokenProcessPool as exc:
            raise WorkerError(f"an encoding worker process died while encoding split {name!r} (samples from "
                              f"{done} on): it was killed or crashed; run with --workers 1 to see the error of "
                              "the sample that causes it") from exc
        done += size
        yield size, block


def encode_to_store(
    out: str | os.PathLike,
    attrs: dict[str, Any],
    jobs: dict[str, SplitJob],
    workers: int = 1,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Encode every split of `jobs` into a new store at `out` (atomic: nothing is left at `out` on failure).

    `attrs` are the root attributes of docs/store.md (dataset, encoder, n_units, unit_shape, n_steps, dt_us, classes,
    seed, source); `created_by` is added here. Returns the store path.
    """
    from spikedata.progress import progress_bar

    attrs = {**attrs, "created_by": created_by()}
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    pool = None
    if workers > 1:
        # spawn, not fork: numba's threading layer is not fork-safe once it has run.
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_init, initargs=(os.getpid(),))
    interrupted = False
    try:
        with StoreWriter(out, attrs, overwrite=overwrite) as writer, progress_bar(progress) as bar:
            for name, job in jobs.items():
                split = writer.split(name)
                task = bar.add_task(f"encode {name}", total=job.n_samples)
                for size, block in _iter_blocks(job, pool, window=2 * workers + 2, name=name):
                    split.append(block.indptr, block.times, block.units, block.labels, block.extras, block.stats)
                    bar.advance(task, size)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if pool is not None:  # interrupted: the workers' chunks are not waited for (they die with this process)
            pool.shutdown(wait=not interrupted, cancel_futures=True)
    return Path(out)
