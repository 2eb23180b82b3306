"""The Heidelberg spiking datasets, SHD and SSC (Cramer et al.; `data_manifests/shd.toml`, `ssc.toml`): spikes of a
cochlea model's 700 channels, published as one HDF5 file per split, gzipped (`shd_train.h5.gz`) or unpacked.

Layout of each file (read with h5py)::

    spikes/times   variable-length float [n]   spike times of sample i, seconds from the recording's start
    spikes/units   variable-length int   [n]   their channels, 0 <= unit < 700
    labels         int [n]
    extra/speaker  int [n]                     optional: stored per sample as the `speaker` extra
    extra/keys     str [n_classes]             optional: class names in label order (else the manifest's)

Files: SHD `shd_train.h5`, `shd_test.h5`; SSC `ssc_train.h5`, `ssc_valid.h5` (the store's `valid` split),
`ssc_test.h5`. A gzipped file is decompressed once into a hidden temporary file beside the output (HDF5 needs
random access) and removed afterwards, whatever happens. Binning them into a store:
`spikedata.datasets.shared.heidelberg_encoding`.

Every problem -- not HDF5, truncated, a missing dataset, arrays of different lengths, a negative or non-finite
time, a unit >= 700, a label outside the classes -- is a :class:`DatasetError` naming the file (and the sample).
libhdf5 crashes or loops on some damaged files: `vet_file` reads a file once in a child process first.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import shutil
import signal
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from spikedata.errors import DatasetError

__all__ = [
    "DATASETS", "N_UNITS", "HeidelbergFile", "check_layout", "default_dt_us", "default_steps", "expected_counts",
    "find_files", "heidelberg_manifest", "longest_time_us", "open_hdf5", "probe_heidelberg", "read_block",
    "unpacked", "vet_file",
]  # fmt: skip

DATASETS = ("shd", "ssc")
N_UNITS = 700
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_GZIP_MAGIC = b"\x1f\x8b"
_REQUIRED = ("spikes/times", "spikes/units", "labels")
#: Samples read per h5py call when scanning a whole file.
_SCAN_BLOCK = 1024


class HeidelbergFile(NamedTuple):
    """What :func:`probe_heidelberg` found in one file: its sample count, class names (None without
    extra/keys), whether it has extra/speaker, and the largest label."""

    path: Path
    n_samples: int
    classes: list[str] | None
    has_speaker: bool
    max_label: int


def heidelberg_manifest(dataset: str):
    """The manifest of `dataset` ("shd" or "ssc"; DatasetError otherwise)."""
    from spikedata.manifest import load_manifest

    if dataset not in DATASETS:
        raise DatasetError(f"unknown Heidelberg dataset {dataset!r}; expected one of {DATASETS}")
    return load_manifest(dataset)


def find_files(source: str | os.PathLike, dataset: str) -> tuple[dict[str, Path], list[str]]:
    """The split files of `dataset` under `source` (`<name>.h5` preferred over `<name>.h5.gz`; names matched
    ignoring case), in the manifest's split order, and the names of the splits not found."""
    root = Path(source)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory (expected the {dataset.upper()} files, see "
                           f"data_manifests/{dataset}.toml)")
    present = {p.name.lower(): p for p in root.iterdir() if p.is_file()}
    found, missing = {}, []
    for split, spec in heidelberg_manifest(dataset).splits.items():
        name = spec["file"].lower()
        path = present.get(name) or present.get(name + ".gz")
        if path is None:
            missing.append(split)
        else:
            found[split] = path
    if not found:
        wanted = ", ".join(f"{spec['file']}[.gz]" for spec in heidelberg_manifest(dataset).splits.values())
        listing = ", ".join(sorted(p.name for p in present.values())[:8]) or "nothing"
        raise DatasetError(f"{root}: none of {wanted} found (the directory holds {listing}); see "
                           f"data_manifests/{dataset}.toml")
    return found, missing


def _kind(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot open ({exc.strerror})") from None
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head == _HDF5_MAGIC:
        return "hdf5"
    raise DatasetError(f"{path}: not an HDF5 file nor a gzipped one (first bytes {head!r}); expected the published "
                       "shd_*/ssc_* .h5 or .h5.gz files")


@contextlib.contextmanager
def unpacked(path: str | os.PathLike, tmp_dir: str | os.PathLike | None = None) -> Iterator[Path]:
    """The plain HDF5 file of `path`: itself, or -- for a gzipped file -- a hidden temporary copy decompressed into
    `tmp_dir` (default: the system's temporary directory), removed when the context ends."""
    path = Path(path)
    if _kind(path) == "hdf5":
        yield path
        return
    folder = Path(tmp_dir) if tmp_dir is not None else Path(tempfile.gettempdir())
    tmp = folder / f".{path.name.removesuffix('.gz')}.unpacked-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        try:
            with gzip.open(path, "rb") as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise DatasetError(f"{path}: cannot decompress ({exc}); the download is truncated or corrupt") from None
        with open(tmp, "rb") as fh:
            head = fh.read(8)
        if head != _HDF5_MAGIC:  # named after the file the user gave, not the temporary copy
            raise DatasetError(f"{path}: the gzip does not hold an HDF5 file (its content starts {head!r}); "
                               "expected the published shd_*/ssc_* .h5 or .h5.gz files")
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def open_hdf5(path: Path, where: str):
    """`path` opened read-only with h5py; a file it cannot open is a DatasetError naming `where`."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"{where}: cannot read as HDF5 ({exc}); the file is truncated or corrupt") from None


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _has(f, name: str) -> bool:
    """Whether `name` is a dataset of `f` (false, not an exception, when a path component is a dataset)."""
    import h5py

    try:
        return isinstance(f.get(name), h5py.Dataset)
    except (KeyError, TypeError, ValueError, OSError, RuntimeError):
        return False


def check_layout(f, where: str) -> HeidelbergFile:
    """The checks of :func:`probe_heidelberg` on an open file; h5py's errors on damaged data become
    DatasetErrors naming `where`."""
    try:
        return _check_layout_unguarded(f, where)
    except DatasetError:
        raise
    except (OSError, RuntimeError, ValueError, TypeError, KeyError) as exc:
        raise DatasetError(f"{where}: cannot read the file's arrays ({type(exc).__name__}: {exc}); it is "
                           "damaged") from None


def _check_layout_unguarded(f, where: str) -> HeidelbergFile:
    import h5py

    for name in _REQUIRED:
        if not _has(f, name):
            raise DatasetError(f"{where}: dataset {name!r} is missing (has {sorted(_names(f))}); not an SHD/SSC file")
    times, units, labels = (f[n] for n in _REQUIRED)
    for name, ds, kinds in (("spikes/times", times, "f"), ("spikes/units", units, "iu")):
        base = h5py.check_vlen_dtype(ds.dtype)
        if ds.ndim != 1 or base is None or base.kind not in kinds:
            what = "float" if kinds == "f" else "integer"
            raise DatasetError(f"{where}: {name} must be a 1-D variable-length {what} array; it is {ds.dtype} "
                               f"{ds.shape}")
    n = times.shape[0]
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetError(f"{where}: labels must be a 1-D integer array; it is {labels.dtype} {labels.shape}")
    for name, ds in (("spikes/units", units), ("labels", labels)):
        if ds.shape[0] != n:
            raise DatasetError(f"{where}: {name} has {ds.shape[0]} entries, spikes/times {n}")
    has_speaker = _has(f, "extra/speaker")
    if has_speaker and (f["extra/speaker"].ndim != 1 or f["extra/speaker"].shape[0] != n):
        raise DatasetError(f"{where}: extra/speaker has shape {f['extra/speaker'].shape}, expected ({n},)")
    classes = None
    if _has(f, "extra/keys"):
        keys = f["extra/keys"][()]
        classes = [_text(k) for k in np.atleast_1d(keys)]
        if len(set(classes)) != len(classes) or not all(classes):
            raise DatasetError(f"{where}: extra/keys {classes} are not distinct non-empty class names")
    lab = labels[()] if n else np.zeros(0, np.int64)
    max_label = int(lab.max()) if n else -1
    if n and int(lab.min()) < 0:
        raise DatasetError(f"{where}: label {int(lab.min())} at sample {int(np.argmin(lab))} is negative")
    if classes is not None and max_label >= len(classes):
        raise DatasetError(f"{where}: label {max_label} at sample {int(np.argmax(lab))} but extra/keys names only "
                           f"{len(classes)} classes")
    return HeidelbergFile(Path(f.filename), n, classes, has_speaker, max_label)


def _names(f) -> list[str]:
    out: list[str] = []
    f.visit(out.append)
    return out


def probe_heidelberg(path: str | os.PathLike) -> HeidelbergFile:
    """Check one file's layout without reading its spikes (cheap: a fuzzer's plausibility check): HDF5 (or gzipped
    HDF5), the datasets and dtypes of the module docstring, equal lengths, labels within extra/keys."""
    path = Path(path)
    with unpacked(path) as plain, open_hdf5(plain, str(path)) as f:
        info = check_layout(f, str(path))
    return info._replace(path=path)


def read_block(f, start: int, stop: int, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, times s float64, units int64) of samples [start, stop) of an open file."""
    try:
        times = f["spikes/times"][start:stop]
        units = f["spikes/units"][start:stop]
    except (OSError, ValueError, RuntimeError, TypeError) as exc:  # h5py's errors on damaged chunks
        raise DatasetError(f"{where}: cannot read spikes of samples [{start}, {stop}) ({exc})") from None
    counts = np.fromiter((len(t) for t in times), np.int64, len(times))
    lengths = np.fromiter((len(u) for u in units), np.int64, len(units))
    if not np.array_equal(counts, lengths):
        i = int(np.flatnonzero(counts != lengths)[0])
        raise DatasetError(f"{where}: sample {start + i} has {counts[i]} spike times but {lengths[i]} units")
    indptr = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    if indptr[-1]:
        t = np.concatenate(times).astype(np.float64, copy=False)
        u = np.concatenate(units).astype(np.int64, copy=False)
    else:
        t, u = np.zeros(0, np.float64), np.zeros(0, np.int64)
    return indptr, t, u


def longest_time_us(path: str | os.PathLike, where: str | None = None) -> float:
    """Latest spike time in µs over every sample of a plain HDF5 file (0 when there is none); checks the times."""
    where = where or str(path)
    with open_hdf5(Path(path), where) as f:
        n = check_layout(f, where).n_samples
        latest = 0.0
        for start in range(0, n, _SCAN_BLOCK):
            stop = min(n, start + _SCAN_BLOCK)
            indptr, t, _ = read_block(f, start, stop, where)
            bad = np.flatnonzero(~np.isfinite(t) | (t < 0))
            if len(bad):
                i = int(np.searchsorted(indptr, bad[0], side="right")) - 1
                raise DatasetError(f"{where}: sample {start + i}: time {float(t[bad[0]])!r} s is negative or not "
                                   "finite")
            if len(t):
                latest = max(latest, float(t.max()) * 1e6)
    return latest


def _read_all(path: str, where: str) -> float:
    """Read every sample's spikes (the values are checked later, by the encoder); the latest finite time in µs."""
    latest = 0.0
    with open_hdf5(Path(path), where) as f:
        n = check_layout(f, where).n_samples
        for start in range(0, n, _SCAN_BLOCK):
            _, t, _ = read_block(f, start, min(n, start + _SCAN_BLOCK), where)
            t = t[np.isfinite(t)]
            if len(t):
                latest = max(latest, float(t.max()) * 1e6)
    return latest


_VETTED: dict[tuple[str, float], float] = {}


def _vet_child(reader, path: str, where: str, conn, limit_s: float) -> None:
    # the child ends itself shortly after the parent's limit: a parent killed while it waits (Ctrl-C twice, the
    # OOM killer) must not leave a process looping in libhdf5 behind. SIGALRM's default action ends the process
    # even inside a C loop that never returns to Python.
    if hasattr(signal, "alarm"):
        signal.alarm(int(math.ceil(limit_s)) + 5)
    try:
        conn.send(("ok", reader(path, where)))
    except DatasetError as exc:
        conn.send(("error", exc))
    except Exception as exc:  # noqa: BLE001  (h5py's many error types on damaged files)
        conn.send(("error", DatasetError(f"{where}: cannot read it ({type(exc).__name__}: {exc})")))


def vet_file(path: str | os.PathLike, where: str | None = None, reader=_read_all,
             timeout_s: float | None = None) -> float:
    """Read every sample of a plain HDF5 file once in a child process; returns its latest finite spike time (µs).

    libhdf5 can crash the process (a segmentation fault) or loop on some damaged files instead of raising an error;
    a crash of the child, or a read that does not end within `timeout_s` (default: 30 s + 1 s per 10 MB), becomes a
    `DatasetError` naming the file here, so a damaged download never takes the encoder down with it. Errors the
    reading raises come back as `DatasetError`s. Once per file and modification. `reader(path, where)` is what the
    child runs (an importable function)."""
    import multiprocessing

    where = where or str(path)
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_mtime)
    if key in _VETTED:
        return _VETTED[key]
    limit = timeout_s if timeout_s is not None else 30.0 + stat.st_size / 10e6
    # fork where there is one: no re-import of the program in the child (fast, and safe: this process runs no
    # threads of its own while it vets)
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_vet_child, args=(reader, str(path), where, send, limit), daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(limit):
            child.kill()
            raise DatasetError(f"{where}: reading it did not finish within {limit:.0f} s: the file is damaged "
                               "(download it again)")
        try:
            kind, value = receive.recv()
        except EOFError:  # the child died without an answer
            kind, value = "crash", None
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
        receive.close()
    if kind == "crash":
        raise DatasetError(f"{where}: the HDF5 library crashed while reading it (exit status {child.exitcode}): "
                           "the file is damaged (download it again)")
    if kind == "error":
        raise value
    _VETTED[key] = value
    return value


def default_steps(dataset: str) -> int:
    """The stated cut-off of `dataset` in steps of its default bin (data_manifests/<dataset>.toml)."""
    return int(heidelberg_manifest(dataset).layout["n_steps"])


def default_dt_us(dataset: str) -> int:
    """The default bin of `dataset` in µs (data_manifests/<dataset>.toml)."""
    return int(heidelberg_manifest(dataset).layout["dt_us"])


def expected_counts(dataset: str) -> dict[str, int]:
    """Samples per split of the published files (data_manifests/<dataset>.toml)."""
    return {split: int(spec["n_samples"]) for split, spec in heidelberg_manifest(dataset).splits.items()}
