"""A run directory: the files a training run writes and the lock that lets one process at a time write them.

A run directory holds `run.json`, `metrics.jsonl`, `learning_curve.png`, `last.pt`, `best.pt`; every file is
replaced atomically, so a run killed at any moment can be read and resumed from `last.pt`. One process at a time
writes a run directory: it holds the lock `.lock` in it (`spikedata.locking`; a second `hm2bp fit` gets an error
naming the holder's PID, a lock left by a killed run is taken over).
"""

from __future__ import annotations

from pathlib import Path

from hm2bp.errors import SetupError
from spikedata.locking import PathLock

LAST, BEST = "last.pt", "best.pt"
METRICS, CURVE, RUN_INFO = "metrics.jsonl", "learning_curve.png", "run.json"
RUN_LOCK = ".lock"
#: Every file of a run, `LAST` first (deleting in this order, the directory never looks resumable half-way).
RUN_FILES = (LAST, BEST, METRICS, CURVE, RUN_INFO)


class RunLock:
    """The lock of a run directory (`RUN_LOCK` inside it); creating the directory is part of taking it, and a
    directory this lock created is removed again when the set-up fails before anything was written into it."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self._created = False
        self._lock = PathLock(run_dir, run_dir / RUN_LOCK, what="the run directory", reentrant=True)

    def acquire(self) -> None:
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise SetupError(f"`run_dir` {self.run_dir} is a file, not a run directory")
        self._created = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()

    def release(self) -> None:
        if not self._lock.held:
            return
        self._lock.release()
        if self._created:
            try:
                self.run_dir.rmdir()  # only when empty: a run that wrote nothing leaves nothing
            except OSError:
                pass
            self._created = False
