"""Dataset manifests: one TOML file per dataset in `data_manifests/` (`NAME.toml`), loaded and validated here.

A manifest says where a dataset's files come from, how to check them, its licence and layout. Readers, the
encode commands and `spikedata fetch` are driven by it. Schema (version 1); unknown keys are errors, so typos fail
loudly::

    schema = 1                      # required, this schema's version
    name = "mnist"                  # required, equals the file stem; what `spikedata fetch NAME` takes
    title = "MNIST handwritten digits"   # required
    description = "..."             # optional
    homepage = "https://..."        # optional
    citation = "..."                # optional
    license = "CC BY-SA 4.0"        # required: licence as stated by the source ("none stated" is allowed)
    access = "public"               # "public" (default): files can be downloaded from `url`/`mirrors`;
                                    # "licensed": no public download; `obtain` says how a user gets the files;
                                    # "form": free to use, but its distributor hands the files out through a
                                    # download form (terms to accept), never at a fixed URL; `obtain` as above
    obtain = "..."                  # required unless access = "public"; shown by `spikedata fetch`
    mirrors = ["https://a/", ...]   # optional base URLs tried in order: URL = mirror + file name
    classes = ["0", "1", ...]       # optional class names in label order
    n_classes = 10                  # optional (checked against `classes` when both are given)

    [layout]                        # optional, free-form: read by the dataset's layout code
    format = "idx"                  #   (e.g. image shape, orientation, directory patterns, dt_us)

    [splits.train]                  # optional, free-form per split: which files / rule form the split
    images = "train-images-idx3-ubyte.gz"
    n_samples = 60000

    [[archives]]                    # optional: archives that contain some of the files (e.g. EMNIST's gzip.zip)
    name = "gzip.zip"               # required, file name under the destination directory while fetching
    url = "https://..."             # optional (else mirrors + name)
    size = 123                      # optional, bytes
    sha256 = "..."                  # optional: when absent the archive is not verified, its members are
    md5 = "..."                     # optional, informative (as published by the source)
    note = "..."                    # optional

    [[files]]                       # the dataset's files, as they lie in a source directory
    name = "train-images-idx3-ubyte.gz"  # required, path relative to the dataset directory (no "..")
    size = 9912422                  # optional, bytes of the file as downloaded
    sha256 = "..."                  # sha256 of the file as downloaded; required for a downloadable file ...
    md5 = "..."                     # ... unless only the source's md5 is known (then fetch verifies that)
    url = "https://..."             # optional; else the archive member, else mirrors + name
    archive = "gzip.zip"            # optional, name of an [[archives]] entry that contains this file ...
    member = "gzip/x.gz"            # ... and the member's path inside it (default: name)
    sha256_decompressed = "..."     # optional, for .gz files: sha256 of the decompressed bytes
    size_decompressed = 47040016    # optional
    extract = "zip"                 # optional: "zip" | "tar" -- unpack into the destination after verification
    optional = false                # optional: not needed by every use (e.g. other variants), fetched on demand
    note = "..."                    # optional: provenance of the checksum etc.

Checksums are lowercase hex. A file is accepted when its sha256 equals `sha256`, or -- for a gzip file whose
compressed bytes differ (re-compressed copies) -- when its decompressed bytes hash to `sha256_decompressed`.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spikedata.errors import SpikedataError

SCHEMA_VERSION = 1
ACCESS_KINDS = ("public", "licensed", "form")
EXTRACT_KINDS = ("zip", "tar")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")

_TOP_KEYS = {
    "schema", "name", "title", "description", "homepage", "citation", "license", "access", "obtain", "mirrors",
    "classes", "n_classes", "layout", "splits", "archives", "files",
}  # fmt: skip
_ARCHIVE_KEYS = {"name", "url", "size", "sha256", "md5", "note"}
_FILE_KEYS = {
    "name", "size", "sha256", "md5", "url", "archive", "member", "sha256_decompressed", "size_decompressed",
    "extract", "optional", "note",
}  # fmt: skip

#: Environment variable: extra directories (os.pathsep-separated) searched for manifests before the built-ins.
ENV_PATH = "SPIKEDATA_MANIFESTS"


class ManifestError(SpikedataError, ValueError):
    """A manifest is missing or does not follow the schema; the message names the file and the key."""


@dataclass(frozen=True)
class ArchiveEntry:
    """An archive that holds some of a dataset's files (downloaded whole, members extracted)."""

    name: str
    url: str | None = None
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class FileEntry:
    """One file of a dataset (see the module docstring for the meaning of each field)."""

    name: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    url: str | None = None
    archive: str | None = None
    member: str | None = None
    sha256_decompressed: str | None = None
    size_decompressed: int | None = None
    extract: str | None = None
    optional: bool = False
    note: str | None = None


@dataclass(frozen=True)
class Manifest:
    """A validated dataset manifest."""

    name: str
    title: str
    license: str
    path: Path
    access: str = "public"
    obtain: str | None = None
    description: str | None = None
    homepage: str | None = None
    citation: str | None = None
    mirrors: tuple[str, ...] = ()
    classes: tuple[str, ...] | None = None
    n_classes: int | None = None
    layout: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    archives: tuple[ArchiveEntry, ...] = ()
    files: tuple[FileEntry, ...] = ()

    @property
    def licensed(self) -> bool:
        """True when the files cannot be downloaded automatically (licensed, or behind a download form): the user
        obtains them (see `obtain`)."""
        return self.access != "public"

    def file(self, name: str) -> FileEntry:
        """The file entry called `name` (KeyError naming the known files otherwise)."""
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(f"manifest {self.name!r} has no file {name!r}; files: {[f.name for f in self.files]}")

    def archive(self, name: str) -> ArchiveEntry:
        for a in self.archives:
            if a.name == name:
                return a
        raise KeyError(f"manifest {self.name!r} has no archive {name!r}")


def manifest_dirs() -> list[Path]:
    """Directories searched for `NAME.toml`, in order: $SPIKEDATA_MANIFESTS, the installed package's
    `spikedata/manifests/`, then the repository's `data_manifests/` (a source checkout)."""
    dirs = [Path(p) for p in os.environ.get(ENV_PATH, "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent
    dirs += [here / "manifests", here.parent / "data_manifests"]
    return [d for d in dirs if d.is_dir()]


def manifest_names() -> list[str]:
    """Names of every manifest found (sorted, first occurrence wins)."""
    return sorted({p.stem for d in manifest_dirs() for p in d.glob("*.toml")})


def find_manifest(name: str) -> Path:
    """Path of the manifest called `name` (ManifestError listing the known names otherwise)."""
    for d in manifest_dirs():
        path = d / f"{name}.toml"
        if path.is_file():
            return path
    known = ", ".join(manifest_names()) or "none"
    raise ManifestError(f"no manifest for dataset {name!r} (known: {known}); searched {manifest_dirs()}")


def load_manifest(name_or_path: str | os.PathLike) -> Manifest:
    """Load and validate a manifest by dataset name (`"mnist"`) or by path to a `.toml` file."""
    text = str(name_or_path)
    path = Path(text) if text.endswith(".toml") or os.sep in text else find_manifest(text)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: invalid TOML ({exc})") from exc
    return parse_manifest(raw, path)


def parse_manifest(raw: dict[str, Any], path: Path) -> Manifest:
    """Validate the parsed TOML `raw` of the manifest at `path` against the schema."""
    v = _Validator(path)
    v.keys(raw, _TOP_KEYS, "")
    if raw.get("schema") != SCHEMA_VERSION:
        v.fail("schema", f"must be {SCHEMA_VERSION}, got {raw.get('schema')!r}")
    name = v.string(raw, "name", required=True)
    if not _NAME.match(name):
        v.fail("name", f"{name!r} must be lowercase letters, digits, '.', '_' or '-'")
    if path.stem != name:
        v.fail("name", f"{name!r} must equal the file name stem {path.stem!r}")
    access = v.string(raw, "access") or "public"
    if access not in ACCESS_KINDS:
        v.fail("access", f"must be one of {ACCESS_KINDS}, got {access!r}")
    obtain = v.string(raw, "obtain")
    if access != "public" and not obtain:
        v.fail("obtain", f"required when access = {access!r} (tell users how to obtain the files)")
    mirrors = tuple(v.string_list(raw, "mirrors") or ())
    classes = v.string_list(raw, "classes")
    n_classes = v.integer(raw, "n_classes")
    if classes is not None and n_classes is not None and len(classes) != n_classes:
        v.fail("n_classes", f"{n_classes} but {len(classes)} class names are given")
    layout = v.table(raw, "layout")
    splits = v.table(raw, "splits")
    for split, spec in splits.items():
        if not isinstance(spec, dict):
            v.fail(f"splits.{split}", "must be a table")

    archives = []
    for i, entry in enumerate(v.table_list(raw, "archives")):
        where = f"archives[{i}]"
        v.keys(entry, _ARCHIVE_KEYS, where)
        archives.append(
            ArchiveEntry(
                name=v.relpath(entry, "name", where),
                url=v.string(entry, "url", where),
                size=v.integer(entry, "size", where),
                sha256=v.digest(entry, "sha256", where, _HEX64),
                md5=v.digest(entry, "md5", where, _HEX32),
                note=v.string(entry, "note", where),
            )
        )
    archive_names = {a.name for a in archives}

    files = []
    seen: set[str] = set()
    for i, entry in enumerate(v.table_list(raw, "files")):
        where = f"files[{i}]"
        v.keys(entry, _FILE_KEYS, where)
        f = FileEntry(
            name=v.relpath(entry, "name", where),
            size=v.integer(entry, "size", where),
            sha256=v.digest(entry, "sha256", where, _HEX64),
            md5=v.digest(entry, "md5", where, _HEX32),
            url=v.string(entry, "url", where),
            archive=v.string(entry, "archive", where),
            member=v.string(entry, "member", where),
            sha256_decompressed=v.digest(entry, "sha256_decompressed", where, _HEX64),
            size_decompressed=v.integer(entry, "size_decompressed", where),
            extract=v.string(entry, "extract", where),
            optional=v.boolean(entry, "optional", where),
            note=v.string(entry, "note", where),
        )
        if f.name in seen:
            v.fail(f"{where}.name", f"{f.name!r} is listed twice")
        seen.add(f.name)
        if f.archive is not None and f.archive not in archive_names:
            v.fail(f"{where}.archive", f"{f.archive!r} is not one of the [[archives]] {sorted(archive_names)}")
        if f.member is not None and f.archive is None:
            v.fail(f"{where}.member", "only meaningful together with 'archive'")
        if f.extract is not None and f.extract not in EXTRACT_KINDS:
            v.fail(f"{where}.extract", f"must be one of {EXTRACT_KINDS}, got {f.extract!r}")
        downloadable = access == "public" and (f.url or f.archive or mirrors)
        if downloadable and f.sha256 is None and f.md5 is None and f.archive is None:
            v.fail(f"{where}.sha256", "required for a file that can be downloaded (fetch verifies it)")
        files.append(f)

    return Manifest(
        name=name,
        title=v.string(raw, "title", required=True),
        license=v.string(raw, "license", required=True),
        path=path,
        access=access,
        obtain=obtain,
        description=v.string(raw, "description"),
        homepage=v.string(raw, "homepage"),
        citation=v.string(raw, "citation"),
        mirrors=mirrors,
        classes=tuple(classes) if classes is not None else None,
        n_classes=n_classes if n_classes is not None else (len(classes) if classes is not None else None),
        layout=layout,
        splits=splits,
        archives=tuple(archives),
        files=tuple(files),
    )


class _Validator:
    """Typed getters that raise ManifestError naming the file and the key path."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, message: str) -> None:
        raise ManifestError(f"{self.path}: {key}: {message}")

    @staticmethod
    def _key(where: str, key: str) -> str:
        return f"{where}.{key}" if where else key

    def keys(self, table: dict[str, Any], allowed: set[str], where: str) -> None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            self.fail(self._key(where, unknown[0]), f"unknown key; known: {', '.join(sorted(allowed))}")

    def _get(self, table, key, where, types, kind, required):
        if key not in table:
            if required:
                self.fail(self._key(where, key), "required key is missing")
            return None
        value = table[key]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            self.fail(self._key(where, key), f"must be {kind}, got {type(value).__name__} {value!r}")
        return value

    def string(self, table, key, where="", required=False):
        value = self._get(table, key, where, (str,), "a string", required)
        if value is not None and not value.strip():
            self.fail(self._key(where, key), "must not be empty")
        return value

    def integer(self, table, key, where=""):
        value = self._get(table, key, where, (int,), "an integer", False)
        if value is not None and value < 0:
            self.fail(self._key(where, key), f"must be >= 0, got {value}")
        return value

    def boolean(self, table, key, where=""):
        return bool(self._get(table, key, where, (bool,), "true or false", False))

    def table(self, table, key):
        return dict(self._get(table, key, "", (dict,), "a table", False) or {})

    def table_list(self, table, key):
        value = self._get(table, key, "", (list,), "an array of tables ([[...]])", False) or []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                self.fail(f"{key}[{i}]", "must be a table")
        return value

    def string_list(self, table, key):
        value = self._get(table, key, "", (list,), "an array of strings", False)
        if value is not None and not all(isinstance(s, str) for s in value):
            self.fail(key, "must be an array of strings")
        return value

    def digest(self, table, key, where, pattern):
        value = self.string(table, key, where)
        if value is not None and not pattern.match(value):
            self.fail(self._key(where, key), f"{value!r} is not a lowercase hex digest of the right length")
        return value

    def relpath(self, table, key, where):
        value = self.string(table, key, where, required=True)
        parts = Path(value).parts
        if Path(value).is_absolute() or ".." in parts or "\\" in value:
            self.fail(self._key(where, key), f"{value!r} must be a relative path without '..'")
        return value
