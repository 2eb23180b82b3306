"""EMNIST: the IDX files of Cohen et al. 2017 (`data_manifests/emnist.toml`: every variant's files, checksums and
splits; images stored column-major, transposed to row-major when read), Poisson rate code as MNIST."""

from __future__ import annotations

from spikedata.datasets.shared.declaration import Dataset, Option
from spikedata.datasets.shared.images import encode_idx_images, load_idx_split
from spikedata.datasets.shared.options import IDX_FILES, POISSON, SPLIT_NAMES, SPLIT_SELECTION

DATASET = Dataset(
    "emnist",
    "EMNIST from its IDX files (`spikedata fetch emnist`); images are transposed to row-major.",
    encode_idx_images,
    options=(IDX_FILES, POISSON, SPLIT_NAMES, Option("variant", str, None, "EMNIST variant (default: balanced)."),
             SPLIT_SELECTION),
    manifest="emnist",
    reader=load_idx_split,
    preset="emnist-mlp",
)
