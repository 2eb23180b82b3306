"""Download a dataset's files as its manifest lists them: resumable, verified, atomic.

Every download goes to `NAME.part` beside its final name and resumes from there (HTTP Range) after an interruption,
whether within one call (`retries`) or in a later call. Only a file whose size and sha256 match the manifest is
renamed to its final name, so nothing partial or unverified ever lies under the final name. Files that the source
distributes inside an archive (EMNIST's gzip.zip) are extracted from it and verified member by member.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from spikedata.checksum import file_digests
from spikedata.errors import SpikedataError
from spikedata.manifest import ArchiveEntry, FileEntry, Manifest, load_manifest

#: Default root for downloaded datasets (`<root>/<name>/`); override with $SPIKEDATA_DATA.
DATA_ENV = "SPIKEDATA_DATA"
USER_AGENT = "Mozilla/5.0 (compatible; spikedata-fetch/0.1)"
CHUNK = 1 << 20
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError)


class FetchError(SpikedataError, RuntimeError):
    """A dataset cannot be fetched: licensed, unreachable, or the downloaded bytes do not match the manifest."""


class _Restart(Exception):
    """The server ignored or refused our Range request: the partial file must be discarded."""


@dataclass(frozen=True)
class FetchResult:
    """Where the dataset lies and what happened to each file ("present", "downloaded", "extracted")."""

    dest: Path
    files: dict[str, str]


def default_dest(name: str) -> Path:
    """`$SPIKEDATA_DATA/<name>`, default `~/.cache/spikedata/<name>`."""
    root = os.environ.get(DATA_ENV) or Path.home() / ".cache" / "spikedata"
    return Path(root).expanduser() / name


def licensed_message(manifest: Manifest, dest: Path | None = None) -> str:
    """What a user must do to obtain a dataset that has no public download (licensed, or behind a download form):
    why, the manifest's `obtain` text and, unless that says it, where to point `spikedata encode`."""
    why = (f"its distributor hands the files out through a download form, after you accept its terms (licence: "
           f"{manifest.license})" if manifest.access == "form" else f"licence {manifest.license}")
    obtain = (manifest.obtain or "").strip()
    text = f"{manifest.title} ({manifest.name}) cannot be downloaded automatically: {why}. {obtain}"
    if "source" in obtain:  # the manifest says where to point the encode
        return text
    names = ", ".join(f.name for f in manifest.files if not f.optional)
    where = f" into {dest}" if dest is not None else ""
    return (text + f" Then put its files{where}" + (f" ({names})" if names else "")
            + f" and pass that directory as `source` to `spikedata encode {manifest.name}`.")


def fetch(
    name_or_manifest: str | os.PathLike | Manifest,
    dest: str | os.PathLike | None = None,
    mirror: str | None = None,
    include_optional: bool = False,
    progress: bool = True,
    retries: int = 3,
    keep_archives: bool = False,
    timeout: float = 60.0,
) -> FetchResult:
    """Fetch every (non-optional, unless `include_optional`) file of a dataset into `dest`.

    `mirror`: a base URL tried instead of the manifest's sources, as `mirror/<file name>` (archive members are
    then fetched directly by name). Raises :class:`FetchError` with a clear message when the dataset is licensed,
    every source fails (the `.part` file is kept for resuming), or a checksum does not match (nothing is kept).
    """
    manifest = name_or_manifest if isinstance(name_or_manifest, Manifest) else load_manifest(name_or_manifest)
    dest = Path(dest) if dest is not None else default_dest(manifest.name)
    if manifest.licensed:
        raise FetchError(licensed_message(manifest, dest))
    wanted = [f for f in manifest.files if include_optional or not f.optional]
    dest.mkdir(parents=True, exist_ok=True)
    status: dict[str, str] = {}
    with _Progress(progress) as bar:
        by_archive: dict[str, list[FileEntry]] = {}
        for f in wanted:
            final = dest / f.name
            if final.is_file() and _matches(final, f.sha256, f.size, f.md5):
                status[f.name] = "present"
            elif f.archive is not None and mirror is None:
                by_archive.setdefault(f.archive, []).append(f)
            else:
                urls = _urls(f.name, f.url, manifest, mirror)
                _download_verified(urls, final, f.size, f.sha256, f.md5, bar, retries, timeout)
                status[f.name] = "downloaded"
            if f.extract is not None and f.name in status:
                _extract_all(final, f, dest)
        for archive_name, members in by_archive.items():
            entry = manifest.archive(archive_name)
            path = dest / entry.name
            if not (path.is_file() and _matches(path, entry.sha256, entry.size, entry.md5)):
                urls = _urls(entry.name, entry.url, manifest, None)
                _download_verified(urls, path, entry.size, entry.sha256, entry.md5, bar, retries, timeout)
            for f in members:
                _extract_member(path, entry, f, dest / f.name)
                status[f.name] = "extracted"
                if f.extract is not None:
                    _extract_all(dest / f.name, f, dest)
            if not keep_archives:
                path.unlink()
    return FetchResult(dest, status)


# --------------------------------------------------------------------------------------------------------------
# Downloads


def _urls(name: str, url: str | None, manifest: Manifest, mirror: str | None) -> list[str]:
    if mirror is not None:
        return [_join(mirror, name)]
    urls = [url] if url else [_join(m, name) for m in manifest.mirrors]
    if not urls:
        raise FetchError(f"{manifest.path}: no url, archive or mirrors for {name}; pass a `mirror` URL")
    return urls


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def _download_verified(
    urls: list[str],
    final: Path,
    size: int | None,
    sha256: str | None,
    md5: str | None,
    bar: _Progress,
    retries: int,
    timeout: float,
) -> None:
    """Download to `final.part` (resuming), check size and digests, then rename to `final`."""
    part = final.with_name(final.name + ".part")
    errors: list[str] = []
    done = False
    for url in urls:
        for _attempt in range(max(1, retries)):
            try:
                _download(url, part, size, bar, timeout)
                done = True
                break
            except _Restart:
                part.unlink(missing_ok=True)
                errors.append(f"{url}: server refused to resume; restarting from 0")
            except _NETWORK_ERRORS as exc:
                errors.append(f"{url}: {exc}")
                if isinstance(exc, urllib.error.HTTPError) and exc.code in (401, 403, 404, 410):
                    break  # permanent for this URL: try the next source
        if done:
            break
    if not done:
        have = part.stat().st_size if part.exists() else 0
        raise FetchError(
            f"could not download {final.name}: " + "; ".join(errors[-4:])
            + (f". {have} bytes kept in {part}; run the command again to resume" if have else "")
        )
    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink()
        raise FetchError(
            f"{final.name}: downloaded {got} bytes, the manifest says {size}; the partial file was removed"
        )
    digest, digest_md5 = _digests(part)
    for kind, expected, actual in (("sha256", sha256, digest), ("md5", md5, digest_md5)):
        if expected is not None and actual != expected:
            part.unlink()
            raise FetchError(
                f"checksum mismatch for {final.name}: {kind} {actual}, expected {expected} "
                f"(from {urls[-1] if len(urls) == 1 else 'one of ' + ', '.join(urls)}); the download was removed. "
                "The source may serve a different file; try another `mirror`."
            )
    os.replace(part, final)


def _download(url: str, part: Path, size: int | None, bar: _Progress, timeout: float) -> None:
    """Append the rest of `url` to `part` (Range request when `part` has bytes); raises on any interruption."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have == size:
        return  # complete from an earlier run; verified by the caller
    if size is not None and have > size:
        raise _Restart()
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            raise _Restart() from exc
        raise
    with response:
        if have and response.status != 206:
            raise _Restart()  # the server ignored the Range header and sends the whole file
        if have:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != have:
                raise _Restart()
        length = response.headers.get("Content-Length")
        total = size if size is not None else (have + int(length) if length is not None else None)
        task = bar.add(part.name[: -len(".part")], total, have)
        with open(part, "ab") as out:
            while block := response.read(CHUNK):
                out.write(block)
                bar.advance(task, len(block))
        if length is not None and part.stat().st_size != have + int(length):
            raise http.client.IncompleteRead(b"", have + int(length) - part.stat().st_size)


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0]) if value else None
    except (IndexError, ValueError):
        return None


def _digests(path: Path) -> tuple[str, str]:
    d = file_digests(path, ("sha256", "md5"))
    return d["sha256"], d["md5"]


def _matches(path: Path, sha256: str | None, size: int | None, md5: str | None = None) -> bool:
    """True when an existing file has the expected size and digests (a file without any digest: size only)."""
    if size is not None and path.stat().st_size != size:
        return False
    if sha256 is None and md5 is None:
        return True
    sha, m = _digests(path)
    return (sha256 is None or sha == sha256) and (md5 is None or m == md5)


# --------------------------------------------------------------------------------------------------------------
# Archives


def _extract_member(archive: Path, entry: ArchiveEntry, f: FileEntry, final: Path) -> None:
    """Copy member `f.member` (default `f.name`) of `archive` to `final` through `final.part`, verified."""
    member = f.member or f.name
    part = final.with_name(final.name + ".part")
    try:
        with _open_member(archive, member) as src, open(part, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
    except KeyError:
        part.unlink(missing_ok=True)
        raise FetchError(f"{archive}: member {member} not found (is {entry.name} the right archive?)") from None
    if not _matches(part, f.sha256, f.size):
        sha, _ = _digests(part)
        part.unlink()
        raise FetchError(
            f"checksum mismatch for {f.name} extracted from {entry.name}: sha256 {sha}, expected {f.sha256}"
        )
    os.replace(part, final)


def _open_member(archive: Path, member: str):
    if zipfile.is_zipfile(archive):
        zf = zipfile.ZipFile(archive)
        handle = zf.open(member)
        handle_close = handle.close

        def close() -> None:
            handle_close()
            zf.close()

        handle.close = close  # close the archive with the member
        return handle
    tf = tarfile.open(archive)
    handle = tf.extractfile(member)
    if handle is None:
        raise KeyError(member)
    return handle


def _extract_all(path: Path, f: FileEntry, dest: Path) -> None:
    """Unpack a verified zip/tar into `dest` (once: a marker records the archive's sha256)."""
    marker = dest / f".{f.name}.extracted"
    if marker.is_file() and f.sha256 and marker.read_text().strip() == f.sha256:
        return
    root = dest.resolve()
    if f.extract == "zip":
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                _check_inside(root, info.filename, path)
            zf.extractall(dest)
    else:
        with tarfile.open(path) as tf:
            for m in tf.getmembers():
                _check_inside(root, m.name, path)
                if m.issym() or m.islnk():
                    raise FetchError(f"{path}: refusing to extract link {m.name}")
            tf.extractall(dest)
    marker.write_text((f.sha256 or "") + "\n")


def _check_inside(root: Path, member: str, archive: Path) -> None:
    target = (root / member).resolve()
    if target != root and root not in target.parents:
        raise FetchError(f"{archive}: member {member!r} would be written outside {root}; refusing to extract")


# --------------------------------------------------------------------------------------------------------------
# Progress


class _Progress:
    """A rich byte-progress bar (or nothing)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            import sys

            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(file=sys.stderr),
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def add(self, description: str, total: int | None, completed: int) -> int:
        if self._bar is None:
            return 0
        return self._bar.add_task(description, total=total, completed=completed)

    def advance(self, task: int, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(task, n)

