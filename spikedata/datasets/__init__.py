"""The datasets: one module per dataset, each declaring `DATASET = Dataset(...)` (`shared.declaration`).

A dataset is found by looking at the modules of this package: every module (not sub-package) that declares a
`DATASET` is one, so adding a dataset is adding its module here and its manifest to `data_manifests/`. What several
datasets share (the generic event-folder scanner, the event binning jobs, the speech front end, IDX images, the
Heidelberg spike files, the option groups) lives in `spikedata.datasets.shared`.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from spikedata.datasets.shared.declaration import Dataset
from spikedata.errors import DatasetError

__all__ = ["Dataset", "all_datasets", "dataset_names", "get_dataset"]


@cache
def all_datasets() -> dict[str, Dataset]:
    """Every declared dataset by name, in name order."""
    found: dict[str, Dataset] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        dataset = getattr(module, "DATASET", None)
        if not isinstance(dataset, Dataset):
            continue
        if dataset.name in found:
            raise DatasetError(f"dataset {dataset.name!r} is declared twice (in {module.__name__} and another module)")
        found[dataset.name] = dataset
    return dict(sorted(found.items()))


def dataset_names() -> list[str]:
    """Names of every declared dataset (the `spikedata encode` commands)."""
    return list(all_datasets())


def get_dataset(name: str) -> Dataset:
    """The dataset called `name` (DatasetError listing the known ones otherwise)."""
    datasets = all_datasets()
    if name not in datasets:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(datasets)}")
    return datasets[name]
