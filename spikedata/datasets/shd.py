"""Spiking Heidelberg Digits (SHD, Cramer et al.): spikes of a cochlea model's 700 channels, one HDF5 file per split
(`data_manifests/shd.toml`: files, checksums, classes and the default bin and cut-off), binned into steps;
reading: `spikedata.datasets.shared.heidelberg`, binning: `...heidelberg_encoding`."""

from __future__ import annotations

from spikedata.datasets.shared.declaration import Dataset
from spikedata.datasets.shared.heidelberg import find_files
from spikedata.datasets.shared.heidelberg_encoding import SPIKE_BINNING, encode_heidelberg
from spikedata.datasets.shared.options import CHUNK, SOURCE

DATASET = Dataset(
    "shd",
    "Spiking Heidelberg Digits (HDF5, 700 channels, 20 classes) binned into a store; speaker kept per sample.",
    encode_heidelberg,
    options=(
        SOURCE.but(help="Directory holding the shd_<split>.h5 files (or .h5.gz, as published)."),
        SPIKE_BINNING, CHUNK,
    ),
    manifest="shd",
    reader=find_files,
    preset="shd-mlp",
)
