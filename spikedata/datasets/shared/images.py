"""Image datasets as spike stores: IDX files located and verified through their manifests (MNIST, EMNIST), read
into uint8 images, and Poisson-encoded (`spikedata.encoders.poisson`) in parallel worker processes.

An image dataset's declaration names its `reader(dataset, split, source, variant, verify) -> ImageSplit`
(`load_idx_split` for IDX files); `image_encode_jobs` builds the store's attributes and jobs from it, and
`encode_idx_images` is the encode of the IDX datasets.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikedata.checksum import file_sha256
from spikedata.datasets.shared.declaration import Dataset, EncodeRun
from spikedata.datasets.shared.options import DEFAULT_POISSON_STEPS, SplitSelection
from spikedata.errors import DatasetError, OptionError
from spikedata.io.idx import read_emnist_mapping, read_idx, transpose_images
from spikedata.manifest import FileEntry, Manifest, load_manifest


@dataclass(frozen=True)
class ImageSplit:
    """One split of an image dataset: uint8 images [n, H, W] (row-major), int16 labels [n], class names, the
    sha256 of every source file read and `notes` on how the split was made (both go to the store's `source`)."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    source_files: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


def locate_file(source: str | os.PathLike, name: str) -> Path:
    """The file `name` under `source`, also accepting its gunzipped (`x.gz` -> `x`) or gzipped form."""
    source = Path(source)
    candidates = [name]
    if name.endswith(".gz"):
        candidates.append(name[: -len(".gz")])
    else:
        candidates.append(name + ".gz")
    for c in candidates:
        if (source / c).is_file():
            return source / c
    raise DatasetError(f"{source}: {name} not found (also looked for {candidates[1]})")


def verify_file(path: Path, entry: FileEntry) -> str:
    """Check `path` against its manifest entry; return its sha256 (as on disk).

    Accepted: sha256 equals `entry.sha256`; or the file is gzip (or raw) whose decompressed bytes hash to
    `entry.sha256_decompressed`. An entry without any hash is accepted unverified.
    """
    digest = file_sha256(path)
    if entry.sha256 is None and entry.sha256_decompressed is None:
        return digest
    if digest == entry.sha256:
        return digest
    if entry.sha256_decompressed is not None:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        raw = file_sha256(path, decompress=True) if gz else digest
        if raw == entry.sha256_decompressed:
            return digest
    expected = entry.sha256 or entry.sha256_decompressed
    raise DatasetError(
        f"{path}: sha256 {digest} does not match the manifest's {expected} for {entry.name} "
        "(wrong, corrupt or modified file; fetch it again with `spikedata fetch`, or pass `verify=False` to use it "
        "anyway)"
    )


def load_idx_pair(
    images_path: str | os.PathLike, labels_path: str | os.PathLike, transposed: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [n, H, W] (row-major) and labels int16 [n] from an IDX3 image file and an IDX1 label file."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DatasetError(f"{images_path}: expected uint8 images [n, H, W], got {images.dtype} {list(images.shape)}")
    if labels.ndim != 1:
        raise DatasetError(f"{labels_path}: expected labels [n], got shape {list(labels.shape)}")
    if len(images) != len(labels):
        raise DatasetError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; "
            "they must be the two files of one split"
        )
    if transposed:
        images = transpose_images(images)
    return images, labels.astype(np.int16)


def load_idx_split(dataset: str, split: str, source: str | os.PathLike | None = None, variant: str | None = None,
                   verify: bool = True) -> ImageSplit:
    """Read one split of the IDX dataset `dataset` (its manifest names the files) from `source`.

    `variant` selects a variant where the manifest lists some (EMNIST; default from the manifest: balanced). With
    `verify`, every file is checked against the manifest's sha256 first (DatasetError naming the file on mismatch).
    """
    manifest = load_manifest(dataset)
    if source is None:
        raise DatasetError(f"{dataset}: `source` is required (the directory holding the dataset's files)")
    if split not in manifest.splits:
        raise DatasetError(f"{dataset} has no split {split!r}; splits: {list(manifest.splits)}")
    layout = manifest.layout
    variants = layout.get("variants")
    if variants:
        variant = variant or layout.get("default_variant", variants[0])
        if variant not in variants:
            raise DatasetError(f"{dataset} has no variant {variant!r}; variants: {variants}")
    elif variant is not None:
        raise DatasetError(f"{dataset} has no variants (got variant={variant!r})")
    spec = {k: (v.format(variant=variant) if isinstance(v, str) else v) for k, v in manifest.splits[split].items()}
    paths = {role: locate_file(source, spec[role]) for role in ("images", "labels")}
    if "mapping" in spec:
        paths["mapping"] = locate_file(source, spec["mapping"])
    hashes = {}
    for role, path in paths.items():
        hashes[path.name] = verify_file(path, _entry(manifest, spec[role])) if verify else file_sha256(path)
    images, labels = load_idx_pair(paths["images"], paths["labels"], transposed=bool(layout.get("transposed")))
    classes, labels = _classes(manifest, paths.get("mapping"), labels, paths["labels"])
    return ImageSplit(images, labels, classes, hashes)


def _entry(manifest: Manifest, name: str) -> FileEntry:
    try:
        return manifest.file(name)
    except KeyError:
        return FileEntry(name=name)  # not pinned by the manifest: accepted unverified


def _classes(
    manifest: Manifest, mapping: Path | None, labels: np.ndarray, labels_path: Path
) -> tuple[list[str], np.ndarray]:
    """Class names (mapping file first, else the manifest) and labels shifted to start at 0 when the mapping does
    (EMNIST letters labels 1..26)."""
    if mapping is not None:
        names = read_emnist_mapping(mapping)
        first = min(names)
        classes = [names[k] for k in sorted(names)]
        labels = (labels - first).astype(np.int16)
        where = f"{labels_path} (classes from {mapping.name})"
    else:
        classes = list(manifest.classes or [])
        where = str(labels_path)
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DatasetError(
            f"{where}: labels span [{labels.min()}, {labels.max()}] but there are {len(classes)} classes"
        )
    return classes, labels


def load_image_split(dataset: str, split: str, source: str | os.PathLike | None = None, variant: str | None = None,
                     verify: bool = True) -> ImageSplit:
    """One split of the image dataset called `dataset` (`mnist`, `emnist`, `mnist-5k`), read by its declared
    reader."""
    from spikedata.datasets import get_dataset

    return get_dataset(dataset).reader(dataset, split, source, variant, verify)


# --------------------------------------------------------------------------------------------------------------
# Encoding jobs (Poisson) for the pipeline


@dataclass(frozen=True)
class ImageSource:
    """What to read in a worker process: (dataset, split, source dir, variant, the indices of a ``--max-*``
    subset or None) and the dataset's reader. Hashable (by everything but the reader), picklable."""

    dataset: str
    split: str
    source: str | None = None
    variant: str | None = None
    subset: tuple[int, ...] | None = None
    reader: Callable[..., ImageSplit] = field(default=load_idx_split, compare=False)


_loaded: dict[ImageSource, ImageSplit] = {}


def forget_loaded_images() -> None:
    """Empty this process's cache of loaded splits (the next encode reads the files again)."""
    _loaded.clear()


def _images_of(src: ImageSource) -> ImageSplit:
    """The split's images, loaded once per process (the parent verifies checksums before any worker reads)."""
    if src not in _loaded:
        data = src.reader(src.dataset, src.split, src.source, src.variant, False)
        _loaded[src] = data if src.subset is None else _subset(data, np.asarray(src.subset))
    return _loaded[src]


def _subset(data: ImageSplit, idx: np.ndarray) -> ImageSplit:
    return ImageSplit(data.images[idx], data.labels[idx], data.classes, data.source_files, data.notes)


def encode_image_range(
    src: ImageSource, steps: int, max_prob: float, seed: int, keep_images: bool, start: int, stop: int
) -> object:
    """Poisson-encode samples [start, stop) of `src` into an :class:`~spikedata.store.EventBlock`.

    Sample i is drawn from the stream of (seed, i), so the block depends only on the indices and the seed.
    """
    from spikedata.encoders.poisson import poisson_encode_events
    from spikedata.store import EventBlock

    data = _images_of(src)
    images = data.images[start:stop]
    indptr, times, units = poisson_encode_events(images, steps, max_prob, seed, first_index=start)
    extras = {"images": images.copy()} if keep_images else {}
    counts = np.diff(indptr)
    stats = {"n_events": int(indptr[-1]), "empty_samples": int(np.count_nonzero(counts == 0))}
    return EventBlock(indptr, times, units, data.labels[start:stop], extras, stats)


def image_encode_jobs(
    dataset: str,
    source: str | os.PathLike | None = None,
    splits: list[str] | None = None,
    steps: int = DEFAULT_POISSON_STEPS,
    max_prob: float | None = None,
    seed: int = 0,
    keep_images: bool = False,
    variant: str | None = None,
    verify: bool = True,
    chunk: int = 256,
    max_samples: dict[str, int | None] | None = None,
    split_seed: int = 0,
) -> tuple[dict[str, object], dict[str, object]]:
    """Store attributes and pipeline jobs {split: SplitJob} for Poisson-encoding the image dataset `dataset`.

    Reads and verifies every split here (so errors surface before any encoding starts); the jobs re-read the
    files lazily in worker processes. `max_samples` {split: n} keeps a seeded stratified subset of n samples of
    that split (`spikedata.splits`, keys ``"<split>:<index>"``, `split_seed`), recorded in the ``split`` attribute.
    A step is the `dt_us` of the dataset's manifest.
    """
    from functools import partial

    from spikedata.datasets import get_dataset
    from spikedata.encoders.poisson import DEFAULT_MAX_PROB
    from spikedata.pipeline import SplitJob
    from spikedata.splits import stratified_subset, subset_record
    from spikedata.store import root_attributes

    declared = get_dataset(dataset)
    layout = declared.layout()
    max_prob = DEFAULT_MAX_PROB if max_prob is None else float(max_prob)
    available = list(declared.split_names() or ())
    splits = splits or available
    unknown = [s for s in splits if s not in available]
    if unknown:
        raise DatasetError(f"{dataset} has no split(s) {unknown}; splits: {available}")
    source_str = str(Path(source).resolve()) if source is not None else None
    if variant is None and layout.get("variants"):
        variant = layout.get("default_variant")
    jobs: dict[str, object] = {}
    source_attr: dict[str, object] = {"files": {}, **({"variant": variant} if variant is not None else {})}
    classes: list[str] | None = None
    shape = None
    subsets: dict[str, dict] = {}
    for split in splits:
        data = declared.reader(dataset, split, source_str, variant, verify)
        limit = (max_samples or {}).get(split)
        subset = None
        if limit is not None and limit < len(data):
            keys = [f"{split}:{i}" for i in range(len(data))]
            idx = stratified_subset(data.labels, keys, int(limit), int(split_seed))
            subsets[split] = subset_record(len(idx), len(data), int(split_seed))
            subset, data = tuple(int(i) for i in idx), _subset(data, idx)
        src = ImageSource(dataset, split, source_str, variant, subset, declared.reader)
        _loaded[src] = data
        if classes is not None and data.classes != classes:
            raise DatasetError(f"{dataset}: split {split!r} has other class names than the previous split")
        if shape is not None and data.images.shape[1:] != shape:
            raise DatasetError(f"{dataset}: split {split!r} images are {data.images.shape[1:]}, others {shape}")
        classes, shape = data.classes, data.images.shape[1:]
        source_attr["files"].update(data.source_files)
        source_attr.update(data.notes)
        jobs[split] = SplitJob(
            len(data), partial(encode_image_range, src, int(steps), max_prob, int(seed), keep_images), chunk
        )
    h, w = shape
    params = {"steps": int(steps), "max_prob": max_prob, "step0_silent": True, "rng": "splitmix64-geometric"}
    attrs = root_attributes(dataset, "poisson", params, [1, int(h), int(w)], int(steps), float(layout["dt_us"]),
                            classes, int(seed), source_attr,
                            split={"kind": "published", **({"subsets": subsets} if subsets else {})})
    return attrs, jobs


def encode_images(dataset: Dataset, run: EncodeRun, source: str | os.PathLike | None, verify: bool, poisson: dict,
                  split: list[str] | None, splits: SplitSelection, variant: str | None = None) -> Path:
    """Poisson-encode the splits `split` (default: all) of an image dataset read from `source` into the store of
    `run`; `poisson` holds steps, seed, max_prob and keep_images."""
    from spikedata.encoders import poisson as poisson_code
    from spikedata.pipeline import encode_to_store
    from spikedata.store import format as store_format

    run.report.compiling(poisson_code, store_format)
    if source is not None and not Path(source).is_dir():
        raise DatasetError(f"`source` {source}: no such directory")
    started = time.perf_counter()
    attrs, jobs = image_encode_jobs(dataset.name, source, split, poisson["steps"], poisson["max_prob"], poisson["seed"],
                                    poisson["keep_images"], variant=variant, verify=verify,
                                    max_samples=splits.max_samples, split_seed=splits.seed)
    path = encode_to_store(run.out, attrs, jobs, workers=run.workers, progress=run.progress, overwrite=run.overwrite)
    seconds = time.perf_counter() - started
    n = sum(job.n_samples for job in jobs.values())
    counts = ", ".join(f"{k} ({v.n_samples})" for k, v in jobs.items())
    run.report.say(f"wrote {path}: {dataset.name}, splits {counts}, T = {poisson['steps']}, seed {poisson['seed']}; "
                   f"{n / seconds:.0f} samples/s")
    return path


def encode_idx_images(dataset: Dataset, run: EncodeRun, files: dict, poisson: dict, split: list[str] | None,
                      splits: SplitSelection, variant: str | None = None) -> Path:
    """The encode of an IDX image dataset: its files under `files["source"]`, checked against the manifest unless
    `files["no_verify"]`."""
    if files["source"] is None:
        raise OptionError(f"`source` DIR is required (get the files with `spikedata fetch {dataset.name}`)")
    return encode_images(dataset, run, files["source"], not files["no_verify"], poisson, split, splits, variant)
