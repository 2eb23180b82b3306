"""One writer per path: an OS lock (`fcntl.flock`) on a lock file, shared by the store writer and the trainer's
run directories.

`PathLock(target, lock_file)` takes an exclusive, non-blocking flock on `lock_file` and writes the holder's PID
into it. A second writer (another process) fails at once with a `LockError` naming the holder's PID. The kernel
drops a flock when its holder dies, however it dies (SIGKILL included), so a lock file left by a dead process is
simply taken over; `recovered_from` then holds the dead holder's PID. On release the lock file is removed; a
waiter that opened the old file notices (its inode is no longer the path's) and retries, so two processes can
never both hold "the" lock. flock works on local file systems and on NFS (Linux emulates it with POSIX locks).

`reentrant=True` lets the process that holds the lock take it again (counted): used for run directories, whose
trainer object may outlive a run inside one process (tests, notebooks); between processes it is always exclusive.
"""

from __future__ import annotations

import errno
import fcntl
import os
import weakref
from pathlib import Path

from spikedata.errors import SpikedataError

# Lock files held by this process (weak: a holder object that is dropped releases its lock).
_HELD: weakref.WeakValueDictionary[str, PathLock] = weakref.WeakValueDictionary()


class LockError(SpikedataError, RuntimeError):
    """Another process is writing the same path; the message names it and its PID."""


def sibling_lock_file(path: str | os.PathLike) -> Path:
    """The lock file of `path` beside it: `.NAME.lock` (used where `path` itself is replaced by a rename)."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


def pid_alive(pid: int) -> bool:
    """True when a process with this PID exists (it may belong to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


class PathLock:
    """Exclusive lock of `target` (what it protects, for messages) through `lock_file`. Use `with` or acquire()."""

    def __init__(self, target: str | os.PathLike, lock_file: str | os.PathLike | None = None, what: str = "path",
                 reentrant: bool = False):
        self.target = Path(target)
        self.lock_file = Path(lock_file) if lock_file is not None else sibling_lock_file(target)
        self.what = what
        self.reentrant = reentrant
        self.recovered_from: int | None = None
        self._fd: int | None = None
        self._count = 0

    @property
    def held(self) -> bool:
        return self._fd is not None or self._count > 0

    def acquire(self) -> PathLock:
        key = str(self.lock_file.resolve())
        other = _HELD.get(key)
        if other is not None:
            if self.reentrant and other.reentrant:
                other._count += 1
                self._count, self._fd = -1, None  # marks a nested hold of `other`
                self._nested = other
                return self
            raise LockError(f"{self.target}: {self.what} is already being written by this process (PID "
                            f"{os.getpid()}, lock file {self.lock_file})")
        for _attempt in range(20):
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_pid(fd)
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise LockError(f"{self.target}: cannot lock {self.lock_file} ({exc})") from exc
                who = f"process {holder}" if holder is not None else "another process"
                raise LockError(f"{self.target}: {self.what} is being written by {who} (lock file "
                                f"{self.lock_file}); wait for it to finish or stop it") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_file).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed the file between our open and our lock: retry
                os.close(fd)
                continue
            previous = _read_pid(fd)
            if previous is not None and previous != os.getpid():
                self.recovered_from = previous  # it held the file but not the lock: it is gone
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd, self._count = fd, 1
            _HELD[key] = self
            return self
        raise LockError(f"{self.target}: could not take the lock {self.lock_file} (it keeps being replaced)")

    def release(self) -> None:
        if self._count == -1:  # nested hold
            self._nested.release()
            self._count = 0
            return
        if self._fd is None:
            return
        self._count -= 1
        if self._count > 0:
            return
        _HELD.pop(str(self.lock_file.resolve()), None)
        try:
            self.lock_file.unlink(missing_ok=True)  # while still holding it: waiters see a new inode and retry
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> PathLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:  # a holder object that is dropped releases its lock
        try:
            if self._fd is not None:
                self._count = 1
                self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
