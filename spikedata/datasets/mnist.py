"""MNIST: the IDX files of LeCun, Cortes and Burges (`data_manifests/mnist.toml`: files, checksums, classes, splits
and the encoding defaults: 28 x 28 images, one step = 1 ms), Poisson rate code (algorithm.md §2.1)."""

from __future__ import annotations

from spikedata.datasets.shared.declaration import Dataset
from spikedata.datasets.shared.images import encode_idx_images, load_idx_split
from spikedata.datasets.shared.options import IDX_FILES, POISSON, SPLIT_NAMES, SPLIT_SELECTION

DATASET = Dataset(
    "mnist",
    "MNIST from its IDX files (`spikedata fetch mnist`), Poisson rate code (algorithm.md §2.1).",
    encode_idx_images,
    options=(IDX_FILES, POISSON, SPLIT_NAMES, SPLIT_SELECTION),
    manifest="mnist",
    reader=load_idx_split,
    preset="mnist-mlp",
)
